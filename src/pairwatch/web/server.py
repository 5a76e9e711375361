"""Serve the web page, /export, /healthz and /metrics from the daemon's own event loop.

Panel's Bokeh/Tornado server is made with ``start=False`` on the running loop, started
here and stopped at shutdown. Page sessions read SQLite in worker threads; Panel's own
event handling gets a small thread pool (``nthreads``), so building a session's plots
does not run on the loop that ingests trades.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pairwatch.config.web_settings import WebSettings, is_loopback
from pairwatch.errors import PairwatchError

if TYPE_CHECKING:
    from pairwatch.web.page import FeedHealth

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
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def origins(web: WebSettings, port: int) -> list[str]:
    """Return the ``host:port`` origins allowed to open the page's websocket."""
    allowed = [f"{web.host}:{port}"]
    if is_loopback(web.host):
        allowed += [f"localhost:{port}", f"127.0.0.1:{port}"]
    allowed += list(web.websocket_origins)
    return list(dict.fromkeys(allowed))


@contextlib.asynccontextmanager
async def serve_web(
    web: WebSettings,
    db_path: Path,
    *,
    timeframes: dict[str, int],
    health: Callable[[], FeedHealth] | None = None,
    extra_patterns: list[tuple[str, Any, dict[str, Any]]] | None = None,
) -> AsyncIterator[WebServer]:
    """Serve the page until the context exits; yield where it listens.

    Raises ``PairwatchError`` when the address cannot be bound (in use, not local).
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
    cookie = web.cookie_secret.get_secret_value() if web.cookie_secret else None
    # pn.serve replaces the SIGINT handler with one that stops the loop outright: keep the
    # daemon's (its graceful stop) in place.
    sigint = signal.getsignal(signal.SIGINT)
    try:
        server = pn.serve(
            {"/": page},
            port=port,
            address=web.host,
            websocket_origin=origins(web, port),
            prefix=web.prefix,
            basic_auth=web.password.get_secret_value() if web.password else None,
            cookie_secret=cookie or secrets.token_urlsafe(32),
            start=False,
            show=False,
            title="pairwatch",
            extra_patterns=patterns,
            check_unused_sessions=10_000,
            unused_session_lifetime=60_000,
        )
    except OSError as exc:
        raise PairwatchError(f"web: cannot listen on {web.host}:{port}: {exc.strerror}") from exc
    finally:
        signal.signal(signal.SIGINT, sigint)
    started = time.monotonic()
    server.start()
    where = WebServer(web.host, port, web.prefix)
    logger.info(
        "web page at %s (%s; /healthz, /metrics) in %.0f ms",
        where.url,
        "login required" if protected else "no login",
        (time.monotonic() - started) * 1000,
    )
    try:
        yield where
    finally:
        server.stop()
        logger.info("web page stopped")
