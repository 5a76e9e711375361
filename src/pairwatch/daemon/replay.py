"""Replay recorded trades (Binance CSV dumps, recorded frame files) into SQLite bars.

Files are read in chunks and merged by event time: a heap always hands over the chunk
with the oldest first trade. Per symbol, ids are deduplicated (overlapping files), gaps
recorded, late trades dropped by the live rule, and bars built by the compiled kernel.
The result is deterministic and a re-run is idempotent (bars are upserted). At the end
of the input, bars still open are written as closed: a replay covers whole files.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import msgspec
import numpy as np

from pairwatch.analytics.resample import DEFAULT_MAX_FILL_MS, FillPolicy
from pairwatch.analytics.resample_kernel import BarArrays, BatchBars, warm_up
from pairwatch.analytics.tradebatch import TradeBatch
from pairwatch.daemon.sources.csvdump import describe_dump, read_dump
from pairwatch.daemon.sources.frames import iter_frames
from pairwatch.daemon.sources.wire import SERVER_SHUTDOWN, FrameDecoder
from pairwatch.errors import ConfigError
from pairwatch.events import Bar, Gap, Trade

logger = logging.getLogger(__name__)

DUMP_SUFFIXES = (".csv", ".zip")
FRAME_CHUNK = 50_000
"""Frames decoded per chunk of a recorded frame file."""


class ReplayWriter(Protocol):
    """The part of the store writer a replay uses."""

    def put_bars(self, bars: Sequence[Bar]) -> None: ...
    def put_bar_arrays(self, bars: BarArrays) -> None: ...
    def put_gaps(self, gaps: Sequence[Gap]) -> None: ...


@dataclass(slots=True)
class ReplayStats:
    """What a replay read, kept and wrote."""

    trades_read: int = 0
    trades_accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    gaps: int = 0
    bars: int = 0
    seconds: float = 0.0
    pair_rows: int = 0
    """``analytics`` rows computed after the bars (one per aligned bar and window)."""
    symbol_rows: int = 0
    analytics_seconds: float = 0.0

    @property
    def trades_per_second(self) -> float:
        """Return accepted trades per second of wall time."""
        return self.trades_read / self.seconds if self.seconds > 0 else 0.0


Chunks = Iterator[tuple[str, TradeBatch]]
"""Batches with the id sequence they belong to: ``<market> <stream>``, e.g. ``spot trade``."""


def _dump_chunks(path: Path, symbol: str | None, chunk_bytes: int, rejects: Counter[str]) -> Chunks:
    info = describe_dump(path, symbol=symbol)
    source = f"{info.market} {'aggTrade' if info.kind == 'aggTrades' else 'trade'}"
    for batch in read_dump(path, symbol=symbol, chunk_bytes=chunk_bytes, rejects=rejects):
        yield source, batch


def _frame_source(stream: str, raw: str) -> str:
    """Tell a recorded frame's market and stream from its payload's keys.

    USD-M trade payloads carry ``X`` (order type), spot ones do not; spot aggTrade
    payloads carry ``M``, USD-M ones do not.
    """
    if stream.endswith("@aggTrade"):
        return "spot aggTrade" if '"M":' in raw else "usdm aggTrade"
    return "usdm trade" if '"X":' in raw else "spot trade"


def _frame_chunks(path: Path, decoder: FrameDecoder, rejects: Counter[str]) -> Chunks:
    """Decode a recorded frame file into per-symbol batches of ``FRAME_CHUNK`` frames."""
    frames = iter_frames(path, rejects=rejects)
    while True:
        chunk = list(itertools.islice(frames, FRAME_CHUNK))
        if not chunk:
            return
        by_key: dict[tuple[str, str], list[Trade]] = {}
        for frame in chunk:
            if not frame.stream.endswith(("@trade", "@aggTrade")):
                continue  # book tickers, depth: recorded alongside, not ours to count
            result = decoder.decode(frame.raw, 0)
            if type(result) is Trade:
                source = _frame_source(frame.stream, frame.raw)
                by_key.setdefault((result.symbol, source), []).append(result)
            elif result != SERVER_SHUTDOWN:
                rejects[str(result)] += 1
        for symbol, source in sorted(by_key):
            yield source, _batch_of(symbol, by_key[symbol, source])


def _batch_of(symbol: str, trades: list[Trade]) -> TradeBatch:
    return TradeBatch(
        symbol,
        np.fromiter((t.trade_id for t in trades), np.int64, len(trades)),
        np.fromiter((t.ts_event for t in trades), np.int64, len(trades)),
        np.fromiter((t.price for t in trades), np.float64, len(trades)),
        np.fromiter((t.qty for t in trades), np.float64, len(trades)),
        np.fromiter((t.buyer_is_maker for t in trades), np.bool_, len(trades)),
        np.fromiter((t.count for t in trades), np.int64, len(trades)),
    )


class Replay:
    """Drive files through dedup, gap detection and the batch resampler into a writer."""

    def __init__(
        self,
        writer: ReplayWriter,
        timeframes: Sequence[tuple[str, int]],
        *,
        fill: FillPolicy = "carry",
        max_fill_ms: int = DEFAULT_MAX_FILL_MS,
        symbols: Sequence[str] | None = None,
        chunk_bytes: int = 4 << 20,
        on_progress: Callable[[int], object] | None = None,
    ) -> None:
        self._writer = writer
        self._timeframes = list(timeframes)
        self._fill: FillPolicy = fill
        self._max_fill = max_fill_ms
        self._symbols = None if symbols is None else {s.upper() for s in symbols}
        self._chunk_bytes = chunk_bytes
        self._on_progress = on_progress
        self._builders: dict[str, BatchBars] = {}
        self._sources: dict[str, str] = {}
        self._last_ids: dict[str, int] = {}
        self.stats = ReplayStats()

    def run(self, paths: Sequence[Path]) -> ReplayStats:
        """Replay ``paths`` (any mix of dumps and frame files) and return the statistics."""
        started = time.perf_counter()
        warm_up()
        single = next(iter(self._symbols)) if self._symbols and len(self._symbols) == 1 else None
        decoder = FrameDecoder(self._symbols)
        heap: list[tuple[int, int, str, TradeBatch, Chunks]] = []
        order = itertools.count()
        for path in paths:
            if path.suffix.lower() in DUMP_SUFFIXES:
                chunks = _dump_chunks(path, single, self._chunk_bytes, self.stats.rejected)
            else:
                chunks = _frame_chunks(path, decoder, self.stats.rejected)
            self._push(heap, order, chunks)
        while heap:
            _, _, stream, batch, chunks = heapq.heappop(heap)
            self._process(stream, batch)
            self._push(heap, order, chunks)
        for builder in self._builders.values():
            final = [msgspec.structs.replace(b, closed=True) for b in builder.open_bars()]
            self._put_bars(final)
        late = sum(builder.late for builder in self._builders.values())
        if late:
            self.stats.rejected["late"] += late
        self.stats.seconds = time.perf_counter() - started
        return self.stats

    def _push(
        self,
        heap: list[tuple[int, int, str, TradeBatch, Chunks]],
        order: Iterator[int],
        chunks: Chunks,
    ) -> None:
        """Put the next non-empty batch of ``chunks`` on the heap, keyed by its first trade."""
        for stream, batch in chunks:
            self.stats.trades_read += len(batch)
            if self._on_progress is not None:
                self._on_progress(len(batch))
            if len(batch) and (self._symbols is None or batch.symbol in self._symbols):
                heapq.heappush(heap, (int(batch.ts_event[0]), next(order), stream, batch, chunks))
                return

    def _process(self, source: str, batch: TradeBatch) -> None:
        symbol = batch.symbol
        seen = self._sources.setdefault(symbol, source)
        if seen != source:
            # Bars have no market column: spot and futures (or trade and aggTrade ids) of
            # one symbol would be merged into the same bars and their ids taken for gaps.
            raise ConfigError(
                [
                    f"{symbol}: the input mixes {seen} and {source} data; "
                    "replay each into its own database"
                ]
            )
        batch = self._dedup(source, batch)
        if len(batch) == 0:
            return
        self.stats.trades_accepted += len(batch)
        builder = self._builders.get(symbol)
        if builder is None:
            builder = BatchBars(symbol, self._timeframes, fill=self._fill, max_fill=self._max_fill)
            self._builders[symbol] = builder
        for arrays in builder.add(batch):
            if len(arrays):
                self.stats.bars += len(arrays)
                self._writer.put_bar_arrays(arrays)

    def _dedup(self, source: str, batch: TradeBatch) -> TradeBatch:
        """Drop ids already seen for this symbol; record gaps between the rest."""
        key = batch.symbol
        ids = batch.trade_id
        previous = self._last_ids.get(key, -1)
        running = np.maximum.accumulate(np.maximum(ids, previous))
        before = np.empty_like(running)
        before[0] = previous
        before[1:] = running[:-1]
        keep = ids > before
        if not keep.all():
            self.stats.rejected["duplicate"] += int((~keep).sum())
            batch = batch.take(keep)
            ids = batch.trade_id
            if len(batch) == 0:
                return batch
        self._last_ids[key] = int(ids[-1])
        prior = np.empty_like(ids)
        prior[0] = previous
        prior[1:] = ids[:-1]
        jumps = np.flatnonzero((ids - prior > 1) & (prior >= 0))
        if jumps.size:
            now = time.time_ns() // 1_000_000
            gaps = [
                Gap(batch.symbol, int(prior[i]) + 1, int(ids[i]) - 1, now, source.split()[1])
                for i in jumps.tolist()
            ]
            self.stats.gaps += len(gaps)
            self._writer.put_gaps(gaps)
        return batch

    def _put_bars(self, bars: list[Bar]) -> None:
        if bars:
            self.stats.bars += len(bars)
            self._writer.put_bars(bars)
