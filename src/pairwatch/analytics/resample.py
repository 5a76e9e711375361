"""Incremental OHLCV bars per symbol and timeframe, bucketed by exchange trade time.

Policy (documented in docs/bars.md):
- A bar ``[ts, ts + length)`` is aligned to the Unix epoch (UTC) and keyed by its open time.
- It closes when a trade at or after its end arrives, or when ``advance(watermark)`` is
  called with a watermark at or past its end (the daemon passes wall clock minus a grace
  period, so quiet symbols still close).
- Empty intervals between two bars are, with ``fill="carry"``, emitted as flagged bars that
  carry the last close with zero volume; with ``fill="none"`` they are skipped. Carrying
  stops ``max_fill`` ms after the end of the last bar that had trades: a longer silence
  (a halted symbol, a feed outage, files days apart) leaves a hole rather than invented bars.
- A trade older than a bar that is already closed (in any timeframe) is *late*: it is
  counted and dropped, so a closed bar is never rewritten and all timeframes stay consistent.

Sums are plain float64 additions in trade order (the batch kernel does the same, so both
give identical bars). They agree with pandas' pairwise sums to ~1e-13 relative; open,
high, low, close, counts, times and flags equal a pandas ``resample`` oracle exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pairwatch.events import Bar

FillPolicy = Literal["carry", "none"]
DEFAULT_MAX_FILL_MS = 3_600_000


class _OpenBar:
    """Mutable accumulator of one symbol × timeframe (internal to ``SymbolBars``)."""

    __slots__ = (
        "close",
        "count",
        "end",
        "fill_end",
        "high",
        "label",
        "last_close",
        "length",
        "low",
        "next_start",
        "open",
        "qv",
        "start",
        "tb",
        "vol",
    )

    def __init__(self, label: str, length: int) -> None:
        self.label = label
        self.length = length
        self.start = -1
        """Open time of the open bar, or -1 when no bar is open."""
        self.end = -1
        self.next_start = -1
        """Open time of the next bar to emit (fill bars start here), or -1 before any bar."""
        self.fill_end = -1
        """Fill bars start before this: the last traded bar's end + max_fill."""
        self.last_close = math.nan
        self.open = self.high = self.low = self.close = math.nan
        self.vol = self.qv = self.tb = 0.0
        self.count = 0


class SymbolBars:
    """Build the bars of one symbol for several timeframes from its trades."""

    __slots__ = ("_bars", "_fill", "_max_fill", "_min_ts", "late", "symbol")

    def __init__(
        self,
        symbol: str,
        timeframes: Sequence[tuple[str, int]],
        *,
        fill: FillPolicy = "carry",
        max_fill: int = DEFAULT_MAX_FILL_MS,
    ) -> None:
        self.symbol = symbol
        self._bars = [_OpenBar(label, length) for label, length in timeframes]
        self._fill = fill
        self._max_fill = max_fill
        self._min_ts = -(2**62)
        """Trades before this time would fall in a closed bar: they are late."""
        self.late = 0

    def add(
        self, ts: int, price: float, qty: float, buyer_is_maker: bool, count: int, out: list[Bar]
    ) -> bool:
        """Add one trade; append the bars it closes to ``out``. Return False if it was late."""
        if ts < self._min_ts:
            self.late += 1
            return False
        quote = price * qty
        for bar in self._bars:
            if ts >= bar.end:
                start = ts - ts % bar.length
                if bar.start >= 0:
                    out.append(self._emit(bar))
                if bar.next_start >= 0 and self._fill == "carry":
                    self._emit_fills(bar, start, out)
                bar.start = start
                bar.end = start + bar.length
                bar.open = bar.high = bar.low = price
                bar.vol = bar.qv = bar.tb = 0.0
                bar.count = 0
            elif price > bar.high:
                bar.high = price
            elif price < bar.low:
                bar.low = price
            bar.close = price
            bar.count += count
            bar.vol += qty
            bar.qv += quote
            if not buyer_is_maker:
                bar.tb += qty
        return True

    def advance(self, watermark: int, out: list[Bar]) -> None:
        """Close the bars (and, with carry, empty intervals) ending at or before ``watermark``."""
        for bar in self._bars:
            if bar.start >= 0 and bar.end <= watermark:
                out.append(self._emit(bar))
            if bar.next_start >= 0 and self._fill == "carry":
                self._emit_fills(bar, watermark - watermark % bar.length, out)
                self._min_ts = max(self._min_ts, bar.next_start)

    def open_bars(self) -> list[Bar]:
        """Return snapshots of the open bars (``closed=False``) for a checkpoint."""
        return [self._snapshot(bar, closed=False) for bar in self._bars if bar.start >= 0]

    def resume(self, bar: Bar) -> None:
        """Restore state from a stored bar: reopen it if it was open, else continue after it."""
        for state in self._bars:
            if state.label != bar.timeframe:
                continue
            # After a carried (filled) bar the last traded bar is unknown: carry no further.
            state.fill_end = bar.ts + state.length + (0 if bar.filled else self._max_fill)
            if bar.closed:
                state.start = state.end = -1
                state.next_start = bar.ts + state.length
                self._min_ts = max(self._min_ts, state.next_start)
            else:
                state.start, state.end = bar.ts, bar.ts + state.length
                state.next_start = bar.ts
                state.open, state.high, state.low, state.close = (
                    bar.open,
                    bar.high,
                    bar.low,
                    bar.close,
                )
                state.vol, state.qv, state.tb = bar.volume, bar.quote_volume, bar.taker_buy_volume
                state.count = bar.trades
                self._min_ts = max(self._min_ts, bar.ts)
            state.last_close = bar.close

    def _emit(self, bar: _OpenBar) -> Bar:
        snapshot = self._snapshot(bar, closed=True)
        bar.last_close = bar.close
        bar.next_start = bar.end
        bar.fill_end = bar.end + self._max_fill
        self._min_ts = max(self._min_ts, bar.end)
        bar.start = bar.end = -1
        return snapshot

    def _emit_fills(self, bar: _OpenBar, until: int, out: list[Bar]) -> None:
        price = bar.last_close
        ts = bar.next_start
        until = min(until, bar.fill_end)
        while ts < until:
            out.append(
                Bar(
                    self.symbol,
                    bar.label,
                    ts,
                    price,
                    price,
                    price,
                    price,
                    0.0,
                    0.0,
                    math.nan,
                    0,
                    0.0,
                    filled=True,
                )
            )
            ts += bar.length
        bar.next_start = max(bar.next_start, ts)

    def _snapshot(self, bar: _OpenBar, *, closed: bool) -> Bar:
        vol = bar.vol
        return Bar(
            self.symbol,
            bar.label,
            bar.start,
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            vol,
            bar.qv,
            bar.qv / vol if vol > 0.0 else math.nan,
            bar.count,
            bar.tb,
            closed=closed,
        )
