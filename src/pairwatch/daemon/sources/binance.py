"""Binance combined-stream client: one connection per group of streams, reconnecting forever.

Lifecycle of a connection: connect → frames go to ``on_frame`` as they arrive → on close,
silence (watchdog) or error, reconnect with capped, jittered backoff (reset once a
connection has been healthy). Before Binance's 24 h limit, or when the server announces
``serverShutdown``, the client opens a second connection first and keeps reading the old
one for an overlap period while buffering the new one; then it closes the old connection
and replays the buffer, so nothing is missed and duplicates are dropped downstream by id.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import InvalidHandshake, InvalidURI

from pairwatch.daemon.health import Health
from pairwatch.daemon.sources.backoff import Backoff
from pairwatch.daemon.sources.wsclient import ConnectionClosedError, FrameConnection

logger = logging.getLogger(__name__)

FrameHandler = Callable[[str | bytes, int], bool]
"""Called with each raw frame and its receive time (epoch ms); True asks for a reconnect."""

_CONNECT_ERRORS = (OSError, InvalidHandshake, TimeoutError, ConnectionClosedError, EOFError)
"""Errors a retry can help with (ssl.SSLError, a certificate problem, is an OSError too)."""
MAX_FRAME_BYTES = 1 << 20
"""Binance trade frames are a few hundred bytes; anything above 1 MiB is hostile."""


@dataclass(frozen=True, slots=True)
class FeedOptions:
    """Timing knobs of the client, all in seconds."""

    watchdog: float = 30.0
    max_connection_age: float = 23.5 * 3600
    overlap: float = 5.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    healthy_after: float = 30.0
    open_timeout: float = 10.0
    ssl_context: ssl.SSLContext | None = None
    """For ``wss://``: None verifies against the system's trusted CAs."""


def stream_names(symbols: Sequence[str], kind: str) -> list[str]:
    """Return Binance stream names such as ``btcusdt@trade`` for ``symbols``."""
    return [f"{symbol.lower()}@{kind}" for symbol in symbols]


def stream_urls(base_url: str, streams: Sequence[str], per_connection: int) -> list[str]:
    """Split ``streams`` into combined-stream URLs of at most ``per_connection`` streams."""
    base = base_url.rstrip("/")
    return [
        f"{base}/stream?streams={'/'.join(streams[i : i + per_connection])}"
        for i in range(0, len(streams), per_connection)
    ]


