"""The daemon's web page: served from its loop, with its feed health and counters."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pairwatch.daemon.service import Daemon
    from pairwatch.web.page_html import FeedHealth
    from pairwatch.web.server import WebServer


def feed_health(
    daemon: Daemon, clock: Callable[[], float] = time.monotonic
) -> Callable[[], FeedHealth]:
    """Return a reader of the feed-health strip; trades/s over the time since its last read
    (at least a second apart, so sessions reading it at once share one interval)."""
    from pairwatch.web.page_html import FeedHealth

    health = daemon.health
    last = [clock(), float(health.accepted)]
    rate = [0.0]

    def read() -> FeedHealth:
        now, accepted = clock(), float(health.accepted)
        elapsed = now - last[0]
        if elapsed >= 1.0:
            rate[0] = (accepted - last[1]) / elapsed
            last[:] = [now, accepted]
        feeds = daemon.feeds
        up = sum(feed.connected.is_set() for feed in feeds)
        p50, _, _ = health.lag.percentiles()
        return FeedHealth(
            connected=bool(feeds) and up == len(feeds),
            lag_ms=p50,
            trades_per_s=rate[0],
            gaps=health.gaps,
            detail=f"· {up}/{len(feeds)} connections up · {health.reconnects} reconnects",
        )

    return read


@contextlib.asynccontextmanager
async def open_web(daemon: Daemon) -> AsyncIterator[WebServer | None]:
    """Serve the page while the context is open, unless ``web.enabled`` is false."""
    settings = daemon.settings
    if not settings.web.enabled:
        yield None
        return
    from pairwatch.web.routes import extra_patterns, on_loop
    from pairwatch.web.server import serve_web

    reads = on_loop(asyncio.get_running_loop())  # the page server has a loop of its own

    async with serve_web(
        settings.web,
        settings.db_path,
        timeframes=dict(settings.bars.timeframe_lengths),
        health=feed_health(daemon),
        extra_patterns=list(extra_patterns(daemon, on_daemon=reads)),
    ) as server:
        yield server
