"""The page process's side of the daemon's pipe (``DaemonLink``) and its routes' answers
when the daemon is slow or gone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from pairwatch.web import routes
from pairwatch.web.child import DaemonLink, encode
from pairwatch.web.health import FeedHealth


class Pipe:
    """The daemon's end: the lines the link wrote."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def write(self, line: bytes) -> None:
        assert line.endswith(b"\n")
        self.lines.append(json.loads(line))


def test_answers_reach_their_questions_in_any_order_from_any_thread() -> None:
    pipe = Pipe()
    link = DaemonLink(pipe.write)
    futures = {}

    def ask(question: str) -> None:
        futures[question] = link.ask(question)

    threads = [threading.Thread(target=ask, args=(q,)) for q in ("healthz", "metrics")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = {line["ask"]: line["id"] for line in pipe.lines}
    assert sorted(ids) == ["healthz", "metrics"]
    assert len(set(ids.values())) == 2
    link.received(encode({"id": ids["metrics"], "answer": {"text": "m"}}))
    link.received(encode({"id": ids["healthz"], "error": "ValueError: no"}))
    assert futures["metrics"].result(0) == {"text": "m"}
    with pytest.raises(ConnectionError, match="the daemon failed: ValueError: no"):
        futures["healthz"].result(0)


def test_the_feed_health_is_the_last_pushed_and_nan_passes() -> None:
    link = DaemonLink(Pipe().write)
    assert link.feed_health() is None
    pushed = {"connected": True, "lag_ms": math.nan, "trades_per_s": 3.5, "gaps": 2,
              "detail": "· 1/1 connections up"}  # fmt: skip
    link.received(encode({"feed": pushed}))
    got = link.feed_health()
    assert got is not None
    assert math.isnan(got.lag_ms)
    assert (got.connected, got.trades_per_s, got.gaps, got.detail) == (
        True, 3.5, 2, "· 1/1 connections up")  # fmt: skip
    assert isinstance(got, FeedHealth)


def test_a_closed_pipe_fails_waiting_and_later_questions() -> None:
    link = DaemonLink(Pipe().write)
    waiting = link.ask("healthz")
    link.close()
    with pytest.raises(ConnectionError, match="pipe closed"):
        waiting.result(0)
    with pytest.raises(ConnectionError, match="pipe is closed"):
        link.ask("metrics").result(0)


def test_a_failed_write_fails_the_question() -> None:
    def broken(_: bytes) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(ConnectionError, match="cannot write to the daemon"):
        DaemonLink(broken).ask("healthz").result(0)


def test_bad_and_unknown_lines_are_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    pipe = Pipe()
    link = DaemonLink(pipe.write)
    waiting = link.ask("healthz")
    with caplog.at_level(logging.ERROR, "pairwatch.web.child"):
        link.received(b"not json\n")
        link.received(encode({"nothing": 1}))
        link.received(encode({"id": 999, "answer": {}}))  # asked by no one: ignored
    assert [r.getMessage()[:40] for r in caplog.records] == [
        "web: a bad line from the daemon (Expecti",
        "web: a bad line from the daemon ('id'): ",
    ]
    assert not waiting.done()


@contextlib.asynccontextmanager
async def serve_routes(ask: routes.Ask) -> AsyncIterator[httpx.AsyncClient]:
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(tornado.web.Application(routes.extra_patterns(ask)))
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        server.stop()
        await server.close_all_connections()


async def test_a_daemon_that_does_not_answer_fails_healthz_and_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(routes, "ASK_TIMEOUT_S", 0.05)
    never = asyncio.Event()

    async def blocked(_: str) -> Mapping[str, Any]:
        await never.wait()
        return {}

    async with serve_routes(blocked) as client:
        health = await client.get("/healthz")
        metrics = await client.get("/metrics")
    assert health.status_code == 503
    assert health.json() == {
        "status": "failing",
        "problems": ["the daemon did not answer within 0.05 s"],
    }
    assert (metrics.status_code, metrics.text) == (503, "the daemon did not answer within 0.05 s\n")


async def test_a_daemon_that_cannot_be_asked_fails_healthz() -> None:
    async def gone(_: str) -> Mapping[str, Any]:
        raise ConnectionError("the daemon's pipe closed")

    async with serve_routes(gone) as client:
        health = await client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["problems"] == ["the daemon cannot be asked: the daemon's pipe closed"]
