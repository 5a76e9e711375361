"""One simulator connection: stream the frame log from a cursor, inject faults, record.

Trade frames go out a batch at a time as one transport write of ready-made websocket
frames, inside :meth:`Connection.send_context` (which checks the connection is open and
applies flow control). Framing ourselves is safe because the server never negotiates
compression and never fragments; it is several times faster than ``await ws.send`` per
frame (which costs a ``socket.send`` each) and lets one process push >150k frames/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from pairwatch.daemon.sources.simulator_faults import ConnectionFaults, Fault, malformed_frames
from pairwatch.daemon.sources.simulator_feed import Feed
from pairwatch.daemon.sources.simulator_wire import Market, server_shutdown_frame

logger = logging.getLogger(__name__)

_MAX_BATCH = 2048
# Headers of unmasked FIN text frames by payload length, precomputed for common sizes.
_HEADERS = [bytes((0x81, n)) for n in range(126)] + [
    b"\x81\x7e" + n.to_bytes(2, "big") for n in range(126, 4096)
]


def _header(n: int) -> bytes:
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big")
    return b"\x81\x7f" + n.to_bytes(8, "big")


def text_frames(frames: list[str]) -> bytes:
    """Return unmasked, unfragmented websocket text frames (server to client) for ``frames``."""
    out = bytearray()
    headers, small = _HEADERS, len(_HEADERS)
    for frame in frames:
        payload = frame.encode()
        n = len(payload)
        out += headers[n] if n < small else _header(n)
        out += payload
    return bytes(out)


@dataclass(slots=True)
class ConnectionRecord:
    """What one connection was sent; filled in while it runs, complete once ``closed``."""

    number: int
    path: str
    requested: list[str]
    """Stream names from the URL (and later SUBSCRIBE requests), as given."""
    served: set[str] = field(default_factory=set)
    """Requested names the simulator publishes (others are ignored, like Binance does)."""
    start_seq: int = 0
    messages: int = 0
    """Trade frames sent (malformed frames and notices are not counted)."""
    malformed: list[str] = field(default_factory=list)
    """Labels of the malformed frames sent, in order."""
    notices: int = 0
    faults: list[str] = field(default_factory=list)
    """Kinds of the faults fired, in order."""
    skipped: int = 0
    """Frames dropped by the ``skip`` reconnect policy."""
    closed: bool = False
    close_cause: str | None = None
    """``drop``, ``close``, ``shutdown``, ``max_age``, ``end_of_data``, ``peer`` or ``error``."""
    reached_end: bool = False
    sent_streams: list[int] = field(default_factory=list, repr=False)
    sent_ids: list[int] = field(default_factory=list, repr=False)
    stream_names: list[str] = field(default_factory=list, repr=False)

    def ids(self, stream: str) -> list[int]:
        """Return the ids sent on one stream, in send order (duplicates included).

        Only the first ``SimulatorOptions.record_limit`` frames of a connection are recorded.
        """
        if stream not in self.stream_names:
            return []
        code = self.stream_names.index(stream)
        return [i for s, i in zip(self.sent_streams, self.sent_ids, strict=True) if s == code]

    def last_id(self, stream: str) -> int | None:
        """Return the last id recorded on one stream, if any."""
        if stream not in self.stream_names:
            return None
        code = self.stream_names.index(stream)
        for s, i in zip(reversed(self.sent_streams), reversed(self.sent_ids), strict=True):
            if s == code:
                return i
        return None

    def counts(self) -> dict[str, int]:
        """Return recorded trade frames per stream."""
        out: dict[str, int] = {}
        for code in self.sent_streams:
            name = self.stream_names[code]
            out[name] = out.get(name, 0) + 1
        return out


@dataclass(slots=True)
class SessionContext:
    """What a session needs from its simulator."""

    feed: Feed
    market: Market
    record_limit: int
    """Ids recorded per connection at most (0: none)."""
    close_when_done: bool
    on_send: Callable[[int, int], None] | None
    consumed: Callable[[int], None]
    """Report the furthest seq a session has consumed (drives the resume point)."""
    changed: Callable[[], None]
    """Wake anyone waiting on the simulator's records."""


