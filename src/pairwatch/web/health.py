"""The /healthz decision: a pure function of a few readings of the daemon and ``now``.

``decide`` makes every case testable without a daemon; ``read_health`` takes the
readings from one (on the daemon's loop: the routes hand the read over).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from pairwatch import __version__

if TYPE_CHECKING:
    from pairwatch.daemon.service import Daemon

STARTUP_GRACE_S = 30.0
"""After a start, feeds not yet connected (and a daemon still starting) are not failures."""


@dataclass(frozen=True, slots=True)
class FeedHealth:
    """The feed-health strip: what the daemon knows in memory."""

    connected: bool
    lag_ms: float
    trades_per_s: float
    gaps: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FeedReading:
    """One feed connection: its index, how many streams it carries, whether it is open."""

    connection: int
    streams: int
    connected: bool


@dataclass(frozen=True, slots=True)
class WriterReading:
    """The store writer's state."""

    healthy: bool
    last_error: str | None
    last_commit_ms: int | None
    queued_rows: int


@dataclass(frozen=True, slots=True)
class HealthReadings:
    """What the health answer depends on; times are epoch ms."""

    version: str
    source: str
    started_ms: int
    ready: bool
    stopping: bool
    feeds: tuple[FeedReading, ...]
    writer: WriterReading | None
    """None until the daemon built its writer."""
    last_trade_ms: Mapping[str, int | None] = field(default_factory=dict)
    """Per symbol: when its last trade was received (None: none since the start)."""
    loop_lag_s: float | None = None
    """The event loop's longest lag over the last minute (None: not measured yet)."""
    startup_grace_s: float = STARTUP_GRACE_S

    def __post_init__(self) -> None:
        if not (math.isfinite(self.startup_grace_s) and self.startup_grace_s >= 0):
            raise ValueError(f"startup_grace_s must be finite and >= 0, got {self.startup_grace_s}")


def _age_s(now_ms: int, then_ms: int | None) -> float | None:
    return None if then_ms is None else max(now_ms - then_ms, 0) / 1000


def decide(r: HealthReadings, now_ms: int) -> tuple[int, dict[str, object]]:
    """Return the HTTP status (200 or 503) and the JSON body of ``/healthz`` at ``now_ms``.

    503 when the writer is unhealthy or the daemon is shutting down, and, once
    ``startup_grace_s`` has passed since the start, when a feed connection is not open,
    the writer is not running or start-up has not finished. Within the grace those are
    listed under ``waiting`` and the status is ``starting`` (200).
    """
    uptime_s = max(now_ms - r.started_ms, 0) / 1000
    in_grace = uptime_s < r.startup_grace_s
    problems: list[str] = []
    waiting: list[str] = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            (waiting if in_grace else problems).append(what)

    if r.stopping:
        problems.append("shutting down")
    expect(r.ready, "start-up has not finished")
    writer = r.writer
    if writer is None:
        expect(False, "the store writer is not running")
    elif not writer.healthy:
        problems.append(
            f"the store writer is unhealthy: {writer.last_error or 'its thread has stopped'}"
        )
    for feed in r.feeds:
        expect(feed.connected, f"feed connection {feed.connection} is not connected")
    status = "failing" if problems else "starting" if waiting else "ok"
    body: dict[str, object] = {
        "status": status,
        "problems": problems,
        "waiting": waiting,
        "version": r.version,
        "uptime_s": round(uptime_s, 3),
        "source": r.source,
        "ready": r.ready,
        "feeds": [
            {"connection": f.connection, "streams": f.streams, "connected": f.connected}
            for f in r.feeds
        ],
        "writer": None if writer is None else {
            "healthy": writer.healthy,
            "last_error": writer.last_error,
            "last_commit_age_s": _age_s(now_ms, writer.last_commit_ms),
            "queued_rows": writer.queued_rows,
        },
        "last_trade_age_s": {s: _age_s(now_ms, t) for s, t in r.last_trade_ms.items()},
        "loop_lag_s": r.loop_lag_s,
    }  # fmt: skip
    return (503 if problems else 200), body


def _stream_count(url: str) -> int:
    streams = parse_qs(urlsplit(url).query).get("streams", [""])[0]
    return len(streams.split("/")) if streams else 0


def read_health(daemon: Daemon, *, startup_grace_s: float = STARTUP_GRACE_S) -> HealthReadings:
    """Take the health readings of ``daemon`` (on its event loop)."""
    feed = daemon.settings.feed
    writer = daemon.writer
    last = daemon.health.last_trade
    return HealthReadings(
        version=__version__,
        source=f"{feed.source} {feed.market} {feed.stream}",
        started_ms=int(daemon.health.started_at * 1000),
        ready=daemon.ready.is_set(),
        stopping=daemon.backend is not None and daemon.backend.closing,
        feeds=tuple(
            FeedReading(i, _stream_count(f.url), f.connected.is_set())
            for i, f in enumerate(daemon.feeds)
        ),
        writer=None if writer is None else WriterReading(
            writer.healthy, writer.last_error, writer.last_commit_at, writer.queue_depth
        ),
        last_trade_ms={s: (t.ts_recv if (t := last.get(s)) else None) for s in feed.symbols},
        loop_lag_s=_loop_lag_s(daemon),
        startup_grace_s=startup_grace_s,
    )  # fmt: skip


def _loop_lag_s(daemon: Daemon) -> float | None:
    """The loop's longest lag over the last minute, in seconds to the ms."""
    longest = daemon.health.loop_lag.percentiles()[2]
    return None if math.isnan(longest) else round(longest / 1e6, 3)


def health(
    daemon: Daemon, *, startup_grace_s: float = STARTUP_GRACE_S, now_ms: int | None = None
) -> tuple[int, dict[str, object]]:
    """Return the ``/healthz`` status and body of ``daemon`` (``now_ms``: the wall clock)."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    return decide(read_health(daemon, startup_grace_s=startup_grace_s), now)
