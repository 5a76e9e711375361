"""A live-feed harness: the real client, pipeline and SQLite writer against the simulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pairwatch.daemon import store
from pairwatch.daemon.health import Health
from pairwatch.daemon.pipeline import Pipeline
from pairwatch.daemon.sources.binance import BinanceFeed, FeedOptions, stream_names, stream_urls
from pairwatch.daemon.writer import Writer

FAST = FeedOptions(
    watchdog=1.0,
    max_connection_age=3600.0,
    overlap=0.3,
    backoff_initial=0.02,
    backoff_max=0.2,
    healthy_after=0.5,
    open_timeout=5.0,
)


@dataclass
class LiveFeed:
    """The running client side; ``wait_for_trades`` resolves on an event, not a sleep."""

    pipeline: Pipeline
    feed: BinanceFeed
    health: Health
    writer: Writer
    db: Path
    _target: int = 0
    _reached: asyncio.Event | None = None
    delivered: list[str | bytes] | None = None
    """With ``record=True``: every frame the feed handed to the pipeline, in order."""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_frame(self, raw: str | bytes, ts_recv: int) -> bool:
        if self.delivered is not None:
            self.delivered.append(raw)
        result = self.pipeline.on_frame(raw, ts_recv)
        if self._reached is not None and self.health.accepted >= self._target:
            self._reached.set()
        self._changed.set()
        return result

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Return once ``predicate()`` holds; re-checked after each frame, not on a timer."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def wait_for_trades(self, count: int, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Return once ``count`` trades were accepted."""
        self._target = count
        self._reached = asyncio.Event()
        if self.health.accepted >= count:
            return
        await asyncio.wait_for(self._reached.wait(), timeout)


@contextlib.asynccontextmanager
async def live_feed(
    base_url: str,
    db: Path,
    *,
    symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT"),
    kind: str = "trade",
    options: FeedOptions = FAST,
    timeframes: Sequence[tuple[str, int]] = (("1s", 1_000), ("1m", 60_000)),
    record: bool = False,
) -> AsyncIterator[LiveFeed]:
    """Run the client against ``base_url`` until the block exits; then checkpoint and flush."""
    store.open_store(db).close()
    writer = Writer(db)
    writer.start()
    health = Health()
    pipeline = Pipeline(
        symbols=symbols,
        timeframes=timeframes,
        market="spot",
        stream=kind,
        writer=writer,
        health=health,
    )
    (url,) = stream_urls(base_url, stream_names(symbols, kind), 1024)
    harness = LiveFeed(pipeline, None, health, writer, db)  # type: ignore[arg-type]
    if record:
        harness.delivered = []
    feed = BinanceFeed(url, harness.on_frame, health, options)
    harness.feed = feed
    task = asyncio.create_task(feed.run())
    try:
        yield harness
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        pipeline.checkpoint()
        await asyncio.to_thread(writer.close, 10.0)
