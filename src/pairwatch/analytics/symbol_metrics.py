"""Per symbol × timeframe metrics over the last W bars, O(1) per bar.

- ``log_return``: ln(close_t / close_{t−1}); NaN for the first bar;
- ``volatility``: sample standard deviation (ddof 1) of the last W log returns, annualised by
  the bar length (× √(bars per year), a year being 365 days: crypto trades every day);
- ``vwap``: Σ quote volume / Σ volume over the last W bars (NaN with no volume);
- ``volume_zscore``, ``trades_zscore``: (value_t − mean) / sample std over the last W bars.
Each is NaN until its W values exist, and NaN (never ±inf) when its window is flat.

As in ``rolling_ols``: one numba step for the live and the batch path, window sums kept
with compensated adds and removes and recomputed exactly every few windows.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from pairwatch.analytics.compensated import add as _add
from pairwatch.analytics.prices import checked_prices

SYMBOL_METRICS = ("log_return", "volatility", "vwap", "volume_zscore", "trades_zscore")

YEAR_MS = 365 * 86_400_000
_RESYNC_WINDOWS = 4

# Float state: (sum, compensation) pairs, the last close, and the reference values the
# volume and trade-count sums are kept relative to (raw sums of squares would cancel).
_R, _RR, _V, _VV, _Q, _N, _NN = 0, 2, 4, 6, 8, 10, 12
_PREV = 14
_REF_V, _REF_N = 15, 16
_N_FLOAT = 17
_FLAT = 64.0 * 2.220446049250313e-16
# Int state: values in the window, ring position, returns seen, updates since resync.
_COUNT, _POS, _NRET, _SINCE = range(4)


@numba.njit(inline="always")
def _zscore(value: float, total: float, squares: float, n: float, ref: float) -> float:
    """The z-score of ``value`` (relative to ``ref``) from sums of values relative to ``ref``."""
    mean = total / n
    var = (squares - total * mean) / (n - 1.0)
    # A window whose values differ only by rounding is flat: rounding of numbers near
    # ``ref``, or of the sums themselves (a few ulps of the raw sum of squares).
    noise = _FLAT * ref
    if not var > max(noise * noise, _FLAT * squares / (n - 1.0)):
        return math.nan
    return (value - mean) / math.sqrt(var)


@numba.njit
def _resync(st, buf, count):  # type: ignore[no-untyped-def]
    """Recompute every window sum exactly from the ring buffer, centred on its means."""
    ref_v = 0.0
    ref_n = 0.0
    for i in range(count):
        ref_v += buf[i, 1]
        ref_n += buf[i, 3]
    st[_REF_V] = ref_v / count
    st[_REF_N] = ref_n / count
    for k in range(_R, _NN + 2):
        st[k] = 0.0
    for i in range(count):
        r = buf[i, 0]
        if not math.isnan(r):
            _add(st, _R, r)
            _add(st, _RR, r * r)
        dv = buf[i, 1] - st[_REF_V]
        dn = buf[i, 3] - st[_REF_N]
        _add(st, _V, dv)
        _add(st, _VV, dv * dv)
        _add(st, _Q, buf[i, 2])
        _add(st, _N, dn)
        _add(st, _NN, dn * dn)


@numba.njit
def _symbol_step(st, si, buf, close, volume, quote, trades, window, annual, out, row):  # type: ignore[no-untyped-def]
    r = math.log(close / st[_PREV])  # NaN for the first bar: the previous close is NaN
    st[_PREV] = close
    pos = si[_POS]
    if si[_COUNT] == 0:
        st[_REF_V] = volume
        st[_REF_N] = trades
    ref_v = st[_REF_V]
    ref_n = st[_REF_N]
    if si[_COUNT] == window:  # the oldest bar leaves
        old_r = buf[pos, 0]
        if not math.isnan(old_r):
            _add(st, _R, -old_r)
            _add(st, _RR, -old_r * old_r)
            si[_NRET] -= 1
        dv = buf[pos, 1] - ref_v
        dn = buf[pos, 3] - ref_n
        _add(st, _V, -dv)
        _add(st, _VV, -dv * dv)
        _add(st, _Q, -buf[pos, 2])
        _add(st, _N, -dn)
        _add(st, _NN, -dn * dn)
    else:
        si[_COUNT] += 1
    buf[pos, 0] = r
    buf[pos, 1] = volume
    buf[pos, 2] = quote
    buf[pos, 3] = trades
    si[_POS] = (pos + 1) % window
    if not math.isnan(r):
        _add(st, _R, r)
        _add(st, _RR, r * r)
        si[_NRET] += 1
    dv = volume - ref_v
    dn = trades - ref_n
    _add(st, _V, dv)
    _add(st, _VV, dv * dv)
    _add(st, _Q, quote)
    _add(st, _N, dn)
    _add(st, _NN, dn * dn)
    si[_SINCE] += 1
    if si[_SINCE] >= _RESYNC_WINDOWS * window:
        _resync(st, buf, si[_COUNT])
        si[_SINCE] = 0

    out[row, 0] = r
    for k in range(1, 5):
        out[row, k] = math.nan
    n = float(window)
    if si[_NRET] == window and window >= 2:
        total = st[_R] + st[_R + 1]
        var = (st[_RR] + st[_RR + 1] - total * total / n) / (n - 1.0)
        if var > 0.0:
            out[row, 1] = math.sqrt(var) * annual
        elif var == 0.0:
            out[row, 1] = 0.0
    if si[_COUNT] == window:
        ref_v = st[_REF_V]  # a resync above may have moved the references
        ref_n = st[_REF_N]
        dv_sum = st[_V] + st[_V + 1]
        vol_sum = dv_sum + n * ref_v
        if vol_sum > 0.0:
            out[row, 2] = (st[_Q] + st[_Q + 1]) / vol_sum
        if window >= 2:
            out[row, 3] = _zscore(volume - ref_v, dv_sum, st[_VV] + st[_VV + 1], n, ref_v)
            out[row, 4] = _zscore(
                trades - ref_n, st[_N] + st[_N + 1], st[_NN] + st[_NN + 1], n, ref_n
            )


@numba.njit(cache=True)
def _bank_run(rows, st, si, buf, close, volume, quote, trades, window, annual, out):  # type: ignore[no-untyped-def]
    for j in range(rows.shape[0]):
        p = rows[j]
        _symbol_step(st[p], si[p], buf[p], close[j], volume[j], quote[j], trades[j], window,
                     annual, out, j)  # fmt: skip


def _checked_bars(
    close: npt.ArrayLike, volume: npt.ArrayLike, quote_volume: npt.ArrayLike, trades: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], ...]:
    (c,) = checked_prices(close)
    v, q, n = (np.ascontiguousarray(a, dtype=np.float64) for a in (volume, quote_volume, trades))
    for name, a in (("volume", v), ("quote volume", q), ("trades", n)):
        if a.shape != c.shape or not bool(np.all(np.isfinite(a) & (a >= 0.0))):
            raise ValueError(f"{name} must be finite, >= 0 and as long as close")
    return c, v, q, n


class SymbolBank:
    """The state of ``size`` symbol series sharing one window and bar length.

    One numba call advances any subset of them by one bar each, with the very same step
    as ``RollingSymbol``, so a series in a bank gets the same numbers, to the bit.
    """

    def __init__(self, size: int, window: int, bar_ms: int) -> None:
        if window < 2:
            raise ValueError(f"window must be at least 2 bars, got {window}")
        if bar_ms <= 0:
            raise ValueError(f"bar length must be positive, got {bar_ms} ms")
        self.window = window
        self.annual = math.sqrt(YEAR_MS / bar_ms)
        self._st = np.zeros((size, _N_FLOAT))
        self._st[:, _PREV] = math.nan  # no previous close yet
        self._si = np.zeros((size, 4), dtype=np.int64)
        self._buf = np.zeros((size, window, 4))

    def update(
        self,
        rows: npt.NDArray[np.int64],
        close: npt.ArrayLike,
        volume: npt.ArrayLike,
        quote_volume: npt.ArrayLike,
        trades: npt.ArrayLike,
    ) -> npt.NDArray[np.float64]:
        """Advance series ``rows`` by one bar each (in order); return one metrics row each."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        c, v, q, n = _checked_bars(close, volume, quote_volume, trades)
        if rows.shape != c.shape:
            raise ValueError("rows and bars must be 1-D and of the same length")
        if rows.size and (rows.min() < 0 or rows.max() >= self._st.shape[0]):
            raise ValueError(f"rows must be within 0..{self._st.shape[0] - 1}")
        out = np.empty((rows.shape[0], len(SYMBOL_METRICS)))
        _bank_run(rows, self._st, self._si, self._buf, c, v, q, n, self.window, self.annual, out)
        return out


class RollingSymbol:
    """The incremental state of one symbol, timeframe and window: a bank of one series."""

    __slots__ = ("_bank", "window")

    def __init__(self, window: int, bar_ms: int) -> None:
        self._bank = SymbolBank(1, window, bar_ms)
        self.window = window

    def update_many(
        self,
        close: npt.NDArray[np.float64],
        volume: npt.NDArray[np.float64],
        quote_volume: npt.NDArray[np.float64],
        trades: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        """Advance by several bars; return their metrics, one row each."""
        rows = np.zeros(np.shape(close), dtype=np.int64)
        return self._bank.update(rows, close, volume, quote_volume, trades)


def symbol_metrics(
    close: npt.NDArray[np.float64],
    volume: npt.NDArray[np.float64],
    quote_volume: npt.NDArray[np.float64],
    trades: npt.NDArray[np.float64],
    *,
    window: int,
    bar_ms: int,
) -> dict[str, npt.NDArray[np.float64]]:
    """Return the symbol metrics for every bar of one symbol's series (batch path)."""
    out = RollingSymbol(window, bar_ms).update_many(close, volume, quote_volume, trades)
    return {name: out[:, k] for k, name in enumerate(SYMBOL_METRICS)}
