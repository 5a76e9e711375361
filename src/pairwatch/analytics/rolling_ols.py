"""Rolling pair regression: hedge ratio, spread, z-score and correlations over W bars.

One numba kernel serves both speeds: ``RollingPair.update`` advances one pair by one bar
in O(1) (the live path), and ``rolling_pair_metrics`` runs the very same step over whole
arrays (history, export, backtests), so the two agree to the bit.

Definitions (``docs/analytics.md``), over the last W aligned bars, on transformed prices
(log by default) x (the ``x`` leg) and y:

- ``hedge_ratio`` β and ``intercept`` α: OLS of y on x (α = 0 without intercept);
- residuals e_i = y_i − α − β·x_i; ``spread`` = e_t (the latest); ``spread_std`` = their
  sample standard deviation (ddof 1); ``zscore`` = (e_t − mean(e)) / spread_std;
- ``correlation``: Pearson correlation of the W − 1 one-bar log returns of the raw prices
  inside the window; ``price_correlation``: Pearson correlation of the W transformed prices;
- ``half_life``: −ln 2 / ln φ bars, φ the AR(1) coefficient of the window's residuals
  (e_i on e_{i−1}, with intercept); NaN when φ ∉ (0, 1) (no mean reversion, or overshoot).
A metric is NaN until the window is full, and NaN (never ±inf) when the window is flat.

Accuracy. Sums are kept relative to a reference point (x₀, y₀) with compensated (TwoSum)
adds and removes, and every ``RESYNC_WINDOWS`` × W updates they are recomputed exactly
(two-pass, centred on the window mean, which becomes the new reference). Errors therefore
cannot accumulate beyond that many updates, and prices at BTC scale (60,000) lose no
digits to cancellation.

Speed. Between calls a pair's state lives in two small arrays (``st`` floats, ``si`` ints);
``_run`` loads it into local variables once, carries them from bar to bar in registers and
stores them back at the end. Its loop inlines only helpers that take scalars and tuples (an
inlined call with array arguments costs numba reference counting on every bar). ``_step``
(one bar, for ``PairBank``) stages the bar in scratch slots of ``st`` and runs that same
``_run``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from pairwatch.analytics.compensated import moments as _moments
from pairwatch.analytics.compensated import two_sum as _two_sum
from pairwatch.analytics.prices import checked_prices

METRICS = (
    "hedge_ratio",
    "intercept",
    "spread",
    "spread_std",
    "zscore",
    "correlation",
    "price_correlation",
    "half_life",
)
"""Output columns of the kernel, in order."""

RESYNC_WINDOWS = 4
"""Sums are recomputed exactly every this many windows of updates."""

# Float state: reference point, then (sum, compensation) pairs.
_REF_X, _REF_Y = 0, 1
_SU = 2  # 10 values: Σu, Σv, Σu², Σv², Σuv over the window, u = x - x0, v = y - y0
_RX = 12  # 10 values: the same sums of the one-bar log returns
_PREV_X, _PREV_Y = 22, 23  # last log prices (for returns)
_LUU = 24  # 8 values: lag-1 sums over adjacent points: u_i·u_{i-1}, u_i·v_{i-1}, v_i·u_{i-1}, …
_IN_LX, _IN_LY, _IN_X, _IN_Y = 32, 33, 34, 35  # scratch: the bar ``_step`` passes to ``_run``
_N_FLOAT = 36
# Int state.
_COUNT, _POS, _SINCE, _NRET, _RPOS, _HAS_PREV = range(6)
_N_INT = 6
_NOISE = 64.0 * 2.220446049250313e-16
"""Relative size of rounding noise in a centred sum of squares (64 ulps)."""
_CHUNK = 4096  # bars whose logs the batch path takes at a time (they stay in cache)


@numba.njit(inline="always")
def _lags(g, u1, v1, u0, v0, sign):  # type: ignore[no-untyped-def]
    """Return the lag-1 sums ``g`` with the adjacent pair (point 0, point 1) added or removed.

    ``g`` holds (sum, compensation) pairs, as do all the sums tuples here (see ``_moments``).
    """
    s0, c0 = _two_sum(g[0], g[1], sign * (u1 * u0))
    s1, c1 = _two_sum(g[2], g[3], sign * (u1 * v0))
    s2, c2 = _two_sum(g[4], g[5], sign * (v1 * u0))
    s3, c3 = _two_sum(g[6], g[7], sign * (v1 * v0))
    return (s0, c0, s1, c1, s2, c2, s3, c3)


@numba.njit(inline="always")
def _load(st, si):  # type: ignore[no-untyped-def]
    """Return a pair's state as tuples: ((x0, y0), window sums, return sums, lag sums, …)."""
    w, r, g = _SU, _RX, _LUU
    return (
        (st[_REF_X], st[_REF_Y]),
        (st[w], st[w + 1], st[w + 2], st[w + 3], st[w + 4],
         st[w + 5], st[w + 6], st[w + 7], st[w + 8], st[w + 9]),
        (st[r], st[r + 1], st[r + 2], st[r + 3], st[r + 4],
         st[r + 5], st[r + 6], st[r + 7], st[r + 8], st[r + 9]),
        (st[_PREV_X], st[_PREV_Y]),
        (st[g], st[g + 1], st[g + 2], st[g + 3], st[g + 4], st[g + 5], st[g + 6], st[g + 7]),
        (si[_COUNT], si[_POS], si[_SINCE], si[_NRET], si[_RPOS], si[_HAS_PREV]),
    )  # fmt: skip