class Session:
    """Send the log to one websocket from ``start_seq``, applying faults on the way."""

    def __init__(
        self,
        ws: ServerConnection,
        ctx: SessionContext,
        *,
        record: ConnectionRecord,
        faults: ConnectionFaults,
        subscribed: set[int],
        skip: int,
        max_age_s: float | None,
        drop_after_s: float | None = None,
    ) -> None:
        self.ws = ws
        self.ctx = ctx
        self.record = record
        self.faults = faults
        self.subscribed = subscribed
        self.cursor = record.start_seq
        self._skip = skip
        loop = asyncio.get_running_loop()
        self._deadline: float | None = None
        self._deadline_cause = ""
        if max_age_s is not None:
            self._set_deadline(loop.time() + max_age_s, "max_age")
        if drop_after_s is not None:
            self._set_deadline(loop.time() + drop_after_s, "drop")
        self._corpus_pos = 0
        self._subscribed_event = asyncio.Event()

    def subscriptions_changed(self) -> None:
        """Wake the sender after SUBSCRIBE/UNSUBSCRIBE changed ``subscribed``."""
        self._subscribed_event.set()

    def drop(self) -> None:
        """Abort the TCP connection at once (no close frame; unsent bytes are lost)."""
        self._finish("drop")
        self.ws.transport.abort()

    def _set_deadline(self, when: float, cause: str) -> None:
        if self._deadline is None or when < self._deadline:
            self._deadline, self._deadline_cause = when, cause

    async def run(self) -> None:
        """Stream until a fault, a deadline or the end of the data closes the connection."""
        try:
            await self._stream()
        except ConnectionClosed:
            self._finish("peer")

    def _finish(self, cause: str) -> None:
        if self.record.close_cause is None:
            self.record.close_cause = cause
        self.ctx.changed()

    async def _stream(self) -> None:
        log, feed = self.ctx.feed.log, self.ctx.feed
        loop = asyncio.get_running_loop()
        while True:
            if self._deadline is not None and loop.time() >= self._deadline:
                cause = self._deadline_cause
                if cause == "drop":
                    self.drop()
                elif cause == "shutdown":
                    await self._close(1001, "server shutdown", cause)
                else:
                    await self._close(1000, "connection too old", cause)
                return
            stop = self.faults.next_stop()
            if stop is not None and stop <= self.record.messages:
                if await self._fire(self.faults.take(self.record.messages)):
                    return
                continue
            if not self.subscribed:
                # Nothing to send: don't make the market run ahead (max speed); when a
                # subscription arrives, start from the present like Binance does (paced).
                self._subscribed_event.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(self._deadline):
                        await self._subscribed_event.wait()
                if feed.paced:
                    self.cursor = max(self.cursor, log.end)
                continue
            if self.cursor < log.base:
                logger.warning("connection %d fell behind the log; skipping %d frames",
                               self.record.number, log.base - self.cursor)  # fmt: skip
                self.cursor = log.base
            if self.cursor >= log.end:
                if log.finished:
                    await self._at_end()
                    return
                if not feed.paced:
                    feed.fill()
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(self._deadline):
                        await log.wait()
                continue
            budget = _MAX_BATCH if stop is None else min(_MAX_BATCH, stop - self.record.messages)
            await self._send_batch(budget)

    def _select(self, budget: int) -> tuple[list[str], list[int], list[int]]:
        """Take up to ``budget`` subscribed frames from the cursor; advance the cursor."""
        log = self.ctx.feed.log
        i = self.cursor - log.base
        hi = min(len(log.frames), i + _MAX_BATCH)
        sub = self.subscribed
        if self._skip == 0 and sub.issuperset(self.ctx.feed.published):
            hi = min(hi, i + budget)
            self.cursor = log.base + hi
            return log.frames[i:hi], log.streams[i:hi], log.ids[i:hi]
        frames: list[str] = []
        streams: list[int] = []
        ids: list[int] = []
        j = i
        while j < hi and len(frames) < budget:
            code = log.streams[j]
            if code in sub:
                if self._skip:
                    self._skip -= 1
                    self.record.skipped += 1
                else:
                    frames.append(log.frames[j])
                    streams.append(code)
                    ids.append(log.ids[j])
            j += 1
        self.cursor = log.base + j
        return frames, streams, ids

    async def _send_batch(self, budget: int) -> None:
        frames, streams, ids = self._select(budget)
        if frames:
            ws = self.ws
            data = text_frames(frames)
            async with ws.send_context():
                ws.transport.write(data)
            record = self.record
            record.messages += len(frames)
            room = self.ctx.record_limit - len(record.sent_ids)
            if room > 0:
                record.sent_streams.extend(streams[:room])
                record.sent_ids.extend(ids[:room])
            if self.ctx.on_send is not None:
                self.ctx.on_send(record.messages, time.time_ns())
        self.ctx.consumed(self.cursor)
        self.ctx.changed()
        # send_context does not suspend while the write buffer has room: yield so the
        # loop can run the reader, pings, other connections and connection_lost.
        await asyncio.sleep(0)

    async def _fire(self, faults: list[Fault]) -> bool:
        """Apply faults due now; return True when the connection is finished."""
        for fault in faults:
            self.record.faults.append(fault.kind)
            logger.info("connection %d: %s after %d messages",
                        self.record.number, fault.kind, self.record.messages)  # fmt: skip
            self.ctx.changed()
            if fault.kind == "drop":
                self.drop()
                return True
            if fault.kind == "close":
                await self._close(fault.code, fault.reason, "close")
                return True
            if fault.kind == "stall":
                await asyncio.sleep(fault.stall_s)
            elif fault.kind == "malformed":
                await self._send_malformed(fault.count)
            elif fault.kind == "shutdown":
                await self.ws.send(server_shutdown_frame(time.time_ns() // 1_000_000))
                self.record.notices += 1
                loop = asyncio.get_running_loop()
                self._set_deadline(loop.time() + fault.grace_s, "shutdown")
        return False

    async def _send_malformed(self, count: int) -> None:
        record = self.record
        stream = min(record.served) if record.served else "btcusdt@trade"
        last_id = record.last_id(stream) or 0
        corpus = malformed_frames(stream, self.ctx.market, last_id, time.time_ns() // 1_000_000)
        for _ in range(count):
            label, frame = corpus[self._corpus_pos % len(corpus)]
            self._corpus_pos += 1
            await self.ws.send(frame)
            record.malformed.append(label)
        self.ctx.changed()

    async def _close(self, code: int, reason: str, cause: str) -> None:
        self._finish(cause)
        await self.ws.close(code, reason)

    async def _at_end(self) -> None:
        self.record.reached_end = True
        self.ctx.changed()
        if self.ctx.close_when_done:
            await self._close(1000, "end of data", "end_of_data")
        else:
            await self.ws.wait_closed()


def control_reply(message: str | bytes, requested: list[str]) -> tuple[str, list[str], list[str]]:
    """Answer a Binance control request; return (reply, streams added, streams removed)."""
    try:
        request = json.loads(message)
    except (ValueError, UnicodeDecodeError) as exc:
        return json.dumps({"code": 3, "msg": f"Invalid JSON: {exc}"}), [], []
    if not isinstance(request, dict) or "method" not in request:
        return json.dumps({"code": 2, "msg": "Invalid request: missing field `method`"}), [], []
    method, params, rid = request.get("method"), request.get("params", []), request.get("id")
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return json.dumps({"code": 2, "msg": "Invalid request: params", "id": rid}), [], []
        reply = json.dumps({"result": None, "id": rid}, separators=(",", ":"))
        return (reply, params, []) if method == "SUBSCRIBE" else (reply, [], params)
    if method == "LIST_SUBSCRIPTIONS":
        return json.dumps({"result": requested, "id": rid}, separators=(",", ":")), [], []
    msg = f"Invalid request: unknown variant {method}"
    return json.dumps({"code": 2, "msg": msg, "id": rid}), [], []
