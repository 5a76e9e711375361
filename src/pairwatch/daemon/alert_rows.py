"""Rows of the alert tables: lifecycle states, events, the outbox and silences.

Pure conversions between the alert objects and the parameters of their statements
(``alert_state``, ``alert_events``, ``outbox``, ``silences``; docs/schema.md), and the
reads the daemon, the dispatcher and ``pairwatch mute`` make. The writer thread runs the
writes; readers use their own connections.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from pairwatch.analytics.alerting import AlertState
from pairwatch.daemon.schema import Row
from pairwatch.daemon.sql_bulk import insert_rows
from pairwatch.events import AlertEvent

STATE_FIELDS: Final = (
    "phase", "since", "held_bars", "notified_at", "resolving_since", "last_at", "seen_data",
    "no_data_since", "no_data_bars", "no_data_firing",
)  # fmt: skip
"""``AlertState`` fields stored as columns of the same name (``previous`` as JSON)."""

_STATE_COLUMNS: Final = ("timeframe", "window", *STATE_FIELDS, "previous", "muted")

MUTED_FIRING: Final = 1
MUTED_NO_DATA: Final = 2
"""Bits of ``alert_state.muted``: a silence held back the firing / the no-data notification."""
UPSERT_ALERT_STATE: Final = " ".join(
    (
        f"INSERT INTO alert_state (rule, target, {', '.join(_STATE_COLUMNS)}, updated_at)",
        f"VALUES ({', '.join('?' * (len(_STATE_COLUMNS) + 3))})",
        "ON CONFLICT (rule, target) DO UPDATE SET",
        ", ".join(f"{c} = excluded.{c}" for c in (*_STATE_COLUMNS, "updated_at")),
    )
)
DELETE_ALERT_STATE: Final = "DELETE FROM alert_state WHERE rule = ? AND target = ?"

EVENT_COLUMNS: Final = (
    "key", "rule", "target", "timeframe", "window", "kind", "at", "severity", "metric", "value",
    "threshold", "message", "vals", "labels", "notify", "since", "silenced", "created_at",
)  # fmt: skip
INSERT_ALERT_EVENT: Final = (
    f"INSERT OR IGNORE INTO alert_events ({', '.join(EVENT_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
)
INSERT_OUTBOX: Final = (
    "INSERT OR IGNORE INTO outbox (key, notifier, route, payload, created_at, next_attempt_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
MARK_DELIVERED: Final = (
    "UPDATE outbox SET delivered_at = ?, attempts = ?, last_error = NULL WHERE id = ?"
)
MARK_RETRY: Final = (
    "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?"
)
MARK_FAILED: Final = "UPDATE outbox SET failed_at = ?, attempts = ?, last_error = ? WHERE id = ?"

_OUTBOX_COLUMNS: Final = "id, key, notifier, route, payload, created_at, attempts, next_attempt_at"


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification to write to the outbox: a payload for one notifier's route."""

    key: str
    """Idempotency key: the event's key (or a notice's), the same on every delivery."""
    notifier: str
    route: Mapping[str, str]
    """The route's overrides (chat, topic, url); empty for the notifier's defaults."""
    payload: Mapping[str, Any]
    """``{"type": "alert", "event": …}`` or ``{"type": "notice", …}`` (JSON-ready)."""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """An undelivered outbox row, as a notifier's worker takes it."""

    id: int
    key: str
    notifier: str
    route: Mapping[str, str]
    payload: Mapping[str, Any]
    created_at: int
    attempts: int
    next_attempt_at: int
    error: str | None = None
    """Set when the row cannot be read (bad JSON): it is given up, not delivered."""


@dataclass(frozen=True, slots=True)
class OutboxOffer:
    """The outbox rows one transaction added, handed to the delivery workers on commit.

    ``before`` and ``after`` are the outbox's id sequence (``outbox_sequence``) before and
    after the transaction: a worker that has seen every row up to ``before`` can take
    ``items`` instead of reading the table, and has then seen every row up to ``after``.
    """

    before: int
    after: int
    items: tuple[OutboxItem, ...]


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one delivery attempt: delivered, to be retried, or given up."""

    id: int
    outcome: str
    """``delivered``, ``retry`` or ``failed``."""
    at: int
    attempts: int
    next_attempt_at: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StoredState:
    """One ``alert_state`` row: an alert's lifecycle state and its held-back raisings."""

    rule: str
    target: str
    timeframe: str | None
    window: int | None
    state: AlertState
    muted: int = 0
    """``MUTED_FIRING`` | ``MUTED_NO_DATA``: raisings a silence held back, sent at its end."""


