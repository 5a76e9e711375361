"""The web page's own process: ``python -m pairwatch.web.child``, started by the daemon.

Why a process: a page load builds and serialises ~1,000 Bokeh models in Python, and the
garbage collections of those objects pause every thread of the process that holds them
(15–190 ms measured) — in the daemon's process, that stalled ingest past the 20 ms target
even with the page on a thread of its own. Here the daemon's loop only answers a few
small questions.

The pipe protocol is JSON, one object per line:

- daemon → page, first line: ``{"config": ChildConfig}``; then answers
  ``{"id": n, "answer": {...}}`` or ``{"id": n, "error": "..."}``, and the feed-health
  strip pushed about once a second, ``{"feed": {...}}``;
- page → daemon: ``{"ready": {"port": p, "pid": pid}}`` once listening, or
  ``{"failed": "why"}``; then questions ``{"id": n, "ask": "healthz" | "metrics"}``.

The page process ends when its stdin closes (the daemon stopped, or died: no orphan is
left), and ignores SIGINT (a Ctrl-C in a terminal reaches the whole process group; the
daemon stops it in order). It runs ``NICENESS`` steps nicer than the daemon.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pairwatch.config.web_settings import WebSettings
from pairwatch.errors import PairwatchError
from pairwatch.web.health import FeedHealth

logger = logging.getLogger(__name__)

NICENESS = 5
"""Added to the page process's nice value: on a busy machine the daemon (ingest, alerts)
gets the CPU first; a page load waits a little instead."""


@dataclass(frozen=True, slots=True)
class ChildConfig:
    """What the page process needs to serve: sent as the first line of its stdin."""

    web: WebSettings
    """With ``port`` resolved (never 0): a restarted page listens where the last did."""
    db_path: Path
    timeframes: Mapping[str, int]
    cookie_secret: str
    """Signs login cookies when ``web.cookie_secret`` is unset: the daemon's, so logins
    outlive a restart of the page process."""
    log_level: str = "INFO"

    def to_json(self) -> dict[str, Any]:
        web = self.web.model_dump(mode="json")
        for key in ("password", "cookie_secret"):  # dumped masked; the child needs them
            secret = getattr(self.web, key)
            web[key] = None if secret is None else secret.get_secret_value()
        return {
            "web": web,
            "db_path": str(self.db_path),
            "timeframes": dict(self.timeframes),
            "cookie_secret": self.cookie_secret,
            "log_level": self.log_level,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChildConfig:
        return cls(
            web=WebSettings.model_validate(data["web"]),
            db_path=Path(data["db_path"]),
            timeframes={str(k): int(v) for k, v in data["timeframes"].items()},
            cookie_secret=str(data["cookie_secret"]),
            log_level=str(data["log_level"]),
        )


def encode(message: Mapping[str, Any]) -> bytes:
    """One protocol line (NaN passes: both ends are Python; the lag of an empty window is
    NaN)."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class DaemonLink:
    """The page process's side of the pipe: asks the daemon, keeps its feed health.

    ``ask`` may be called from any thread and awaited on any loop (it is a ``routes.Ask``).
    """

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, concurrent.futures.Future[Mapping[str, Any]]] = {}
        self._closed = False
        self._feed: FeedHealth | None = None

    def send(self, message: Mapping[str, Any]) -> None:
        line = encode(message)
        with self._lock:
            self._write(line)

    async def __call__(self, question: str) -> Mapping[str, Any]:
        return await asyncio.wrap_future(self.ask(question))

    def ask(self, question: str) -> concurrent.futures.Future[Mapping[str, Any]]:
        """Send ``question``; the future gets the answer (``ConnectionError`` when the pipe
        is closed)."""
        future: concurrent.futures.Future[Mapping[str, Any]] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                future.set_exception(ConnectionError("the daemon's pipe is closed"))
                return future
            number = next(self._ids)
            self._waiting[number] = future
            try:
                self._write(encode({"id": number, "ask": question}))
            except OSError as exc:
                del self._waiting[number]
                future.set_exception(ConnectionError(f"cannot write to the daemon: {exc}"))
        return future

    def received(self, line: bytes) -> None:
        """Take one line from the daemon: an answer, or the feed health."""
        try:
            message = json.loads(line)
            if "feed" in message:
                self._feed = FeedHealth(**message["feed"])
                return
            with self._lock:
                future = self._waiting.pop(int(message["id"]), None)
        except (ValueError, TypeError, KeyError) as exc:
            logger.error("web: a bad line from the daemon (%s): %.200r", exc, line)
            return
        if future is None:
            return
        if "error" in message:
            future.set_exception(ConnectionError(f"the daemon failed: {message['error']}"))
        else:
            future.set_result(message["answer"])

    def feed_health(self) -> FeedHealth | None:
        """The feed-health strip as last pushed by the daemon (None before the first)."""
        return self._feed

    def close(self) -> None:
        """The pipe is gone: fail every question still waiting."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            future.set_exception(ConnectionError("the daemon's pipe closed"))


def serve(config: ChildConfig, lines: Iterable[bytes], write: Callable[[bytes], None]) -> int:
    """Serve the page until ``lines`` (the daemon's pipe) ends; return the exit status."""
    from pairwatch.web.routes import extra_patterns
    from pairwatch.web.server import page_server, start

    link = DaemonLink(write)
    try:
        thread, where = page_server(
            config.web,
            config.db_path,
            timeframes=dict(config.timeframes),
            health=link.feed_health,
            extra_patterns=extra_patterns(link),
            cookie_secret=config.cookie_secret,
        )
        start(thread, where)
    except PairwatchError as exc:
        link.send({"failed": str(exc)})
        return 1
    link.send({"ready": {"port": where.port, "pid": os.getpid()}})
    logger.info("web page at %s (pid %d)", where.url, os.getpid())
    try:
        for line in lines:
            link.received(line)
    finally:
        link.close()
        thread.stop()
    return 0


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(NICENESS)
    except OSError as exc:  # a seccomp filter that refuses setpriority: run as we are
        print(f"pairwatch web: cannot lower the page's priority: {exc}", file=sys.stderr)
    # The protocol has stdout to itself: anything else printed goes to stderr (the log).
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def write(line: bytes) -> None:  # called under DaemonLink's lock
        out.write(line)
        out.flush()

    stdin = sys.stdin.buffer
    first = stdin.readline()
    if not first:
        return 0  # the daemon went before it sent anything
    config = ChildConfig.from_json(json.loads(first)["config"])

    from pairwatch.logs import configure_logging

    configure_logging(config.log_level)
    return serve(config, stdin, write)


if __name__ == "__main__":
    sys.exit(main())
