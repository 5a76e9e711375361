"""The web server's extra routes: ``/healthz`` (JSON) and ``/metrics`` (Prometheus text).

Both answer from the daemon's memory, read on the daemon's own event loop (the page server
runs on a loop of its own, in a thread: ``OnDaemon`` hands the read over, so no dict is
read while the loop changes it); the one store read (the outbox's pending rows, for
``/metrics``) runs in a worker thread. ``extra_patterns`` returns the
routes in the shape Panel's and Bokeh's ``extra_patterns`` (and ``tornado.web.Application``)
take; a URL prefix of the server applies to them too.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST
from tornado.web import RequestHandler

from pairwatch.web.health import STARTUP_GRACE_S, health
from pairwatch.web.metrics import Metrics

if TYPE_CHECKING:
    from pairwatch.daemon.service import Daemon

HealthCheck = Callable[[], tuple[int, Mapping[str, object]]]
"""Returns the HTTP status and the JSON body of ``/healthz``."""
T = TypeVar("T")
OnDaemon = Callable[[Callable[[], T]], Awaitable[T]]
"""Runs a function on the daemon's loop and returns its result to the caller's loop."""


async def here(read: Callable[[], T]) -> T:
    """``OnDaemon`` when the routes are served on the daemon's own loop (tests)."""
    return read()


def on_loop(loop: asyncio.AbstractEventLoop) -> OnDaemon[Any]:
    """Return an ``OnDaemon`` that runs each read on ``loop`` (the daemon's)."""

    async def call(read: Callable[[], Any]) -> Any:
        if asyncio.get_running_loop() is loop:
            return read()

        async def run() -> Any:
            return read()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), loop))

    return call


class HealthzHandler(RequestHandler):
    """``GET /healthz``: 200 when healthy (or still starting), 503 with the problems."""

    def initialize(self, check: HealthCheck, on_daemon: OnDaemon[Any] = here) -> None:
        self._check = check
        self._on_daemon = on_daemon

    async def get(self) -> None:
        status, body = await self._on_daemon(self._check)
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body, allow_nan=False))


class MetricsHandler(RequestHandler):
    """``GET /metrics``: every metric in the Prometheus text format."""

    def initialize(self, metrics: Metrics, on_daemon: OnDaemon[Any] = here) -> None:
        self._metrics = metrics
        self._on_daemon = on_daemon

    async def get(self) -> None:
        page = await self._metrics.render(self._on_daemon)
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(page)


def extra_patterns(
    daemon: Daemon,
    *,
    startup_grace_s: float = STARTUP_GRACE_S,
    on_daemon: OnDaemon[Any] = here,
) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """Return the ``/healthz`` and ``/metrics`` routes of ``daemon`` (a new list each call);
    ``on_daemon`` runs their reads on the daemon's loop (``on_loop``)."""
    if not (math.isfinite(startup_grace_s) and startup_grace_s >= 0):
        raise ValueError(f"startup_grace_s must be finite and >= 0, got {startup_grace_s}")
    check = functools.partial(health, daemon, startup_grace_s=startup_grace_s)
    return [
        (r"/healthz", HealthzHandler, {"check": check, "on_daemon": on_daemon}),
        (r"/metrics", MetricsHandler, {"metrics": Metrics(daemon), "on_daemon": on_daemon}),
    ]
