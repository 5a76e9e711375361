"""The daemon's answers to its page process: /healthz, /metrics and the feed-health strip.

Everything here runs on the daemon's own event loop (the stages' dicts are only changed
there); the one store read (the outbox's pending rows, for /metrics) runs in a worker
thread. ``Answers`` is an ``routes.Ask``: the page process's questions reach it through a
pipe (``daemon/web_setup.py``), tests call it directly.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pairwatch.web.health import STARTUP_GRACE_S, FeedHealth, health
from pairwatch.web.metrics import Metrics

if TYPE_CHECKING:
    from pairwatch.daemon.service import Daemon

QUESTIONS = ("healthz", "metrics", "feed")


def feed_health(
    daemon: Daemon, clock: Callable[[], float] = time.monotonic
) -> Callable[[], FeedHealth]:
    """Return a reader of the feed-health strip; trades/s over the time since its last read
    (at least a second apart, so readers close together share one interval)."""
    health_ = daemon.health
    last = [clock(), float(health_.accepted)]
    rate = [0.0]

    def read() -> FeedHealth:
        now, accepted = clock(), float(health_.accepted)
        elapsed = now - last[0]
        if elapsed >= 1.0:
            rate[0] = (accepted - last[1]) / elapsed
            last[:] = [now, accepted]
        feeds = daemon.feeds
        up = sum(feed.connected.is_set() for feed in feeds)
        p50, _, _ = health_.lag.percentiles()
        return FeedHealth(
            connected=bool(feeds) and up == len(feeds),
            lag_ms=p50,
            trades_per_s=rate[0],
            gaps=health_.gaps,
            detail=f"· {up}/{len(feeds)} connections up · {health_.reconnects} reconnects",
        )

    return read


class Answers:
    """Answer the page process's questions (``QUESTIONS``) about ``daemon``."""

    def __init__(
        self,
        daemon: Daemon,
        *,
        startup_grace_s: float = STARTUP_GRACE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(startup_grace_s) and startup_grace_s >= 0):
            raise ValueError(f"startup_grace_s must be finite and >= 0, got {startup_grace_s}")
        self._check = functools.partial(health, daemon, startup_grace_s=startup_grace_s)
        self.metrics = Metrics(daemon)
        self.feed = feed_health(daemon, clock)

    async def __call__(self, question: str) -> Mapping[str, Any]:
        """Return the answer to ``question`` as JSON-ready data."""
        if question == "healthz":
            status, body = self._check()
            return {"status": status, "body": body}
        if question == "metrics":
            return {"text": (await self.metrics.render()).decode()}
        if question == "feed":
            return {"feed": dataclasses.asdict(self.feed())}
        raise ValueError(f"unknown question {question!r} (known: {', '.join(QUESTIONS)})")
