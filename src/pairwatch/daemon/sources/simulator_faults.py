"""Fault injection for the simulator: fault specs, reconnect policies, malformed-frame corpus.

A :class:`Fault` fires on a connection after it has sent ``after`` trade messages
(malformed frames and notices are not counted). ``every`` repeats it on each connection at
``after + k * every``; without it the fault is one-shot for the whole simulator (it fires
on the first connection that reaches ``after``). ``connection`` restricts a fault to the
n-th accepted connection (1-based).

Kinds:

* ``drop``: abort the TCP connection (no close frame; the client sees 1006);
* ``close``: clean close handshake with ``code``/``reason``;
* ``stall``: send nothing for ``stall_s`` seconds, keep the socket open (pings still work),
  then carry on from where it stopped;
* ``malformed``: send ``count`` frames from :func:`malformed_frames` (cycled), then carry on;
* ``shutdown``: send Binance's ``serverShutdown`` notice, keep streaming for ``grace_s``
  seconds, then close with 1001 (going away).

:class:`ReconnectPolicy` decides where connection 2, 3, ... start in the simulator's frame
log. "The resume point" is just after the furthest frame any connection has consumed.

* ``live`` (default): start at the market's present; in paced mode trades made while no
  one was connected are lost (a real gap); in max-speed mode nothing happens while
  disconnected, so this is the same as ``continue``;
* ``continue``: start at the resume point (no loss, no duplicate);
* ``overlap``: start ``count`` subscribed frames before the resume point (duplicates);
* ``skip``: start at the resume point but drop the next ``count`` subscribed frames
  (a gap of exactly ``count`` ids per stream when one stream is subscribed).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Literal

logger = logging.getLogger(__name__)

FaultKind = Literal["drop", "close", "stall", "malformed", "shutdown"]
FAULT_KINDS: tuple[FaultKind, ...] = ("drop", "close", "stall", "malformed", "shutdown")
ReconnectMode = Literal["live", "continue", "overlap", "skip"]


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault to inject after ``after`` trade messages on a connection."""

    kind: FaultKind
    after: int
    every: int | None = None
    connection: int | None = None
    stall_s: float = 0.0
    count: int = 1
    grace_s: float = 0.0
    code: int = 1000
    reason: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in FAULT_KINDS:
            problems.append(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.after < 0:
            problems.append("after must be >= 0")
        if self.every is not None and self.every < 1:
            problems.append("every must be >= 1")
        if self.connection is not None and self.connection < 1:
            problems.append("connection numbers start at 1")
        if self.stall_s < 0 or self.grace_s < 0 or self.count < 0:
            problems.append("stall_s, grace_s and count must be >= 0")
        if problems:
            raise ValueError(f"invalid fault {self.kind}: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Where a reconnecting client's new connection starts (see module docstring)."""

    mode: ReconnectMode = "live"
    count: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("live", "continue", "overlap", "skip"):
            raise ValueError(f"unknown reconnect mode {self.mode!r}")
        if self.count < 0:
            raise ValueError("reconnect count must be >= 0")


@dataclass(frozen=True, slots=True)
class FaultOptions:
    """All fault settings of a simulator; the default injects nothing."""

    faults: tuple[Fault, ...] = ()
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    refuse_first: int = 0
    """Answer the first N valid handshakes with HTTP 503."""
    refuse_for_s: float = 0.0
    """Answer handshakes with HTTP 503 for this long after the server starts."""
    max_connection_s: float | None = None
    """Close connections (1000) after this age, like Binance's 24-hour limit."""
    drop_after_s: float | None = None
    """Abort connections (no close frame) after this age: a disconnect every N seconds."""

    def __post_init__(self) -> None:
        if self.refuse_first < 0 or self.refuse_for_s < 0:
            raise ValueError("refuse_first and refuse_for_s must be >= 0")
        if self.max_connection_s is not None and self.max_connection_s <= 0:
            raise ValueError("max_connection_s must be > 0")
        if self.drop_after_s is not None and self.drop_after_s <= 0:
            raise ValueError("drop_after_s must be > 0")


class FaultSchedule:
    """Simulator-wide fault state: which one-shot faults have fired."""

    def __init__(self, faults: tuple[Fault, ...]) -> None:
        self.faults = faults
        self._fired: set[int] = set()

    def for_connection(self, number: int) -> ConnectionFaults:
        """Return the fault tracker of the ``number``-th connection."""
        return ConnectionFaults(self, number)


class ConnectionFaults:
    """Per-connection thresholds: where the sender must stop and which faults fire there."""

    def __init__(self, schedule: FaultSchedule, number: int) -> None:
        self._schedule = schedule
        self._next: dict[int, int] = {
            i: f.after
            for i, f in enumerate(schedule.faults)
            if f.connection is None or f.connection == number
        }

    def next_stop(self) -> int | None:
        """Return the message count at which the next fault fires, if any."""
        fired = self._schedule._fired
        pending = [n for i, n in self._next.items() if i not in fired]
        return min(pending) if pending else None

    def take(self, sent: int) -> list[Fault]:
        """Return the faults that fire now that ``sent`` messages went out, in spec order."""
        fired = self._schedule._fired
        due = []
        for i, threshold in list(self._next.items()):
            if threshold != sent or i in fired:
                continue
            fault = self._schedule.faults[i]
            due.append(fault)
            if fault.every is None:
                fired.add(i)
                del self._next[i]
            else:
                self._next[i] = threshold + fault.every
        return due


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _base_payload(stream: str, market: str, trade_id: int, now_ms: int) -> dict[str, object]:
    symbol, _, kind = stream.partition("@")
    sym = symbol.upper()
    spot = market == "spot"
    price, qty = ("100.00000000", "1.00000000") if spot else ("100.00", "1.000")
    if kind == "aggTrade":
        data: dict[str, object] = {
            "e": "aggTrade",
            "E": now_ms,
            "s": sym,
            "a": trade_id,
            "p": price,
            "q": qty,
            "f": 1,
            "l": 1,
            "T": now_ms,
            "m": True,
        }
        if spot:
            data["M"] = True
        else:
            data = {
                "e": "aggTrade",
                "E": now_ms,
                "a": trade_id,
                **{k: v for k, v in data.items() if k not in ("e", "E", "a")},
            }
        return data
    if spot:
        return {
            "e": "trade",
            "E": now_ms,
            "s": sym,
            "t": trade_id,
            "p": price,
            "q": qty,
            "T": now_ms,
            "m": True,
            "M": True,
        }
    return {"e": "trade", "E": now_ms, "T": now_ms, "s": sym, "t": trade_id, "p": price,
            "q": qty, "X": "MARKET", "m": True}  # fmt: skip


def malformed_frames(
    stream: str, market: str, last_id: int, now_ms: int
) -> list[tuple[str, str | bytes]]:
    """Return the corpus of (label, frame) a client must reject; bytes go out as binary.

    Frames that carry an id reuse ``last_id`` (the last id sent on ``stream``), so a client
    that validates before deduplicating sees no gap and no new id.
    """
    id_key = "a" if stream.endswith("@aggTrade") else "t"
    base = _base_payload(stream, market, last_id, now_ms)

    def frame(**changes: object) -> str:
        data = {k: v for k, v in base.items() if changes.get(k, 0) is not None}
        data.update({k: v for k, v in changes.items() if v is not None})
        return _dumps({"stream": stream, "data": data})

    valid = _dumps({"stream": stream, "data": base})
    other = "zzzusdt@" + stream.partition("@")[2]
    unknown = _base_payload(other, market, last_id, now_ms)
    return [
        ("broken_json", valid[: len(valid) // 2]),
        ("not_an_object", "[1,2,3]"),
        ("no_data", _dumps({"stream": stream})),
        ("missing_price", frame(p=None)),
        ("missing_id", frame(**{id_key: None})),
        ("missing_time", frame(T=None)),
        ("price_as_number", frame(p=100.0)),
        ("id_as_string", frame(**{id_key: str(last_id)})),
        ("price_zero", frame(p="0")),
        ("price_negative", frame(p="-1")),
        ("price_nan", frame(p="NaN")),
        ("price_inf", frame(p="inf")),
        ("qty_negative", frame(q="-1")),
        ("unknown_symbol", _dumps({"stream": other, "data": unknown})),
        ("symbol_mismatch", frame(s="ZZZUSDT")),
        ("huge_numbers", frame(p="1" + "0" * 40 + ".0", **{id_key: 2**70}, T=10**20)),
        ("binary_frame", b"\x80\xff\xfe" + valid.encode()[:20]),
    ]
