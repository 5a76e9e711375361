"""The simulator's market: an append-only log of encoded frames and what fills it.

Every connection reads the same :class:`FrameLog` from its own cursor, so overlapping
connections see the same trades, and reconnect policies are just choices of a cursor.

* Paced feeds (``speed`` is a number) run a producer task that appends frames when their
  (scaled) time comes; the market keeps ticking whether or not anyone is connected.
* Max-speed feeds (``speed`` is None) append a block whenever a reader reaches the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from pairwatch.daemon.sources.frames import RecordedFrame, iter_trade_frames, merge_frames
from pairwatch.daemon.sources.simulator_wire import (
    BlockEncoder,
    EncodedBlock,
    Market,
    StreamKind,
    StreamTable,
    stream_name,
)
from pairwatch.daemon.sources.synthetic import MarketModel, SyntheticMarket, TradeBlock

logger = logging.getLogger(__name__)

_MAX_BLOCK = 4096
_MIN_SLEEP_S = 0.0005

EventClock = Literal["wall", "simulated"]


class FrameLog:
    """Frames in send order with their stream codes and ids; positions are global seqs."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.streams: list[int] = []
        self.ids: list[int] = []
        self.base = 0
        """Seq of ``frames[0]``: entries before it were trimmed."""
        self.finished = False
        """True when the feed will never append again (a recording ran out)."""
        self._grew = asyncio.Event()

    @property
    def end(self) -> int:
        """Return the seq just past the last frame."""
        return self.base + len(self.frames)

    def extend(self, frames: Sequence[str], streams: Sequence[int], ids: Sequence[int]) -> None:
        """Append frames and wake the readers."""
        self.frames.extend(frames)
        self.streams.extend(streams)
        self.ids.extend(ids)
        self._wake()

    def finish(self) -> None:
        """Mark the log complete and wake the readers."""
        self.finished = True
        self._wake()

    def _wake(self) -> None:
        # set() resolves every current waiter; clearing at once makes it a pulse.
        self._grew.set()
        self._grew.clear()

    async def wait(self) -> None:
        """Wait until the log grows or finishes."""
        await self._grew.wait()

    def trim(self, keep_from: int) -> None:
        """Forget entries before seq ``keep_from``."""
        drop = min(keep_from, self.end) - self.base
        if drop > 0:
            del self.frames[:drop], self.streams[:drop], self.ids[:drop]
            self.base += drop


class Feed:
    """Base of the market feeds: a log, a stream table and a producer (paced) or a filler."""

    def __init__(self, speed: float | None) -> None:
        if speed is not None and not speed > 0:
            raise ValueError("speed must be > 0, or None for max speed")
        self.speed = speed
        self.log = FrameLog()
        self.table = StreamTable()
        self.published: set[int] = set()
        """Codes of the streams that have (or will have) frames in the log."""

    @property
    def paced(self) -> bool:
        """Return whether frames are released by their time (not on demand)."""
        return self.speed is not None

    def serves(self, stream: str) -> bool:
        """Return whether frames of this stream name can ever appear."""
        raise NotImplementedError

    def fill(self) -> None:
        """Append the next block (max-speed feeds), or finish the log."""
        raise NotImplementedError

    async def run(self) -> None:
        """Release frames by their time until the feed ends (paced feeds)."""
        raise NotImplementedError