@numba.njit(inline="always")
def _store(st, si, ref, win, ret, prev, lag, idx):  # type: ignore[no-untyped-def]
    """Write the tuples of ``_load`` back into the state arrays."""
    st[_REF_X], st[_REF_Y] = ref
    st[_PREV_X], st[_PREV_Y] = prev
    for k in range(10):
        st[_SU + k] = win[k]
        st[_RX + k] = ret[k]
    for k in range(8):
        st[_LUU + k] = lag[k]
    for k in range(_N_INT):
        si[k] = idx[k]


@numba.njit(error_model="numpy")
def _recompute(bx, by, brx, bry, oldest, nret, window, lags):  # type: ignore[no-untyped-def]
    """Rebuild every sum exactly from the full buffers, centred on the window mean.

    Return the new reference point and the window, lag and return sums.
    """
    n = window
    mx = 0.0
    my = 0.0
    for i in range(n):
        mx += bx[i]
        my += by[i]
    mx /= n
    my /= n
    # Second pass: the mean of the deviations corrects the first pass's rounding.
    cx = 0.0
    cy = 0.0
    for i in range(n):
        cx += bx[i] - mx
        cy += by[i] - my
    mx += cx / n
    my += cy / n
    win = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    for i in range(n):
        win = _moments(win, bx[i] - mx, by[i] - my, 1.0)
    lag = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    for j in range(n - 1 if lags else 0):
        i0 = (oldest + j) % window
        i1 = (oldest + j + 1) % window
        lag = _lags(lag, bx[i1] - mx, by[i1] - my, bx[i0] - mx, by[i0] - my, 1.0)
    ret = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    for i in range(nret):
        ret = _moments(ret, brx[i], bry[i], 1.0)
    return mx, my, win, lag, ret


@numba.njit(cache=True, error_model="numpy")
def _run(  # type: ignore[no-untyped-def]
    st, si, bx, by, brx, bry, lxs, lys, xs, ys, window, intercept, lags, out, row0
):
    """Advance one pair by each bar in turn, writing its metrics to ``out[row0 + i]``.

    ``lxs``/``lys`` are the log closes (for returns), ``xs``/``ys`` the transformed ones.
    """
    ref, win, ret, prev, lag, idx = _load(st, si)
    x0, y0 = ref
    px, py = prev
    count, pos, since, nret, rpos, has_prev = idx
    for i in range(xs.shape[0]):
        lx, ly, x, y = lxs[i], lys[i], xs[i], ys[i]
        # One-bar log returns, the last W - 1 of them.
        if has_prev and window > 1:
            rx = lx - px
            ry = ly - py
            if nret == window - 1:
                ret = _moments(ret, brx[rpos], bry[rpos], -1.0)
            else:
                nret += 1
            brx[rpos] = rx
            bry[rpos] = ry
            rpos = rpos + 1 if rpos + 2 < window else 0
            ret = _moments(ret, rx, ry, 1.0)
        px = lx
        py = ly
        has_prev = 1

        # The window of transformed prices.
        if count == 0:
            x0 = x
            y0 = y
        if lags and count > 0:  # the pair (newest so far, new point) joins the lag sums
            last = pos - 1 if pos > 0 else window - 1
            lag = _lags(lag, x - x0, y - y0, bx[last] - x0, by[last] - y0, 1.0)
        if count == window:
            u = bx[pos] - x0
            v = by[pos] - y0
            win = _moments(win, u, v, -1.0)
            if lags:  # the pair (oldest, second oldest) leaves the lag sums
                nxt = pos + 1 if pos + 1 < window else 0
                lag = _lags(lag, bx[nxt] - x0, by[nxt] - y0, u, v, -1.0)
        else:
            count += 1
        bx[pos] = x
        by[pos] = y
        pos = pos + 1 if pos + 1 < window else 0
        win = _moments(win, x - x0, y - y0, 1.0)
        since += 1
        if since >= RESYNC_WINDOWS * window and count == window:
            x0, y0, win, lag, ret = _recompute(bx, by, brx, bry, pos, nret, window, lags)
            since = 0

        row = _metrics(win, ret, lag, x - x0, y - y0, x, y, x0, y0, bx[pos] - x0,
                       by[pos] - y0, count == window, window, intercept, lags)  # fmt: skip
        for k in range(len(METRICS)):
            out[row0 + i, k] = row[k]
    _store(st, si, (x0, y0), win, ret, (px, py), lag,
           (count, pos, since, nret, rpos, has_prev))  # fmt: skip


