"""The live pipeline stage: frames → validated trades → dedup/gaps → bars → sinks.

Everything here runs synchronously inside the feed's receive loop: one frame costs a
decode, a few checks and an O(1) bar update per timeframe, with no queue hop per trade.
Closed bars are handed to the sinks (the store writer first, then later stages); open
bars and last ids are checkpointed together on a timer so a restart resumes exactly.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from pairwatch.analytics.resample import DEFAULT_MAX_FILL_MS, FillPolicy, SymbolBars
from pairwatch.daemon.health import Health
from pairwatch.daemon.sources.wire import BINARY_FRAME, SERVER_SHUTDOWN, FrameDecoder, RejectLog
from pairwatch.events import Bar, Gap, Trade

logger = logging.getLogger(__name__)

BarSink = Callable[[Sequence[Bar]], None]

DUPLICATE_REASON = "duplicate"
LATE_REASON = "late"


class StoreWriter(Protocol):
    """The part of the store writer the pipeline uses."""

    def put_bars(self, bars: Sequence[Bar]) -> None: ...
    def put_ticks(self, trades: Sequence[Trade]) -> None: ...
    def put_gaps(self, gaps: Sequence[Gap]) -> None: ...
    def checkpoint(
        self, bars: Sequence[Bar], market: str, stream: str, states: Sequence[tuple[str, int, int]]
    ) -> None: ...


class Pipeline:
    """Turn one market's frames or trades into bars for a fixed set of symbols."""

    def __init__(
        self,
        *,
        symbols: Sequence[str],
        timeframes: Sequence[tuple[str, int]],
        market: str,
        stream: str,
        writer: StoreWriter,
        health: Health,
        fill: FillPolicy = "carry",
        max_fill_ms: int = DEFAULT_MAX_FILL_MS,
        max_skew_ms: int | None = None,
        store_ticks: bool = False,
        last_ids: Mapping[str, tuple[int, int]] | None = None,
    ) -> None:
        """Build the stage; ``last_ids`` maps symbols to the stored (last id, its time)."""
        self.market = market
        self.stream = stream
        self._writer = writer
        self._health = health
        self._decode = FrameDecoder(symbols, max_skew_ms=max_skew_ms).decode
        self._reject_log = RejectLog()
        self._last_ids: dict[str, int] = {s: i for s, (i, _) in (last_ids or {}).items()}
        self._last_ts: dict[str, int] = {s: t for s, (_, t) in (last_ids or {}).items()}
        self._builders = {
            s: SymbolBars(s, timeframes, fill=fill, max_fill=max_fill_ms) for s in symbols
        }
        self._store_ticks = store_ticks
        self._lag = health.lag
        self._ticks: list[Trade] = []
        self._closed: list[Bar] = []
        self._sinks: list[BarSink] = [writer.put_bars]

    def add_sink(self, sink: BarSink) -> None:
        """Hand every batch of closed bars to ``sink`` too (after the store)."""
        self._sinks.append(sink)

    def resume(self, bars: Iterable[Bar]) -> None:
        """Restore the newest stored bar of each symbol × timeframe after a restart."""
        for bar in bars:
            builder = self._builders.get(bar.symbol)
            if builder is not None:
                builder.resume(bar)

    def on_frame(self, raw: str | bytes, ts_recv: int) -> bool:
        """Process one raw frame; return True if the server asked us to reconnect."""
        health = self._health
        health.frames += 1
        if type(raw) is str:
            result = self._decode(raw, ts_recv)
            if type(result) is Trade:
                self.on_trade(result)
                return False
            if result is SERVER_SHUTDOWN:
                return True
            reason = str(result)
        else:
            reason = BINARY_FRAME
        health.rejected[reason] += 1
        self._reject_log.sample(reason, raw)
        return False

    def on_trade(self, trade: Trade) -> None:
        """Process one validated trade: drop duplicates, record gaps, update bars."""
        health = self._health
        symbol = trade.symbol
        trade_id = trade.trade_id
        last_id = self._last_ids.get(symbol)
        # Binance ids increase by one per symbol: lower is a duplicate, higher a gap.
        if last_id is not None and trade_id != last_id + 1:
            if trade_id <= last_id:
                health.rejected[DUPLICATE_REASON] += 1
                return
            self._record_gap(symbol, last_id + 1, trade_id - 1, trade.ts_recv)
        self._last_ids[symbol] = trade_id
        self._last_ts[symbol] = trade.ts_event
        closed = self._closed
        if not self._builders[symbol].add(
            trade.ts_event, trade.price, trade.qty, trade.buyer_is_maker, trade.count, closed
        ):
            health.rejected[LATE_REASON] += 1
            return
        health.accepted += 1
        health.last_trade[symbol] = trade
        lag = self._lag
        lag.add(trade.ts_recv - trade.ts_event)
        if self._store_ticks:
            self._ticks.append(trade)
        if closed:
            self._emit()

    def advance(self, now: int, grace: int) -> None:
        """Close idle bars on the wall clock ``now`` (epoch ms), ``grace`` ms after they end.

        Each symbol's watermark follows its own feed: its last exchange time plus the wall
        time elapsed since that trade arrived, minus grace. Feed lag and a skewed local
        clock cancel out, so a lagging but trading symbol is never closed under its feet;
        only a symbol that went quiet for ``grace`` has its bars closed by the clock.
        """
        last_trades = self._health.last_trade
        for symbol, builder in self._builders.items():
            last = last_trades.get(symbol)
            if last is None:
                watermark = now - grace  # nothing received yet (e.g. a resumed open bar)
            else:
                watermark = last.ts_event + (now - last.ts_recv) - grace
            builder.advance(watermark, self._closed)
        if self._closed:
            self._emit()

    def flush_ticks(self) -> None:
        """Hand the raw trades collected since the last call to the writer."""
        if self._ticks:
            self._writer.put_ticks(self._ticks)
            self._ticks = []

    def checkpoint(self) -> None:
        """Save open bars and last ids in one transaction (the restart point)."""
        self.flush_ticks()
        open_bars = [bar for b in self._builders.values() for bar in b.open_bars()]
        states = [(s, i, self._last_ts[s]) for s, i in self._last_ids.items()]
        self._writer.checkpoint(open_bars, self.market, self.stream, states)

    def _emit(self) -> None:
        bars = self._closed
        self._closed = []
        self._health.bars_closed += len(bars)
        for sink in self._sinks:
            sink(bars)

    def _record_gap(self, symbol: str, from_id: int, to_id: int, detected_at: int) -> None:
        health = self._health
        health.gaps += 1
        health.missed_ids += to_id - from_id + 1
        times = health.gap_times.get(symbol)
        if times is None:
            times = health.gap_times[symbol] = collections.deque(maxlen=1000)
        times.append(detected_at)
        logger.warning(
            "%s: ids %d..%d missing (%d trades)", symbol, from_id, to_id, to_id - from_id + 1
        )
        self._writer.put_gaps([Gap(symbol, from_id, to_id, detected_at, self.stream)])