@dataclass(frozen=True, slots=True)
class Silence:
    """A stored silence: ``rule`` (``*`` for every rule) and optional target, until ``ends_at``."""

    id: int
    rule: str
    target: str | None
    starts_at: int
    ends_at: int
    created_by: str
    reason: str | None

    def matches(self, rule: str, target: str, now: int) -> bool:
        """Return whether it silences ``rule`` × ``target`` at ``now``."""
        return (
            self.starts_at <= now < self.ends_at
            and self.rule in ("*", rule)
            and self.target in (None, target)
        )


def alert_event_payload(event: AlertEvent) -> dict[str, Any]:
    """Return an event as its outbox payload (JSON-ready; NaN values become null)."""
    data = msgspec.to_builtins(event)
    data["value"] = _finite(event.value)
    data["threshold"] = _finite(event.threshold)
    data["values"] = {k: v for k, v in event.values.items() if math.isfinite(v)}
    data["key"] = event.key
    return {"type": "alert", "event": data}


def event_from_payload(payload: Mapping[str, Any]) -> AlertEvent:
    """Return the ``AlertEvent`` of an alert payload (nulls read back as NaN)."""
    data = dict(payload["event"])
    data.pop("key", None)
    for name in ("value", "threshold"):
        if data.get(name) is None:
            data[name] = math.nan
    return msgspec.convert(data, AlertEvent)


def notice_payload(title: str, text: str, severity: str = "warning") -> dict[str, Any]:
    """Return a daemon notice (e.g. "rules reload failed") as an outbox payload."""
    return {"type": "notice", "title": title, "text": text, "severity": severity}


def state_rows(states: Iterable[StoredState], now: int) -> list[Row]:
    """Return alert states as ``UPSERT_ALERT_STATE`` parameters."""
    rows: list[Row] = []
    for s in states:
        st = s.state
        previous = None
        if st.previous is not None:
            previous = json.dumps(
                {k: float(v) for k, v in st.previous.items() if math.isfinite(v)},
                separators=(",", ":"),
            )
        rows.append(
            (
                s.rule,
                s.target,
                s.timeframe,
                s.window,
                *[_column(getattr(st, name)) for name in STATE_FIELDS],
                previous,
                s.muted,
                now,
            )
        )
    return rows


def state_from_row(row: Sequence[Any]) -> StoredState:
    """Return the ``StoredState`` of an ``alert_state`` row (as ``load_alert_states`` reads)."""
    rule, target, timeframe, window, *fields, previous, muted = row
    values = dict(zip(STATE_FIELDS, fields, strict=True))
    for name in ("seen_data", "no_data_firing"):
        values[name] = bool(values[name])
    state = AlertState(**values)
    if previous is not None:
        state.previous = {k: float(v) for k, v in json.loads(previous).items()}
    return StoredState(rule, target, timeframe, window, state, int(muted))


def event_rows(events: Iterable[tuple[AlertEvent, bool]], now: int) -> list[Row]:
    """Return ``(event, silenced)`` pairs as ``INSERT_ALERT_EVENT`` parameters."""
    return [
        (
            e.key,
            e.rule,
            e.target,
            e.timeframe,
            e.window,
            e.kind,
            e.at,
            e.severity,
            e.metric,
            _finite(e.value),
            _finite(e.threshold),
            e.message,
            json.dumps(
                {k: v for k, v in e.values.items() if math.isfinite(v)}, separators=(",", ":")
            ),
            json.dumps(e.labels, separators=(",", ":")) if e.labels else "{}",
            int(e.notify),
            e.since,
            int(silenced),
            now,
        )
        for e, silenced in events
    ]


def outbox_rows(notifications: Iterable[Notification], now: int) -> list[Row]:
    """Return notifications as ``INSERT_OUTBOX`` parameters (due at once).

    The notifications of one event to several notifiers share its payload: it is encoded
    once (the store writer does this while holding the GIL the event loop waits for).
    """
    encoded: dict[int, tuple[object, str]] = {}  # the payload is held: its id stays its own
    rows: list[Row] = []
    for n in notifications:
        held = encoded.get(id(n.payload))
        if held is None:
            held = encoded[id(n.payload)] = (n.payload, _payload_json(n))
        rows.append((n.key, n.notifier, _route_json(n), held[1], now, now))
    return rows