@numba.njit(inline="always")
def _metrics(  # type: ignore[no-untyped-def]
    win, ret, lag, u, v, x, y, x0, y0, u_old, v_old, full, window, intercept, lags
):
    """Return the metrics (in ``METRICS`` order) of the window sums, all NaN until ``full``.

    (u, v) is the newest point and (u_old, v_old) the oldest, relative to (x0, y0).
    """
    beta = alpha = spread = std = z = corr = pcorr = half = math.nan
    if not full or window < 2:
        return (beta, alpha, spread, std, z, corr, pcorr, half)
    n = float(window)
    su = win[0] + win[1]
    sv = win[2] + win[3]
    mu = su / n
    mv = sv / n
    sxx = (win[4] + win[5]) - su * mu
    syy = (win[6] + win[7]) - sv * mv
    sxy = (win[8] + win[9]) - su * mv
    du = u - mu  # the latest point, centred on the window means
    dv = v - mv
    # A centred sum of squares below rounding noise of the raw one is zero: the window is
    # flat (it cancels to a few ulps, not to exactly 0, when the reference is not its mean).
    if sxx > _NOISE * (win[4] + win[5]):
        if intercept:
            beta = sxy / sxx
            alpha = (mv + y0) - beta * (mu + x0)
            spread = dv - beta * du
            ssr = syy - beta * sxy
            mean_e = 0.0
        else:
            xbar = mu + x0
            ybar = mv + y0
            beta = (sxy + n * xbar * ybar) / (sxx + n * xbar * xbar)
            alpha = 0.0
            spread = y - beta * x
            mean_e = ybar - beta * xbar
            ssr = syy - 2.0 * beta * sxy + beta * beta * sxx
        # 1 − R² below 1e-12: the residuals are rounding noise of a perfect fit, not a
        # spread (ssr = syy − β·sxy cancels there); no market pair comes this close.
        if ssr > 1e-12 * syy:
            std = math.sqrt(ssr / (n - 1.0))
            centred = dv - beta * du if intercept else spread - mean_e
            z = centred / std
        else:  # a perfect fit (or rounding just below zero): no spread to scale by
            std = 0.0
        if syy > _NOISE * (win[6] + win[7]):
            pcorr = sxy / math.sqrt(sxx * syy)
        if lags:
            half = _half_life(win, lag, u, v, u_old, v_old, window, beta)
    if window >= 3:  # W − 1 ≥ 2 returns (a full window has them all)
        m = float(window - 1)
        rxs = ret[0] + ret[1]
        rys = ret[2] + ret[3]
        cxx = (ret[4] + ret[5]) - rxs * rxs / m
        cyy = (ret[6] + ret[7]) - rys * rys / m
        cxy = (ret[8] + ret[9]) - rxs * rys / m
        if cxx > _NOISE * (ret[4] + ret[5]) and cyy > _NOISE * (ret[6] + ret[7]):
            corr = cxy / math.sqrt(cxx * cyy)
    return (beta, alpha, spread, std, z, corr, pcorr, half)


@numba.njit(inline="always")
def _half_life(win, lag, un, vn, uo, vo, window, beta):  # type: ignore[no-untyped-def]
    """Bars for the spread's deviation to halve, from an AR(1) fit over the window.

    The residuals are e_i = g_i − c with g_i = v_i − β·u_i, and the AR(1) slope
    φ = cov(e_i, e_{i−1}) / var(e_{i−1}) over the W − 1 adjacent pairs does not depend on c,
    so it comes from the window sums and the lag-1 sums in O(1); (un, vn) is the newest
    point, (uo, vo) the oldest.
    """
    m = window - 1.0
    su, sv = win[0] + win[1], win[2] + win[3]
    g_all = sv - beta * su
    g_first = g_all - (vn - beta * un)  # g_{i-1} over the pairs: all but the newest
    g_last = g_all - (vo - beta * uo)  # g_i over the pairs: all but the oldest
    suu = (win[4] + win[5]) - un * un
    suv = (win[8] + win[9]) - un * vn
    svv = (win[6] + win[7]) - vn * vn
    luu, luv, lvu, lvv = lag[0] + lag[1], lag[2] + lag[3], lag[4] + lag[5], lag[6] + lag[7]
    cov = (lvv - beta * (lvu + luv) + beta * beta * luu) - g_first * g_last / m
    var = (svv - 2.0 * beta * suv + beta * beta * suu) - g_first * g_first / m
    if not var > 0.0:
        return math.nan
    phi = cov / var
    if not 0.0 < phi < 1.0:
        return math.nan  # not mean-reverting (φ ≥ 1) or overshooting (φ ≤ 0)
    return -math.log(2.0) / math.log(phi)


