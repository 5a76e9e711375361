"""Binance combined-stream client: one connection per group of streams, reconnecting forever.

Lifecycle of a connection: connect → pump frames into ``on_frame`` → on close, silence
(watchdog) or error, reconnect with capped, jittered backoff (reset once a connection
has been healthy). Before Binance's 24 h limit, or when the server announces
``serverShutdown``, the client opens a second connection first and keeps reading the old
one for an overlap period, buffering the new one; then it closes the old connection and
replays the buffer, so nothing is missed and duplicates are dropped downstream by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from pairwatch.daemon.health import Health
from pairwatch.daemon.sources.backoff import Backoff

logger = logging.getLogger(__name__)

FrameHandler = Callable[[str | bytes, int], bool]
"""Called with each raw frame and its receive time (epoch ms); True asks for a reconnect."""

_CONNECT_ERRORS = (OSError, InvalidHandshake, TimeoutError, ConnectionClosed)
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


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


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
        self._last_message = time.monotonic()
        self.connected = asyncio.Event()
        """Set while a connection is open (tests and /healthz wait on it)."""

    async def run(self) -> None:
        """Stay connected until cancelled."""
        ws: ClientConnection | None = None
        try:
            while True:
                if ws is None:
                    ws = await self._connect_with_backoff()
                ws = await self._serve(ws)
                if ws is None:
                    self._health.reconnects += 1
                    # Backoff was reset if the connection had been healthy, so this is
                    # short then, and grows while connections keep failing fast.
                    await asyncio.sleep(self._backoff.next())
        finally:
            self.connected.clear()
            if ws is not None:
                await ws.close()

    async def _connect_with_backoff(self) -> ClientConnection:
        while True:
            try:
                return await self._connect()
            except InvalidURI:
                raise
            except _CONNECT_ERRORS as exc:
                delay = self._backoff.next()
                logger.warning(
                    "cannot connect to %s (%s); retrying in %.1f s", self._safe_url, exc, delay
                )
                await asyncio.sleep(delay)

    async def _connect(self) -> ClientConnection:
        ws = await connect(
            self.url,
            open_timeout=self._options.open_timeout,
            close_timeout=2.0,
            max_size=MAX_FRAME_BYTES,
            max_queue=4096,
        )
        self._health.connects += 1
        self._last_message = time.monotonic()
        logger.info("connected to %s", self._safe_url)
        return ws

    @property
    def _safe_url(self) -> str:
        return self.url if len(self.url) < 160 else self.url[:150] + "…"

    async def _serve(self, ws: ClientConnection) -> ClientConnection | None:
        """Pump ``ws``; return its successor after a rotation, or None once it is gone."""
        self._health.connections_open += 1
        self.connected.set()
        opened = time.monotonic()
        rotate = asyncio.Event()
        pump = asyncio.create_task(self._pump(ws, rotate))
        watchdog = asyncio.create_task(self._watch(ws, rotate, opened))
        wants_rotation = asyncio.create_task(rotate.wait())
        try:
            await asyncio.wait({pump, wants_rotation}, return_when=asyncio.FIRST_COMPLETED)
            if not pump.done():
                successor = await self._rotate(ws, pump)
                if successor is not None:
                    return successor
            await asyncio.wait({pump})
            self._log_end(ws, pump)
            return None
        finally:
            for task in (pump, watchdog, wants_rotation):
                task.cancel()
            await asyncio.gather(pump, watchdog, wants_rotation, return_exceptions=True)
            self._health.connections_open -= 1
            if self._health.connections_open == 0:
                self.connected.clear()
            if time.monotonic() - opened >= self._options.healthy_after:
                self._backoff.reset()

    async def _pump(self, ws: ClientConnection, rotate: asyncio.Event) -> None:
        on_frame = self._on_frame
        monotonic = time.monotonic
        async for raw in ws:
            self._last_message = monotonic()
            if on_frame(raw, _now_ms()):
                logger.info("server announced shutdown of %s: rotating", self._safe_url)
                rotate.set()

    async def _watch(self, ws: ClientConnection, rotate: asyncio.Event, opened: float) -> None:
        period = min(self._options.watchdog / 4.0, 1.0)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            if now - self._last_message > self._options.watchdog:
                logger.warning(
                    "no message for %.1f s on %s: reconnecting",
                    self._options.watchdog,
                    self._safe_url,
                )
                ws.transport.abort()
                return
            if now - opened > self._options.max_connection_age and not rotate.is_set():
                logger.info("connection to %s is old: rotating", self._safe_url)
                rotate.set()

    async def _rotate(
        self, old: ClientConnection, old_pump: asyncio.Task[None]
    ) -> ClientConnection | None:
        """Open a successor, overlap it with ``old``, then hand over; None if it failed."""
        try:
            new = await self._connect()
        except _CONNECT_ERRORS as exc:
            logger.warning("cannot open a successor connection (%s); keeping the old one", exc)
            return None
        buffered: list[tuple[str | bytes, int]] = []
        collector = asyncio.create_task(self._collect(new, buffered))
        await asyncio.wait({old_pump}, timeout=self._options.overlap)
        old_pump.cancel()
        await asyncio.gather(old_pump, return_exceptions=True)
        await old.close()
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        for raw, ts_recv in buffered:
            self._on_frame(raw, ts_recv)
        logger.info("handed over to a new connection (%d frames overlapped)", len(buffered))
        self._health.reconnects += 1
        return new

    @staticmethod
    async def _collect(ws: ClientConnection, into: list[tuple[str | bytes, int]]) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                into.append((raw, _now_ms()))  # noqa: PERF401 - the list is shared as it grows

    def _log_end(self, ws: ClientConnection, pump: asyncio.Task[None]) -> None:
        exc = None if pump.cancelled() else pump.exception()
        if exc is not None and not isinstance(exc, ConnectionClosed):
            logger.error("stream %s failed: %r", self._safe_url, exc)
        else:
            logger.warning(
                "connection to %s closed (code %s %s)",
                self._safe_url,
                ws.close_code,
                ws.close_reason or "",
            )
