"""The web server's extra routes: ``/healthz`` (JSON) and ``/metrics`` (Prometheus text).

Both answer from the daemon's memory on the event loop; the one store read (the outbox's
pending rows, for ``/metrics``) runs in a worker thread. ``extra_patterns`` returns the
routes in the shape Panel's and Bokeh's ``extra_patterns`` (and ``tornado.web.Application``)
take; a URL prefix of the server applies to them too.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST
from tornado.web import RequestHandler

from pairwatch.web.metrics import STARTUP_GRACE_S, Metrics, health

if TYPE_CHECKING:
    from pairwatch.daemon.service import Daemon

HealthCheck = Callable[[], tuple[int, Mapping[str, object]]]
"""Returns the HTTP status and the JSON body of ``/healthz``."""


class HealthzHandler(RequestHandler):
    """``GET /healthz``: 200 when healthy (or still starting), 503 with the problems."""

    def initialize(self, check: HealthCheck) -> None:
        self._check = check

    def get(self) -> None:
        status, body = self._check()
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body, allow_nan=False))


class MetricsHandler(RequestHandler):
    """``GET /metrics``: every metric in the Prometheus text format."""

    def initialize(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def get(self) -> None:
        page = await self._metrics.render()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(page)


def extra_patterns(
    daemon: Daemon, *, startup_grace_s: float = STARTUP_GRACE_S
) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """Return the ``/healthz`` and ``/metrics`` routes of ``daemon`` (a new list each call)."""
    if not (math.isfinite(startup_grace_s) and startup_grace_s >= 0):
        raise ValueError(f"startup_grace_s must be finite and >= 0, got {startup_grace_s}")
    check = functools.partial(health, daemon, startup_grace_s=startup_grace_s)
    return [
        (r"/healthz", HealthzHandler, {"check": check}),
        (r"/metrics", MetricsHandler, {"metrics": Metrics(daemon)}),
    ]