class SyntheticFeed(Feed):
    """Frames of a :class:`SyntheticMarket`, started when the first client connects."""

    def __init__(
        self,
        model: MarketModel,
        market: Market,
        kinds: tuple[StreamKind, ...],
        speed: float | None,
        *,
        start_ms: int | None = None,
        clock: EventClock = "wall",
    ) -> None:
        super().__init__(speed)
        self.model = model
        self._start_ms = start_ms
        self._clock = clock
        self._last_ms = 0
        self._encoder = BlockEncoder(model.symbols, market, kinds, self.table)
        self.published.update(range(len(self.table.names)))
        self._served = frozenset(stream_name(s.symbol, k) for s in model.symbols for k in kinds)
        self._market: SyntheticMarket | None = None
        # Paced blocks cover about half a second so low rates stay responsive.
        self._block = max(1, min(_MAX_BLOCK, int(model.rate * (speed or 1.0) / 2)))

    def serves(self, stream: str) -> bool:
        """Return whether the market publishes this stream."""
        return stream in self._served

    @property
    def market(self) -> SyntheticMarket:
        """Return the generator, creating it (and fixing the start time) on first use."""
        if self._market is None:
            start = self._start_ms if self._start_ms is not None else time.time_ns() // 1_000_000
            self._market = SyntheticMarket(self.model, start)
        return self._market

    def _stamp(self, block: TradeBlock) -> TradeBlock:
        """Set trade times by the event clock (the generator's are simulated time)."""
        if self._clock == "simulated":
            return block
        if self.speed is None:
            # Max speed: every event of a block happens "now" (never going backwards).
            self._last_ms = max(self._last_ms, time.time_ns() // 1_000_000)
            stamped = np.full(len(block), self._last_ms, np.int64)
        else:
            offset = np.floor(block.t_s * 1000.0 / self.speed).astype(np.int64)
            stamped = self.market.start_ms + offset
        return dataclasses.replace(block, time_ms=stamped)

    def fill(self) -> None:
        """Generate and append the next block."""
        encoded = self._encoder.encode(self._stamp(self.market.generate(_MAX_BLOCK)))
        self.log.extend(encoded.frames, encoded.streams, encoded.ids)

    async def run(self) -> None:
        """Append each event's frames when the scaled clock reaches its time."""
        assert self.speed is not None
        speed = self.speed
        loop = asyncio.get_running_loop()
        market = self.market
        wall0 = loop.time()
        while True:
            block: TradeBlock = self._stamp(market.generate(self._block))
            encoded: EncodedBlock = self._encoder.encode(block)
            times = block.t_s
            done = 0  # events released so far
            while done < len(block):
                sim_now = (loop.time() - wall0) * speed
                upto = int(np.searchsorted(times, sim_now, side="right"))
                if upto > done:
                    lo = encoded.event_end[done - 1] if done else 0
                    hi = encoded.event_end[upto - 1]
                    self.log.extend(
                        encoded.frames[lo:hi], encoded.streams[lo:hi], encoded.ids[lo:hi]
                    )
                    done = upto
                    continue
                due = wall0 + float(times[done]) / speed
                await asyncio.sleep(max(_MIN_SLEEP_S, due - loop.time()))


class RecordedFeed(Feed):
    """Trade/aggTrade frames of recorded files merged by event time, replayed unchanged."""

    def __init__(self, files: Sequence[str | Path], speed: float | None) -> None:
        super().__init__(speed)
        if not files:
            raise ValueError("recorded mode needs at least one file")
        self.files = tuple(Path(f) for f in files)
        missing = [str(f) for f in self.files if not f.is_file()]
        if missing:
            raise ValueError(f"recorded files not found: {', '.join(missing)}")
        self._frames: Iterator[RecordedFrame] = merge_frames(
            *(iter_trade_frames(f) for f in self.files)
        )

    def serves(self, stream: str) -> bool:
        """Return True: which streams a recording holds is known only after reading it."""
        return True

    def _append(self, frames: list[RecordedFrame]) -> None:
        code = self.table.code
        codes = [code(f.stream) for f in frames]
        self.published.update(codes)
        self.log.extend(
            [f.raw for f in frames],
            codes,
            [f.trade_id if f.trade_id is not None else -1 for f in frames],
        )

    def fill(self) -> None:
        """Read and append the next chunk of frames, or finish at the end of the files."""
        chunk = [frame for _, frame in zip(range(1024), self._frames, strict=False)]
        if chunk:
            self._append(chunk)
        else:
            self.log.finish()

    async def run(self) -> None:
        """Append frames when the scaled clock reaches their event time, then finish."""
        assert self.speed is not None
        loop = asyncio.get_running_loop()
        wall0 = loop.time()
        first_ms: int | None = None
        due_batch: list[RecordedFrame] = []
        for frame in self._frames:
            if frame.event_ms is not None:
                if first_ms is None:
                    first_ms = frame.event_ms
                due = wall0 + (frame.event_ms - first_ms) / 1000.0 / self.speed
                delay = due - loop.time()
                if delay > _MIN_SLEEP_S:
                    if due_batch:
                        self._append(due_batch)
                        due_batch = []
                    await asyncio.sleep(delay)
            due_batch.append(frame)
            if len(due_batch) >= _MAX_BLOCK:
                self._append(due_batch)
                due_batch = []
                await asyncio.sleep(0)
        if due_batch:
            self._append(due_batch)
        self.log.finish()
