"""Serve the web page, /export, /healthz and /metrics.

Panel's Bokeh/Tornado server is made with ``start=False`` and run on an event loop of its
own, in a thread (``ServerThread``): the thread's owner keeps its own loop free (the page
process reads the daemon's pipe; tests and benchmarks keep theirs). Page sessions read
SQLite in worker threads (``fastread``). The daemon runs all of this in a process of its
own (``web/child.py``, started by ``daemon/web_setup.py``): Bokeh builds and serialises
each session's document (~1,000 models for six charts) in ~0.5 s of Python, and its
garbage collections pause every thread of the process that holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pairwatch.config.web_settings import WebSettings, is_loopback
from pairwatch.errors import PairwatchError

if TYPE_CHECKING:
    from pairwatch.web.health import FeedHealth

logger = logging.getLogger(__name__)

PAGE_THREADS = 2
"""Threads Panel dispatches browser events to (plots are built there, not on the loop)."""


@dataclass(frozen=True, slots=True)
class WebServer:
    """The running server: where it listens."""

    host: str
    port: int
    prefix: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.prefix}/"


def free_port(host: str) -> int:
    """Return a TCP port that is free on ``host`` now (for ``web.port = 0``)."""
    return _bind_probe(host, 0)


def check_port(host: str, port: int) -> None:
    """Raise ``OSError`` when ``host:port`` cannot be listened on (in use, not local).

    Checked before the server is made: Tornado's own failed bind leaves its socket open.
    """
    _bind_probe(host, port)


def _bind_probe(host: str, port: int) -> int:
    """Bind a throw-away socket to ``host:port``; return the port it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        return int(probe.getsockname()[1])


def origins(web: WebSettings, port: int) -> list[str]:
    """Return the ``host:port`` origins allowed to open the page's websocket.

    Bokeh's check cannot name an IPv6 address (it splits ``Host`` on every colon): a page
    on one is opened by a name — ``localhost`` for loopback, else one of
    ``web.websocket_origins``.
    """
    allowed = [] if ":" in web.host else [f"{web.host}:{port}"]
    if is_loopback(web.host):
        allowed += [f"localhost:{port}", f"127.0.0.1:{port}"]
    allowed += list(web.websocket_origins)
    return list(dict.fromkeys(allowed))


def page_server(
    web: WebSettings,
    db_path: Path,
    *,
    timeframes: dict[str, int],
    health: Callable[[], FeedHealth | None] | None = None,
    extra_patterns: list[tuple[str, Any, dict[str, Any]]] | None = None,
    cookie_secret: str | None = None,
) -> tuple[ServerThread, WebServer]:
    """Build the page's server (not started) and say where it will listen.

    ``cookie_secret`` signs login cookies when ``web.cookie_secret`` is unset (default: a
    new random one). ``web.port = 0`` picks a free port now.
    """
    import panel as pn

    from pairwatch.web.export_route import ExportHandler
    from pairwatch.web.page import Page, PageContext

    pn.extension(notifications=False)
    if pn.config.nthreads is None:
        pn.config.nthreads = PAGE_THREADS  # type: ignore[misc]  # a settable param
    port = web.port or free_port(web.host)
    live = None if web.live_interval is None else web.live_interval.total_seconds()
    context = PageContext(
        db_path=db_path,
        timeframes=timeframes,
        health=health,
        live_interval_s=live,
        prefix=web.prefix,
    )

    def page() -> Any:
        return Page(context).view()

    protected = web.password is not None
    patterns = [
        (r"/export", ExportHandler, {"db_path": db_path, "protected": protected}),
        *(extra_patterns or []),
    ]
    if web.cookie_secret is not None:
        cookie_secret = web.cookie_secret.get_secret_value()
    options: dict[str, Any] = {
        "port": port,
        "address": web.host,
        "websocket_origin": origins(web, port),
        "prefix": web.prefix,
        "basic_auth": web.password.get_secret_value() if web.password else None,
        "cookie_secret": cookie_secret or secrets.token_urlsafe(32),
        "start": False,
        "show": False,
        "title": "pairwatch",
        "extra_patterns": patterns,
        # A closed tab's document goes soon: each is ~1,000 Bokeh models that every full
        # garbage collection walks. Not sooner than Bokeh's 15 s: a new session counts as
        # unused until it connects.
        "check_unused_sessions_milliseconds": 5_000,
        "unused_session_lifetime_milliseconds": 15_000,
    }
    return ServerThread({"/": page}, options), WebServer(web.host, port, web.prefix)


def start(thread: ServerThread, where: WebServer) -> None:
    """Start ``thread``'s server; raise ``PairwatchError`` when its address cannot be bound
    (in use, not local)."""
    try:
        check_port(where.host, where.port)
        thread.start_and_wait()
    except OSError as exc:
        raise PairwatchError(
            f"web: cannot listen on {where.host}:{where.port}: {exc.strerror}"
        ) from exc


@contextlib.asynccontextmanager
async def serve_web(
    web: WebSettings,
    db_path: Path,
    *,
    timeframes: dict[str, int],
    health: Callable[[], FeedHealth | None] | None = None,
    extra_patterns: list[tuple[str, Any, dict[str, Any]]] | None = None,
) -> AsyncIterator[WebServer]:
    """Serve the page from this process until the context exits; yield where it listens.

    The server runs on an event loop of its own, in a thread this context starts and
    stops. Raises ``PairwatchError`` when the address cannot be bound (in use, not local).
    The daemon serves its page from a process of its own instead (``web/child.py``).
    """
    started = time.monotonic()
    thread, where = page_server(
        web, db_path, timeframes=timeframes, health=health, extra_patterns=extra_patterns
    )
    await asyncio.to_thread(start, thread, where)
    logger.info(
        "web page at %s (%s) in %.0f ms",
        where.url,
        "login required" if web.password is not None else "no login",
        (time.monotonic() - started) * 1000,
    )
    try:
        yield where
    finally:
        await asyncio.to_thread(thread.stop)
        logger.info("web page stopped")


class ServerThread:
    """Panel's server on an event loop of its own, in a daemon thread."""

    def __init__(self, apps: dict[str, Any], options: dict[str, Any]) -> None:
        self._apps = apps
        self._options = options
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="pairwatch-web", daemon=True)

    def start_and_wait(self) -> None:
        """Start the thread; return once the server listens, or raise why it cannot."""
        self._thread.start()
        self._started.wait()
        if self._failure is not None:
            self._thread.join()
            raise self._failure

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and its loop; wait for the thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("web server thread did not stop within %.0f s", timeout)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start_and_wait, or logged
            if not self._started.is_set():
                self._failure = exc
            else:
                logger.exception("web server thread failed")
        finally:
            self._started.set()
            loop.close()

    async def _serve(self) -> None:
        import panel as pn

        from pairwatch.web import fastread

        # JIT-compile the fast reader now, at start-up, not during the first page load
        # (LLVM holds the GIL for ~1 s; it cannot be cached: it calls C by address).
        fastread.available()
        self._stop = asyncio.Event()
        server = pn.serve(self._apps, **self._options)  # on this thread's loop
        server.start()
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            server.stop()