def _route_json(n: Notification) -> str:
    if not n.route:
        return "{}"  # the notifier's defaults: most rows
    return json.dumps(dict(n.route), sort_keys=True, separators=(",", ":"))


def _payload_json(n: Notification) -> str:
    return json.dumps(n.payload, separators=(",", ":"), allow_nan=False)


def delivery_rows(deliveries: Iterable[Delivery]) -> dict[str, list[Row]]:
    """Return delivery outcomes as parameters of ``MARK_DELIVERED``/``_RETRY``/``_FAILED``."""
    out: dict[str, list[Row]] = {MARK_DELIVERED: [], MARK_RETRY: [], MARK_FAILED: []}
    for d in deliveries:
        if d.outcome == "delivered":
            out[MARK_DELIVERED].append((d.at, d.attempts, d.id))
        elif d.outcome == "retry":
            out[MARK_RETRY].append((d.attempts, d.next_attempt_at, d.error, d.id))
        else:
            out[MARK_FAILED].append((d.at, d.attempts, d.error, d.id))
    return out


def load_alert_states(conn: sqlite3.Connection) -> list[StoredState]:
    """Return every stored alert state."""
    columns = ", ".join(("rule", "target", *_STATE_COLUMNS))
    rows = conn.execute(f"SELECT {columns} FROM alert_state")  # noqa: S608 -- constant names
    return [state_from_row(row) for row in rows]


def load_raising_events(
    conn: sqlite3.Connection, keys: Iterable[tuple[str, str, str]]
) -> dict[tuple[str, str, str], AlertEvent]:
    """Return the latest event of each (rule, target, kind) (kind ``firing`` or ``no_data``)."""
    columns = ", ".join(c for c in EVENT_COLUMNS if c not in ("key", "silenced", "created_at"))
    out: dict[tuple[str, str, str], AlertEvent] = {}
    for rule, target, kind in keys:
        row = conn.execute(
            f"SELECT {columns}, key FROM alert_events "  # noqa: S608 -- constant names
            "WHERE rule = ? AND target = ? AND kind = ? ORDER BY id DESC LIMIT 1",
            (rule, target, kind),
        ).fetchone()
        if row is not None:
            _, hashed, seq = row[-1].rpartition("#")
            event = event_from_row(row[:-1])
            if hashed and seq.isdigit():
                event = msgspec.structs.replace(event, seq=int(seq))
            out[(rule, target, kind)] = event
    return out


def event_from_row(row: Sequence[Any]) -> AlertEvent:
    """Return the ``AlertEvent`` of an ``alert_events`` row (columns ``rule`` … ``since``)."""
    rule, target, timeframe, window, kind, at, severity, metric, value, threshold = row[:10]
    message, values, labels, notify, since = row[10:15]
    return AlertEvent(
        rule=rule, target=target, timeframe=timeframe, window=window, kind=kind, at=at,
        severity=severity, metric=metric,
        value=math.nan if value is None else float(value),
        threshold=math.nan if threshold is None else float(threshold),
        message=message, values={k: float(v) for k, v in json.loads(values).items()},
        labels=json.loads(labels), notify=bool(notify), since=since,
    )  # fmt: skip


