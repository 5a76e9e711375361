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

Accuracy. Sums are kept relative to a reference point (x₀, y₀) with Neumaier-compensated
adds and removes, and every ``RESYNC_WINDOWS`` × W updates they are recomputed exactly
(two-pass, centred on the window mean, which becomes the new reference). Errors therefore
cannot accumulate beyond that many updates, and prices at BTC scale (60,000) lose no
digits to cancellation.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from pairwatch.analytics.compensated import add as _add

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
_SU, _SV, _SUU, _SVV, _SUV = 2, 4, 6, 8, 10  # window sums of u = x - x0, v = y - y0
_RX, _RY, _RXX, _RYY, _RXY = 12, 14, 16, 18, 20  # sums of the one-bar log returns
_PREV_X, _PREV_Y = 22, 23  # last log prices (for returns)
_LUU, _LUV, _LVU, _LVV = 24, 26, 28, 30  # lag-1 sums over adjacent points: u_i·u_{i-1}, …
_N_FLOAT = 32
# Int state.
_COUNT, _POS, _SINCE, _NRET, _RPOS, _HAS_PREV = range(6)
_N_INT = 6


@numba.njit(cache=True)
def log_prices(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Return ln of each value with the same scalar log the kernels use.

    numpy's vectorised log may differ from the C library's by one unit in the last place on
    some CPUs; using one log everywhere keeps the live and batch paths bit-identical.
    """
    out = np.empty_like(values)
    for i in range(values.shape[0]):
        out[i] = math.log(values[i])
    return out


def checked_prices(*columns: npt.ArrayLike) -> list[npt.NDArray[np.float64]]:
    """Return the columns as contiguous float64 arrays of one length, all finite and > 0.

    The kernels trust their input (numba does no bounds checks, and one NaN would poison
    the running sums), so every public entry point goes through here.
    """
    arrays = [np.ascontiguousarray(c, dtype=np.float64) for c in columns]
    if any(a.ndim != 1 or a.shape != arrays[0].shape for a in arrays):
        raise ValueError("price columns must be 1-D and of the same length")
    for a in arrays:
        if not _all_positive(a):
            raise ValueError("prices must be finite and greater than zero")
    return arrays


@numba.njit(cache=True)
def _all_positive(values: npt.NDArray[np.float64]) -> bool:
    """Return whether every value is finite and > 0 (one pass, no temporaries)."""
    for v in values:  # noqa: SIM110 - a plain loop is what numba compiles best
        if not (v > 0.0 and v < math.inf):  # also false for NaN
            return False
    return True


@numba.njit(inline="always")
def _get(st: npt.NDArray[np.float64], k: int) -> float:
    return float(st[k] + st[k + 1])


@numba.njit(inline="always")
def _moments(st: npt.NDArray[np.float64], k: int, a: float, b: float, sign: float) -> None:
    """Add (sign = 1) or remove (sign = −1) a point to the sums Σa, Σb, Σa², Σb², Σab at ``k``."""
    _add(st, k, sign * a)
    _add(st, k + 2, sign * b)
    _add(st, k + 4, sign * (a * a))
    _add(st, k + 6, sign * (b * b))
    _add(st, k + 8, sign * (a * b))


@numba.njit(inline="always")
def _lags(
    st: npt.NDArray[np.float64], u1: float, v1: float, u0: float, v0: float, sign: float
) -> None:
    """Add or remove the adjacent pair (point 0, point 1) to the lag-1 sums."""
    _add(st, _LUU, sign * (u1 * u0))
    _add(st, _LUV, sign * (u1 * v0))
    _add(st, _LVU, sign * (v1 * u0))
    _add(st, _LVV, sign * (v1 * v0))


@numba.njit
def _recompute(st, si, bx, by, brx, bry, window, lags):  # type: ignore[no-untyped-def]
    """Rebuild every sum exactly from the buffers, centred on the window mean."""
    n = si[_COUNT]
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
    st[_REF_X] = mx
    st[_REF_Y] = my
    for k in range(_SU, _SUV + 2):
        st[k] = 0.0
    for i in range(n):
        _moments(st, _SU, bx[i] - mx, by[i] - my, 1.0)
    for k in range(_LUU, _LVV + 2):
        st[k] = 0.0
    oldest = si[_POS] if n == window else 0
    for j in range(n - 1 if lags else 0):
        i0 = (oldest + j) % window
        i1 = (oldest + j + 1) % window
        _lags(st, bx[i1] - mx, by[i1] - my, bx[i0] - mx, by[i0] - my, 1.0)
    for k in range(_RX, _RXY + 2):
        st[k] = 0.0
    for i in range(si[_NRET]):
        _moments(st, _RX, brx[i], bry[i], 1.0)
    si[_SINCE] = 0


@numba.njit
def _step(  # type: ignore[no-untyped-def]
    st, si, bx, by, brx, bry, lx, ly, x, y, window, intercept, lags, out, row
):
    """Advance one pair by one bar and write its metrics into ``out[row]``.

    ``lx``/``ly`` are the log closes (for returns), ``x``/``y`` the transformed ones.
    """
    # One-bar log returns, the last W - 1 of them.
    if si[_HAS_PREV]:
        rx = lx - st[_PREV_X]
        ry = ly - st[_PREV_Y]
        nret = window - 1
        if nret > 0:
            rpos = si[_RPOS]
            if si[_NRET] == nret:
                _moments(st, _RX, brx[rpos], bry[rpos], -1.0)
            else:
                si[_NRET] += 1
            brx[rpos] = rx
            bry[rpos] = ry
            si[_RPOS] = (rpos + 1) % nret
            _moments(st, _RX, rx, ry, 1.0)
    st[_PREV_X] = lx
    st[_PREV_Y] = ly
    si[_HAS_PREV] = 1

    # The window of transformed prices.
    if si[_COUNT] == 0:
        st[_REF_X] = x
        st[_REF_Y] = y
    pos = si[_POS]
    x0 = st[_REF_X]
    y0 = st[_REF_Y]
    if lags and si[_COUNT] > 0:  # the pair (newest so far, new point) joins the lag sums
        last = (pos - 1) % window
        _lags(st, x - x0, y - y0, bx[last] - x0, by[last] - y0, 1.0)
    if si[_COUNT] == window:
        u = bx[pos] - x0
        v = by[pos] - y0
        _moments(st, _SU, u, v, -1.0)
        if lags:  # the pair (oldest, second oldest) leaves the lag sums
            nxt = (pos + 1) % window
            _lags(st, bx[nxt] - x0, by[nxt] - y0, u, v, -1.0)
    else:
        si[_COUNT] += 1
    bx[pos] = x
    by[pos] = y
    si[_POS] = (pos + 1) % window
    _moments(st, _SU, x - x0, y - y0, 1.0)
    si[_SINCE] += 1
    if si[_SINCE] >= RESYNC_WINDOWS * window and si[_COUNT] == window:
        _recompute(st, si, bx, by, brx, bry, window, lags)
        x0 = st[_REF_X]
        y0 = st[_REF_Y]

    for k in range(8):
        out[row, k] = math.nan
    if si[_COUNT] < window or window < 2:
        return
    n = float(window)
    su = _get(st, _SU)
    sv = _get(st, _SV)
    mu = su / n
    mv = sv / n
    sxx = _get(st, _SUU) - su * mu
    syy = _get(st, _SVV) - sv * mv
    sxy = _get(st, _SUV) - su * mv
    du = (x - x0) - mu  # the latest point, centred on the window means
    dv = (y - y0) - mv
    if sxx > 0.0:
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
        out[row, 0] = beta
        out[row, 1] = alpha
        out[row, 2] = spread
        # 1 − R² below 1e-12: the residuals are rounding noise of a perfect fit, not a
        # spread (ssr = syy − β·sxy cancels there); no market pair comes this close.
        if ssr > 1e-12 * syy:
            std = math.sqrt(ssr / (n - 1.0))
            out[row, 3] = std
            centred = dv - beta * du if intercept else spread - mean_e
            out[row, 4] = centred / std
        else:  # a perfect fit (or rounding just below zero): no spread to scale by
            out[row, 3] = 0.0
        if syy > 0.0:
            out[row, 6] = sxy / math.sqrt(sxx * syy)
        if lags:
            out[row, 7] = _half_life(st, si, bx, by, x0, y0, window, beta)
    nret = si[_NRET]
    if nret == window - 1 and nret >= 2:
        m = float(nret)
        rxs = _get(st, _RX)
        rys = _get(st, _RY)
        cxx = _get(st, _RXX) - rxs * rxs / m
        cyy = _get(st, _RYY) - rys * rys / m
        cxy = _get(st, _RXY) - rxs * rys / m
        if cxx > 0.0 and cyy > 0.0:
            out[row, 5] = cxy / math.sqrt(cxx * cyy)


@numba.njit
def _half_life(st, si, bx, by, x0, y0, window, beta):  # type: ignore[no-untyped-def]
    """Bars for the spread's deviation to halve, from an AR(1) fit over the window.

    The residuals are e_i = g_i − c with g_i = v_i − β·u_i, and the AR(1) slope
    φ = cov(e_i, e_{i−1}) / var(e_{i−1}) over the W − 1 adjacent pairs does not depend on c,
    so it comes from the window sums and the lag-1 sums in O(1).
    """
    m = window - 1.0
    oldest = si[_POS]
    newest = (oldest - 1) % window
    uo, vo = bx[oldest] - x0, by[oldest] - y0
    un, vn = bx[newest] - x0, by[newest] - y0
    su, sv = _get(st, _SU), _get(st, _SV)
    g_all = sv - beta * su
    g_first = g_all - (vn - beta * un)  # g_{i-1} over the pairs: all but the newest
    g_last = g_all - (vo - beta * uo)  # g_i over the pairs: all but the oldest
    suu = _get(st, _SUU) - un * un
    suv = _get(st, _SUV) - un * vn
    svv = _get(st, _SVV) - vn * vn
    lag = _get(st, _LVV) - beta * (_get(st, _LVU) + _get(st, _LUV)) + beta * beta * _get(st, _LUU)
    cov = lag - g_first * g_last / m
    var = (svv - 2.0 * beta * suv + beta * beta * suu) - g_first * g_first / m
    if not var > 0.0:
        return math.nan
    phi = cov / var
    if not 0.0 < phi < 1.0:
        return math.nan  # not mean-reverting (φ ≥ 1) or overshooting (φ ≤ 0)
    return -math.log(2.0) / math.log(phi)


@numba.njit(cache=True)
def _run(  # type: ignore[no-untyped-def]
    st, si, bx, by, brx, bry, lx, ly, x, y, window, intercept, lags, out
):
    for i in range(x.shape[0]):
        _step(st, si, bx, by, brx, bry, lx[i], ly[i], x[i], y[i], window, intercept, lags, out, i)


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
        lx, ly = log_prices(x_raw), log_prices(y_raw)
        x, y = (lx, ly) if self.log_prices else (x_raw, y_raw)
        out = np.empty((x.shape[0], len(METRICS)))
        _run(
            self._st, self._si, self._bx, self._by, self._brx, self._bry,
            lx, ly, x, y, self.window, self.intercept, self.half_life, out,
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