@numba.njit(inline="always")
def _step(  # type: ignore[no-untyped-def]
    st, si, bx, by, brx, bry, lx, ly, x, y, window, intercept, lags, out, row
):
    """Advance one pair (state arrays ``st``, ``si``) by one bar; write ``out[row]``.

    The bar goes through ``_run`` itself, staged in the scratch slots of ``st``.
    """
    st[_IN_LX], st[_IN_LY], st[_IN_X], st[_IN_Y] = lx, ly, x, y
    lxs, lys = st[_IN_LX : _IN_LX + 1], st[_IN_LY : _IN_LY + 1]
    xs, ys = st[_IN_X : _IN_X + 1], st[_IN_Y : _IN_Y + 1]
    _run(st, si, bx, by, brx, bry, lxs, lys, xs, ys, window, intercept, lags, out, row)


@numba.njit(cache=True, error_model="numpy")
def _run_closes(  # type: ignore[no-untyped-def]
    st, si, bx, by, brx, bry, x_raw, y_raw, logs, window, intercept, lags, out
):
    """Run ``_run`` over raw closes, taking their logs one cache-sized chunk at a time."""
    n = x_raw.shape[0]
    lxs = np.empty(min(n, _CHUNK))
    lys = np.empty(min(n, _CHUNK))
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        size = stop - start
        for i in range(size):
            lxs[i] = math.log(x_raw[start + i])
            lys[i] = math.log(y_raw[start + i])
        lx, ly = lxs[:size], lys[:size]
        x, y = (lx, ly) if logs else (x_raw[start:stop], y_raw[start:stop])
        _run(st, si, bx, by, brx, bry, lx, ly, x, y, window, intercept, lags, out, start)


class RollingPair:
    """The incremental state of one pair and window (O(1) per bar)."""

    __slots__ = (
        "_brx", "_bry", "_bx", "_by", "_si", "_st", "half_life", "intercept", "log_prices",
        "window",
    )  # fmt: skip

    def __init__(
        self,
        window: int,
        intercept: bool = True,
        log_prices: bool = True,
        *,
        half_life: bool = True,
    ) -> None:
        """Start an empty window; ``half_life=False`` skips that metric (and its lag sums)."""
        if window < 2:
            raise ValueError(f"window must be at least 2 bars, got {window}")
        self.window = window
        self.intercept = intercept
        self.log_prices = log_prices
        self.half_life = half_life
        self._st = np.zeros(_N_FLOAT)
        self._si = np.zeros(_N_INT, dtype=np.int64)
        self._bx = np.zeros(window)
        self._by = np.zeros(window)
        self._brx = np.zeros(max(window - 1, 1))
        self._bry = np.zeros(max(window - 1, 1))

    def update_many(
        self, x_raw: npt.NDArray[np.float64], y_raw: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """Advance by several bars (raw close prices); return their metrics, one row each."""
        x_raw, y_raw = checked_prices(x_raw, y_raw)
        out = np.empty((x_raw.shape[0], len(METRICS)))
        _run_closes(
            self._st, self._si, self._bx, self._by, self._brx, self._bry, x_raw, y_raw,
            self.log_prices, self.window, self.intercept, self.half_life, out,
        )  # fmt: skip
        return out

    def update(self, x_raw: float, y_raw: float) -> dict[str, float]:
        """Advance by one bar (raw close prices of both legs); return the metrics."""
        row = self.update_many(np.array([x_raw]), np.array([y_raw]))[0]
        return dict(zip(METRICS, row.tolist(), strict=True))


def rolling_pair_metrics(
    x_raw: npt.NDArray[np.float64],
    y_raw: npt.NDArray[np.float64],
    window: int,
    *,
    intercept: bool = True,
    log_prices: bool = True,
    half_life: bool = True,
) -> dict[str, npt.NDArray[np.float64]]:
    """Return every metric for every bar of two aligned close-price series (batch path)."""
    pair = RollingPair(window, intercept, log_prices, half_life=half_life)
    out = pair.update_many(x_raw, y_raw)
    return {name: out[:, k] for k, name in enumerate(METRICS)}