def outbox_sequence(conn: sqlite3.Connection) -> int:
    """Return the largest outbox id ever given (0 before the first): it never goes down."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    return 0 if row is None else int(row[0])


def insert_outbox(
    conn: sqlite3.Connection, notifications: Sequence[Notification], now: int
) -> OutboxOffer:
    """Insert notifications (inside the caller's transaction); return the rows added.

    A notification already in the outbox (same key, notifier and route) is not added again
    and is not in the offer. The items are what ``load_pending_outbox`` would read back.
    The connection must be the only writer (the store writer's): the rows after the
    sequence read first are then this call's. When every row was new, their ids are the
    sequence's next ones in order and nothing is read back; otherwise the rows are read.
    A few statements whatever the count: each one hands the GIL back and forth with a busy
    event loop.
    """
    before = outbox_sequence(conn)
    rows = outbox_rows(notifications, now)
    added = insert_rows(conn, INSERT_OUTBOX, rows)
    after = outbox_sequence(conn)
    if added == len(rows) and after - before == added:
        fresh = ((before + 1 + i, key, n, route, payload, created, 0, due)
                 for i, (key, n, route, payload, created, due) in enumerate(rows))  # fmt: skip
        return OutboxOffer(before, after, tuple(_items(fresh)))
    read = conn.execute(
        f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE id > ? ORDER BY id",  # noqa: S608
        (before,),
    ).fetchall()
    return OutboxOffer(before, after, tuple(_items(read)))


def load_pending_outbox(
    conn: sqlite3.Connection, notifier: str, after_id: int = 0, limit: int = 100
) -> list[OutboxItem]:
    """Return a notifier's undelivered, not given-up rows after ``after_id``, oldest first.

    A row whose JSON cannot be read comes back with ``error`` set (to be given up).
    """
    rows = conn.execute(
        f"SELECT {_OUTBOX_COLUMNS} FROM outbox "  # noqa: S608 -- constant names
        "WHERE notifier = ? AND id > ? AND delivered_at IS NULL AND failed_at IS NULL "
        "ORDER BY id LIMIT ?",
        (notifier, after_id, limit),
    )
    return _items(rows)


def _items(rows: Iterable[Sequence[Any]]) -> list[OutboxItem]:
    """Return outbox rows (``_OUTBOX_COLUMNS``) as items; unreadable JSON sets ``error``."""
    items = []
    for i, key, n, route, payload, created, attempts, due in rows:
        error = None
        try:
            route_data = {} if route == "{}" else json.loads(route)
            payload_data = json.loads(payload)
            if not isinstance(route_data, dict) or not isinstance(payload_data, dict):
                raise ValueError("not a JSON object")
        except (ValueError, TypeError) as exc:
            route_data, payload_data, error = {}, {}, f"unreadable outbox row: {exc}"
        items.append(
            OutboxItem(
                id=i,
                key=key,
                notifier=n,
                route=route_data,
                payload=payload_data,
                created_at=created,
                attempts=attempts,
                next_attempt_at=due,
                error=error,
            )
        )
    return items


def pending_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Return the number of undelivered outbox rows per notifier."""
    rows = conn.execute(
        "SELECT notifier, count(*) FROM outbox "
        "WHERE delivered_at IS NULL AND failed_at IS NULL GROUP BY notifier"
    )
    return {notifier: int(n) for notifier, n in rows}


def load_silences(conn: sqlite3.Connection, now: int) -> list[Silence]:
    """Return the silences not yet ended or cancelled at ``now`` (also those starting later)."""
    rows = conn.execute(
        "SELECT id, rule, target, starts_at, ends_at, created_by, reason FROM silences "
        "WHERE ends_at > ? AND cancelled_at IS NULL ORDER BY id",
        (now,),
    )
    return [Silence(*row) for row in rows]


def add_silence(
    conn: sqlite3.Connection,
    rule: str,
    target: str | None,
    starts_at: int,
    ends_at: int,
    created_by: str,
    reason: str | None = None,
) -> Silence:
    """Store a silence (in its own transaction) and return it."""
    with conn:
        cursor = conn.execute(
            "INSERT INTO silences (rule, target, starts_at, ends_at, created_by, reason) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (rule, target, starts_at, ends_at, created_by, reason),
        )
    assert cursor.lastrowid is not None
    return Silence(cursor.lastrowid, rule, target, starts_at, ends_at, created_by, reason)


def cancel_silences(
    conn: sqlite3.Connection, rule: str, target: str | None, now: int
) -> list[Silence]:
    """End now the silences stored under ``rule`` (``*``: the all-rules ones); return them.

    With ``target``, only those of that target; without, all of the rule's.
    """
    ended = [
        s
        for s in load_silences(conn, now)
        if s.rule == rule and (target is None or s.target == target)
    ]
    with conn:
        conn.executemany(
            "UPDATE silences SET cancelled_at = ? WHERE id = ?", [(now, s.id) for s in ended]
        )
    return [dataclasses.replace(s, ends_at=now) for s in ended]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _column(value: object) -> object:
    return int(value) if isinstance(value, bool) else value
