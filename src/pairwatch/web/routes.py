"""The web server's extra routes: ``/healthz`` (JSON) and ``/metrics`` (Prometheus text).

Both answer from the daemon's memory. The page is served by a process of its own
(``web/child.py``), so these handlers *ask* the daemon (``Ask``): through the pipe to the
daemon in production (``child.DaemonLink``), or ``answers.Answers`` directly in tests.
A daemon that does not answer within ``ASK_TIMEOUT_S`` (its loop blocked, or it is gone)
makes ``/healthz`` fail with 503 — the check a monitor wants. ``extra_patterns`` returns
the routes in the shape Panel's and Bokeh's ``extra_patterns`` (and
``tornado.web.Application``) take; a URL prefix of the server applies to them too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from tornado.web import RequestHandler

Ask = Callable[[str], Awaitable[Mapping[str, Any]]]
"""Asks the daemon one question (``answers.QUESTIONS``) and returns its answer; raises
``ConnectionError`` when the daemon cannot be asked."""

ASK_TIMEOUT_S = 5.0
"""How long a route waits for the daemon's answer."""


class UnansweredError(Exception):
    """The daemon did not answer: why, for the response."""


async def ask_daemon(ask: Ask, question: str) -> Mapping[str, Any]:
    """Return the daemon's answer; raise ``UnansweredError`` when there is none in time."""
    try:
        async with asyncio.timeout(ASK_TIMEOUT_S):
            return await ask(question)
    except TimeoutError:
        raise UnansweredError(f"the daemon did not answer within {ASK_TIMEOUT_S:g} s") from None
    except ConnectionError as exc:
        raise UnansweredError(f"the daemon cannot be asked: {exc}") from None


class HealthzHandler(RequestHandler):
    """``GET /healthz``: 200 when healthy (or still starting), 503 with the problems."""

    def initialize(self, ask: Ask) -> None:
        self._ask = ask

    async def get(self) -> None:
        try:
            answer = await ask_daemon(self._ask, "healthz")
            status, body = int(answer["status"]), answer["body"]
        except UnansweredError as exc:
            status, body = 503, {"status": "failing", "problems": [str(exc)]}
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body, allow_nan=False))


class MetricsHandler(RequestHandler):
    """``GET /metrics``: every metric in the Prometheus text format."""

    def initialize(self, ask: Ask) -> None:
        self._ask = ask

    async def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        try:
            answer = await ask_daemon(self._ask, "metrics")
        except UnansweredError as exc:
            self.set_status(503)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"{exc}\n")
            return
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(str(answer["text"]))


def extra_patterns(ask: Ask) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """Return the ``/healthz`` and ``/metrics`` routes, answered by ``ask`` (a new list each
    call: Bokeh appends its own routes to it)."""
    return [
        (r"/healthz", HealthzHandler, {"ask": ask}),
        (r"/metrics", MetricsHandler, {"ask": ask}),
    ]
