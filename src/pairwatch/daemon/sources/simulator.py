"""A Binance-compatible combined-stream websocket server for demos, tests and benchmarks.

Usage::

    async with Simulator(SimulatorOptions(speed=None)) as sim:
        url = sim.url + "/stream?streams=btcusdt@trade/ethusdt@trade"   # or sim.stream_url(...)
        ...
        await sim.wait_until(lambda: sim.connections and sim.connections[0].closed)

``sim.url`` is the base URL (``ws://127.0.0.1:PORT``). Clients append the combined-stream
path: ``/stream?streams=...`` (Binance spot) or ``/market/stream?streams=...`` (USD-M's
new routed path); both paths are served whatever ``market`` is, ``market`` only decides
the payload format. Any other path gets HTTP 404 at the handshake. Stream names are
lower-case ``<symbol>@trade`` / ``<symbol>@aggTrade``.

Unknown or malformed stream names are ignored, as Binance does for unknown symbols: the
connection opens and those streams stay silent (``ConnectionRecord.served`` lists what is
served). With ``strict_streams=True`` the handshake is answered with HTTP 400 naming them.
A connection may also send Binance's ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS``
requests and gets Binance-style replies.

Modes: ``synthetic`` (see :mod:`.synthetic`; the market starts with the first connection
and, when paced, keeps ticking whether or not anyone is connected) and ``recorded``
(trade/aggTrade frames of ``files`` merged by event time and sent unchanged; see
:mod:`.frames`). ``speed`` scales time (1.0 = real time); ``None`` is max speed, where
frames are generated or read on demand as fast as the client takes them.

The server pings every ``ping_interval_s`` (Binance spot: 20 s) and answers pings. For
``serverShutdown`` it sends ``{"stream":"!serverShutdown","data":{"e":"serverShutdown",
"E":<ms>}}``, the combined-stream form of Binance's spot docs. Faults and reconnect
policies: :mod:`.simulator_faults`. What was sent: :attr:`Simulator.connections`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from types import TracebackType
from typing import Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from pairwatch.daemon.sources.simulator_faults import (
    Fault,
    FaultOptions,
    FaultSchedule,
    ReconnectPolicy,
)
from pairwatch.daemon.sources.simulator_feed import Feed, RecordedFeed, SyntheticFeed
from pairwatch.daemon.sources.simulator_options import (
    STREAM_PATHS,
    HandshakeStats,
    SimulatorOptions,
    parse_streams,
)
from pairwatch.daemon.sources.simulator_session import (
    ConnectionRecord,
    Session,
    SessionContext,
    control_reply,
)
from pairwatch.daemon.sources.simulator_wire import STREAM_KINDS

logger = logging.getLogger(__name__)

_SERVED_PATHS = frozenset(STREAM_PATHS.values())


class Simulator:
    """The websocket server; an async context manager (see the module docstring)."""

    def __init__(self, options: SimulatorOptions | None = None) -> None:
        self.options = options = options or SimulatorOptions()
        self.feed: Feed = (
            RecordedFeed(options.files, options.speed)
            if options.mode == "recorded"
            else SyntheticFeed(
                options.market_model(), options.market, options.kinds, options.speed,
                start_ms=options.start_ms, clock=options.event_clock,
            )
        )  # fmt: skip
        self.connections: list[ConnectionRecord] = []
        self.handshakes = HandshakeStats()
        self.error: BaseException | None = None
        self.refusing = False
        """While True, every valid handshake is answered with HTTP 503 (an outage)."""
        self._schedule = FaultSchedule(options.faults.faults)
        self._sessions: dict[int, Session] = {}
        self._resume = 0
        self._server: Server | None = None
        self._producer: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._changed = asyncio.Event()
        self._started_at = 0.0
        self._valid_attempts = 0
        self._ctx = SessionContext(
            feed=self.feed,
            market=options.market,
            record_limit=options.record_limit if options.record_ids else 0,
            close_when_done=options.close_when_done,
            on_send=options.on_send,
            consumed=self._consumed,
            changed=self._notify,
        )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        await self.aclose()

    @property
    def url(self) -> str:
        """Return the base URL, e.g. ``ws://127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{'wss' if self.options.ssl else 'ws'}://{host}:{port}"

    def stream_url(self, streams: Iterable[str], path: str | None = None) -> str:
        """Return the full combined-stream URL (path defaults to the market's)."""
        return f"{self.url}{path or STREAM_PATHS[self.options.market]}?streams={'/'.join(streams)}"

    async def start(self) -> None:
        """Bind the server."""
        opts = self.options
        self._started_at = asyncio.get_running_loop().time()
        self._server = await serve(
            self._handle,
            opts.host,
            opts.port,
            process_request=self._process_request,
            compression=None,
            ping_interval=opts.ping_interval_s,
            ping_timeout=opts.ping_timeout_s,
            max_size=2**16,
            ssl=opts.ssl,
        )
        logger.info("simulator listening on %s (%s, %s)", self.url, opts.mode, opts.market)

    async def serve_forever(self) -> None:
        """Run until :meth:`stop`; raise if the market producer failed."""
        await self._stopped.wait()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """Make :meth:`serve_forever` return."""
        self._stopped.set()

    async def aclose(self) -> None:
        """Stop producing, close every connection (1001) and the listening socket."""
        self.stop()
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop_connections(self) -> int:
        """Abort every open connection (no close frame); return how many were dropped."""
        sessions = list(self._sessions.values())
        for session in sessions:
            session.drop()
        return len(sessions)

    def sent_ids(self, stream: str) -> list[int]:
        """Return the ids sent on a stream over all connections, by connection then order."""
        return [i for record in self.connections for i in record.ids(stream)]

    @property
    def log_end(self) -> int:
        """Return how many frames the market has produced (all streams)."""
        return self.feed.log.end

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` is true; re-checked whenever records or the log change."""
        while not predicate():
            waits = [asyncio.ensure_future(self._changed.wait()),
                     asyncio.ensure_future(self.feed.log.wait())]  # fmt: skip
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()

    def _notify(self) -> None:
        self._changed.set()
        self._changed.clear()

    def _consumed(self, seq: int) -> None:
        self._resume = max(self._resume, seq)
        log = self.feed.log
        retention = self.options.retention
        if len(log.frames) > 2 * retention + 10_000:
            cursors = [s.cursor for s in self._sessions.values()]
            keep = min([self._resume, *cursors]) - retention - self.options.faults.reconnect.count
            log.trim(keep)

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self.handshakes.attempts += 1
        route, names = parse_streams(request.path)
        if route not in _SERVED_PATHS:
            self.handshakes.not_found += 1
            return conn.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        faults = self.options.faults
        self._valid_attempts += 1
        elapsed = asyncio.get_running_loop().time() - self._started_at
        refuse = self.refusing or self._valid_attempts <= faults.refuse_first
        if refuse or elapsed < faults.refuse_for_s:
            self.handshakes.refused += 1
            return conn.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Service Unavailable\n")
        unknown = [n for n in names if not self._valid_stream(n)]
        if unknown and self.options.strict_streams:
            self.handshakes.bad_request += 1
            return conn.respond(HTTPStatus.BAD_REQUEST, f"Unknown streams: {', '.join(unknown)}\n")
        return None

    def _valid_stream(self, name: str) -> bool:
        symbol, _, kind = name.partition("@")
        return (
            kind in STREAM_KINDS and symbol.isalnum() and symbol == symbol.lower()
            and self.feed.serves(name)
        )  # fmt: skip

    def _subscribe(self, record: ConnectionRecord, names: Iterable[str], codes: set[int]) -> None:
        for name in names:
            if name not in record.requested:
                record.requested.append(name)
            if self._valid_stream(name):
                record.served.add(name)
                codes.add(self.feed.table.code(name))

    def _start_seq(self, number: int, codes: set[int]) -> tuple[int, int]:
        """Return (start seq, frames to skip) for a new connection per the reconnect policy."""
        log, policy = self.feed.log, self.options.faults.reconnect
        if number == 1 or policy.mode == "continue":
            return self._resume, 0
        if policy.mode == "live":
            return (log.end if self.feed.paced else self._resume), 0
        if policy.mode == "skip":
            return self._resume, policy.count
        seq, need = self._resume, policy.count
        while need and seq > log.base:
            seq -= 1
            if log.streams[seq - log.base] in codes:
                need -= 1
        return seq, 0

    async def _handle(self, ws: ServerConnection) -> None:
        self.handshakes.accepted += 1
        number = len(self.connections) + 1
        assert ws.request is not None
        route, names = parse_streams(ws.request.path)
        record = ConnectionRecord(number=number, path=route, requested=[],
                                  stream_names=self.feed.table.names)  # fmt: skip
        codes: set[int] = set()
        self._subscribe(record, names, codes)
        if self.feed.paced and self._producer is None:
            self._producer = asyncio.create_task(self._produce())
        record.start_seq, skip = self._start_seq(number, codes)
        self.connections.append(record)
        faults = self._schedule.for_connection(number)
        session = Session(
            ws, self._ctx, record=record, faults=faults, subscribed=codes, skip=skip,
            max_age_s=self.options.faults.max_connection_s,
            drop_after_s=self.options.faults.drop_after_s,
        )  # fmt: skip
        self._sessions[number] = session
        logger.info("connection %d opened: %s %s", number, route, sorted(record.served))
        self._notify()
        sender = asyncio.create_task(self._run_session(session))
        try:
            await self._receive(ws, record, codes)
        finally:
            if not sender.done():
                sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            del self._sessions[number]
            if record.close_cause is None:
                record.close_cause = "peer"
            record.closed = True
            logger.info("connection %d closed (%s) after %d messages",
                        number, record.close_cause, record.messages)  # fmt: skip
            self._notify()

    async def _run_session(self, session: Session) -> None:
        try:
            await session.run()
        except Exception as exc:
            logger.exception("simulator connection %d failed", session.record.number)
            session.record.close_cause = "error"
            self.error = exc
            await session.ws.close(1011, "simulator error")

    async def _receive(
        self, ws: ServerConnection, record: ConnectionRecord, codes: set[int]
    ) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                reply, added, removed = control_reply(message, record.requested)
                self._subscribe(record, added, codes)
                for name in removed:
                    if name in record.requested:
                        record.requested.remove(name)
                    record.served.discard(name)
                    code = self.feed.table.find(name)
                    if code is not None:
                        codes.discard(code)
                session = self._sessions.get(record.number)
                if session is not None and (added or removed):
                    session.subscriptions_changed()
                await ws.send(reply)

    async def _produce(self) -> None:
        try:
            await self.feed.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("simulator market producer failed")
            self.error = exc
            self.feed.log.finish()
            self.stop()


async def run_simulator(
    options: SimulatorOptions,
    *,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or cancelled); call ``ready(base_url)`` once listening.

    Raises the market producer's error if it failed (e.g. an unreadable recorded file).
    """
    async with Simulator(options) as sim:
        if ready is not None:
            ready(sim.url)
        if stop is None:
            await sim.serve_forever()
            return
        stopper = asyncio.create_task(stop.wait())
        serving = asyncio.create_task(sim.serve_forever())
        try:
            await asyncio.wait([stopper, serving], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            serving.cancel()
        if serving.done() and not serving.cancelled():
            serving.result()


__all__ = [
    "STREAM_PATHS",
    "ConnectionRecord",
    "Fault",
    "FaultOptions",
    "HandshakeStats",
    "ReconnectPolicy",
    "Simulator",
    "SimulatorOptions",
    "parse_streams",
    "run_simulator",
]