class BinanceFeed:
    """Keep one combined-stream URL connected and feed its frames to ``on_frame``."""

    def __init__(
        self, url: str, on_frame: FrameHandler, health: Health, options: FeedOptions
    ) -> None:
        self.url = url
        self._on_frame = on_frame
        self._health = health
        self._options = options
        self._backoff = Backoff(options.backoff_initial, options.backoff_max)
        self._rotate = asyncio.Event()
        self._open = 0
        self.connected = asyncio.Event()
        """Set while a connection is open (tests and /healthz wait on it)."""

    async def run(self) -> None:
        """Stay connected until cancelled."""
        conn: FrameConnection | None = None
        try:
            while True:
                if conn is None:
                    conn = await self._connect_with_backoff()
                    self._rotate.clear()  # a notice for a connection that is gone
                conn = await self._serve(conn)
                if conn is None:
                    self._health.reconnects += 1
                    # Backoff was reset if the connection had been healthy, so this is
                    # short then, and grows while connections keep failing fast.
                    await asyncio.sleep(self._backoff.next())
        finally:
            self.connected.clear()
            if conn is not None:
                await conn.close()

    def _deliver(self, raw: str | bytes, ts_recv: int) -> None:
        if self._on_frame(raw, ts_recv):
            logger.info("server announced shutdown of %s: rotating", self._safe_url)
            self._rotate.set()

    async def _connect_with_backoff(self) -> FrameConnection:
        while True:
            try:
                return await self._connect(self._deliver)
            except InvalidURI:
                raise
            except _CONNECT_ERRORS as exc:
                delay = self._backoff.next()
                logger.warning(
                    "cannot connect to %s (%s); retrying in %.1f s", self._safe_url, exc, delay
                )
                await asyncio.sleep(delay)

    async def _connect(self, on_frame: Callable[[str | bytes, int], None]) -> FrameConnection:
        conn = await FrameConnection.open(
            self.url,
            on_frame,
            open_timeout=self._options.open_timeout,
            max_size=MAX_FRAME_BYTES,
            ssl_context=self._options.ssl_context,
        )
        self._health.connects += 1
        logger.info("connected to %s", self._safe_url)
        return conn

    @property
    def _safe_url(self) -> str:
        return self.url if len(self.url) < 160 else self.url[:150] + "…"

    async def _serve(self, conn: FrameConnection) -> FrameConnection | None:
        """Serve ``conn``; return its successor after a rotation, or None once it is gone."""
        self._health.connections_open += 1
        self._open += 1
        self.connected.set()
        opened = time.monotonic()
        watchdog = asyncio.create_task(self._watch(conn, opened))
        wants_rotation = asyncio.create_task(self._rotate.wait())
        try:
            waiters: set[asyncio.Future[Any]] = {conn.closed, wants_rotation}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if not conn.closed.done():
                successor = await self._rotate_to_successor(conn)
                if successor is not None:
                    return successor
                await asyncio.wait({conn.closed})
            self._log_end(conn)
            return None
        finally:
            for task in (watchdog, wants_rotation):
                task.cancel()
            await asyncio.gather(watchdog, wants_rotation, return_exceptions=True)
            self._health.connections_open -= 1
            self._open -= 1
            if self._open == 0:
                self.connected.clear()
            if time.monotonic() - opened >= self._options.healthy_after:
                self._backoff.reset()

    async def _watch(self, conn: FrameConnection, opened: float) -> None:
        period = min(self._options.watchdog / 4.0, 1.0)
        seen, last_message = -1, time.monotonic()
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            if conn.frames != seen:
                seen, last_message = conn.frames, now
            elif now - last_message > self._options.watchdog:
                logger.warning(
                    "no message for %.1f s on %s: reconnecting",
                    self._options.watchdog,
                    self._safe_url,
                )
                conn.abort()
                return
            if now - opened > self._options.max_connection_age and not self._rotate.is_set():
                logger.info("connection to %s is old: rotating", self._safe_url)
                self._rotate.set()

    async def _rotate_to_successor(self, old: FrameConnection) -> FrameConnection | None:
        """Open a successor, overlap it with ``old``, then hand over; None if it failed."""
        buffered: list[tuple[str | bytes, int]] = []
        try:
            new = await self._connect(lambda raw, ts: buffered.append((raw, ts)))
        except _CONNECT_ERRORS as exc:
            logger.warning("cannot open a successor connection (%s); keeping the old one", exc)
            return None
        try:
            await asyncio.wait({old.closed}, timeout=self._options.overlap)
        except BaseException:
            new.abort()  # cancelled during the overlap: do not leak the successor
            raise
        # Hand over in one step of the loop: the old connection goes quiet, the buffer is
        # replayed (duplicates are dropped by id), then the new one delivers directly. The
        # old one is closed afterwards, so its closing handshake delays nothing.
        old.on_frame = _ignore
        self._rotate.clear()  # before the replay: a notice in the buffer must still count
        for raw, ts_recv in buffered:
            self._deliver(raw, ts_recv)
        new.on_frame = self._deliver
        logger.info("handed over to a new connection (%d frames overlapped)", len(buffered))
        self._health.reconnects += 1
        try:
            await old.close()
        except BaseException:
            new.abort()
            raise
        return new

    def _log_end(self, conn: FrameConnection) -> None:
        exc = conn.closed.exception()
        if not isinstance(exc, ConnectionClosedError):
            raise RuntimeError(f"the frame handler of {self._safe_url} failed") from exc
        logger.warning("connection to %s ended: %s", self._safe_url, exc)


def _ignore(raw: str | bytes, ts_recv: int) -> None:
    """Drop a frame (an old connection's last frames after a hand-over)."""
