"""The compiled batch resampler: the same bars as ``SymbolBars`` from whole arrays.

Replay feeds a symbol's trades chunk by chunk; ``BatchBars`` keeps each timeframe's
open bar between chunks in small state arrays, so the output does not depend on how the
input was chunked. Late trades are removed first with the same rule as the live builder
(a trade is late when its bucket of the finest timeframe is older than a bucket already seen).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

from pairwatch.analytics.resample import DEFAULT_MAX_FILL_MS, FillPolicy
from pairwatch.analytics.tradebatch import TradeBatch
from pairwatch.events import Bar

# State layout (floats): open, high, low, close, vol, qv, tb, last_close
_F_OPEN, _F_HIGH, _F_LOW, _F_CLOSE, _F_VOL, _F_QV, _F_TB, _F_LAST = range(8)
# State layout (ints): start (-1 = no open bar), count, next_start (-1 = before any bar),
# fill_end (fill bars start before it: last traded bar's end + max_fill)
_I_START, _I_COUNT, _I_NEXT, _I_FILL_END = range(4)


@numba.njit(cache=True, nogil=True)
def _resample(  # type: ignore[no-untyped-def]
    ts, price, qty, maker, count, length, carry, max_fill, sf, si, out_ts, out_f, out_i
):
    n_out = 0
    for k in range(ts.shape[0]):
        t = ts[k]
        p = price[k]
        q = qty[k]
        start = si[_I_START]
        if start < 0 or t >= start + length:
            new_start = t - t % length
            if start >= 0:
                out_ts[n_out] = start
                out_f[n_out, 0] = sf[_F_OPEN]
                out_f[n_out, 1] = sf[_F_HIGH]
                out_f[n_out, 2] = sf[_F_LOW]
                out_f[n_out, 3] = sf[_F_CLOSE]
                out_f[n_out, 4] = sf[_F_VOL]
                out_f[n_out, 5] = sf[_F_QV]
                out_f[n_out, 6] = sf[_F_TB]
                out_i[n_out, 0] = si[_I_COUNT]
                out_i[n_out, 1] = 0
                n_out += 1
                sf[_F_LAST] = sf[_F_CLOSE]
                si[_I_NEXT] = start + length
                si[_I_FILL_END] = start + length + max_fill
            nxt = si[_I_NEXT]
            if carry and nxt >= 0:
                last = sf[_F_LAST]
                until = min(new_start, si[_I_FILL_END])
                while nxt < until:
                    out_ts[n_out] = nxt
                    out_f[n_out, 0] = last
                    out_f[n_out, 1] = last
                    out_f[n_out, 2] = last
                    out_f[n_out, 3] = last
                    out_f[n_out, 4] = 0.0
                    out_f[n_out, 5] = 0.0
                    out_f[n_out, 6] = 0.0
                    out_i[n_out, 0] = 0
                    out_i[n_out, 1] = 1
                    n_out += 1
                    nxt += length
                si[_I_NEXT] = nxt
            si[_I_START] = new_start
            sf[_F_OPEN] = p
            sf[_F_HIGH] = p
            sf[_F_LOW] = p
            sf[_F_VOL] = 0.0
            sf[_F_QV] = 0.0
            sf[_F_TB] = 0.0
            si[_I_COUNT] = 0
        elif p > sf[_F_HIGH]:
            sf[_F_HIGH] = p
        elif p < sf[_F_LOW]:
            sf[_F_LOW] = p
        sf[_F_CLOSE] = p
        si[_I_COUNT] += count[k]
        sf[_F_VOL] += q
        sf[_F_QV] += p * q
        if not maker[k]:
            sf[_F_TB] += q
    return n_out


@dataclass(frozen=True, slots=True)
class BarArrays:
    """Closed bars of one symbol × timeframe as columns (the batch counterpart of ``Bar``)."""

    symbol: str
    timeframe: str
    ts: npt.NDArray[np.int64]
    open: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]
    volume: npt.NDArray[np.float64]
    quote_volume: npt.NDArray[np.float64]
    vwap: npt.NDArray[np.float64]
    trades: npt.NDArray[np.int64]
    taker_buy_volume: npt.NDArray[np.float64]
    filled: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def to_bars(self) -> list[Bar]:
        """Return the rows as ``Bar`` events."""
        columns = zip(
            self.ts.tolist(),
            self.open.tolist(),
            self.high.tolist(),
            self.low.tolist(),
            self.close.tolist(),
            self.volume.tolist(),
            self.quote_volume.tolist(),
            self.vwap.tolist(),
            self.trades.tolist(),
            self.taker_buy_volume.tolist(),
            self.filled.tolist(),
            strict=True,
        )
        return [
            Bar(self.symbol, self.timeframe, t, o, h, lo, c, v, qv, vw, n, tb, filled=f)
            for t, o, h, lo, c, v, qv, vw, n, tb, f in columns
        ]


class _TimeframeState:
    __slots__ = ("floats", "ints", "label", "length")

    def __init__(self, label: str, length: int) -> None:
        self.label = label
        self.length = length
        self.floats = np.zeros(8, dtype=np.float64)
        self.floats[_F_LAST] = math.nan
        self.ints = np.array([-1, 0, -1, -1], dtype=np.int64)


class BatchBars:
    """Build one symbol's bars for several timeframes from ``TradeBatch`` chunks."""

    def __init__(
        self,
        symbol: str,
        timeframes: Sequence[tuple[str, int]],
        *,
        fill: FillPolicy = "carry",
        max_fill: int = DEFAULT_MAX_FILL_MS,
    ) -> None:
        self.symbol = symbol
        self._states = [_TimeframeState(label, length) for label, length in timeframes]
        self._finest = min(length for _, length in timeframes)
        self._carry = fill == "carry"
        self._max_fill = max_fill
        self._max_bucket = np.int64(-(2**62))
        self.late = 0

    def add(self, batch: TradeBatch) -> list[BarArrays]:
        """Add a chunk of trades (in exchange-time order); return the bars it closed."""
        if len(batch) == 0:
            return []
        ts = batch.ts_event
        bucket = ts - ts % self._finest
        running = np.maximum.accumulate(np.maximum(bucket, self._max_bucket))
        keep = bucket >= running
        if not keep.all():
            self.late += int((~keep).sum())
            batch = batch.take(keep)
            ts = batch.ts_event
        self._max_bucket = running[-1]
        return [self._run(state, batch) for state in self._states]

    def _run(self, state: _TimeframeState, batch: TradeBatch) -> BarArrays:
        ts = batch.ts_event
        length = state.length
        first = int(ts[0] - ts[0] % length)
        origin = first
        if state.ints[_I_START] >= 0:
            origin = int(state.ints[_I_START])
        elif state.ints[_I_NEXT] >= 0:
            origin = int(state.ints[_I_NEXT])
        capacity = self._capacity(ts, length, origin, state)
        out_ts = np.empty(capacity, dtype=np.int64)
        out_f = np.empty((capacity, 7), dtype=np.float64)
        out_i = np.empty((capacity, 2), dtype=np.int64)
        n = _resample(
            ts,
            batch.price,
            batch.qty,
            batch.buyer_is_maker,
            batch.count,
            length,
            self._carry,
            self._max_fill,
            state.floats,
            state.ints,
            out_ts,
            out_f,
            out_i,
        )
        volume = out_f[:n, 4]
        quote = out_f[:n, 5]
        with np.errstate(invalid="ignore", divide="ignore"):
            vwap = np.where(volume > 0.0, quote / volume, np.nan)
        return BarArrays(
            self.symbol,
            state.label,
            out_ts[:n],
            out_f[:n, 0],
            out_f[:n, 1],
            out_f[:n, 2],
            out_f[:n, 3],
            volume,
            quote,
            vwap,
            out_i[:n, 0],
            out_f[:n, 6],
            out_i[:n, 1].astype(np.bool_),
        )

    def _capacity(
        self, ts: npt.NDArray[np.int64], length: int, origin: int, state: _TimeframeState
    ) -> int:
        """Return an upper bound of the bars one chunk can emit (real and filled)."""
        buckets = ts - ts % length
        steps = np.diff(buckets) // length
        capacity = int(np.count_nonzero(steps)) + 2
        if self._carry:
            most = self._max_fill // length + 1
            capacity += int(np.minimum(np.maximum(steps - 1, 0), most).sum())
            capacity += min(max(int(buckets[0] - origin) // length, 0), most)
        return capacity

    def open_bars(self) -> list[Bar]:
        """Return the bars still open (``closed=False``), e.g. at the end of a replay."""
        bars = []
        for state in self._states:
            f, i = state.floats, state.ints
            if i[_I_START] < 0:
                continue
            vol = float(f[_F_VOL])
            bars.append(
                Bar(
                    self.symbol,
                    state.label,
                    int(i[_I_START]),
                    float(f[_F_OPEN]),
                    float(f[_F_HIGH]),
                    float(f[_F_LOW]),
                    float(f[_F_CLOSE]),
                    vol,
                    float(f[_F_QV]),
                    float(f[_F_QV]) / vol if vol > 0.0 else math.nan,
                    int(i[_I_COUNT]),
                    float(f[_F_TB]),
                    closed=False,
                )
            )
        return bars


def warm_up() -> None:
    """Compile (or load from cache) the kernel so the first real chunk is not slow."""
    tiny = TradeBatch(
        "WARMUP",
        np.array([1, 2], dtype=np.int64),
        np.array([0, 1500], dtype=np.int64),
        np.array([1.0, 2.0]),
        np.array([1.0, 1.0]),
        np.array([True, False]),
        np.array([1, 1], dtype=np.int64),
    )
    BatchBars("WARMUP", [("1s", 1000)]).add(tiny)
