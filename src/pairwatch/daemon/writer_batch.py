"""The writer's queued operations, and how a batch of them is cut and written.

The event loop queues operations; the writer thread cuts the queue into batches of at
most ``batch_max_rows`` rows (``cut_batch``) and writes each in one transaction
(``write_batch``): consecutive rows of one statement share one ``executemany``.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from functools import partial
from typing import Any

from pairwatch.daemon.alert_rows import (
    DELETE_ALERT_STATE,
    INSERT_ALERT_EVENT,
    INSERT_OUTBOX,
    UPSERT_ALERT_STATE,
    Delivery,
    Notification,
    OutboxOffer,
    StoredState,
    delivery_rows,
    event_rows,
    insert_outbox,
    outbox_rows,
    state_rows,
)
from pairwatch.daemon.feed_rows import (
    INSERT_GAPS,
    INSERT_TICKS,
    UPSERT_BARS,
    UPSERT_FEED_STATS,
    UPSERT_SYMBOL_STATE,
    SymbolState,
    bar_rows,
    feed_stats_rows,
    gap_rows,
    symbol_state_rows,
    tick_rows,
)
from pairwatch.daemon.metrics_schema import (
    UPSERT_KALMAN_STATE,
    kalman_state_rows,
    metric_columns,
    pair_snapshot_rows,
    symbol_snapshot_rows,
    upsert_sql,
)
from pairwatch.daemon.retention import purge_rows
from pairwatch.daemon.schema import Row
from pairwatch.daemon.sql_bulk import insert_rows
from pairwatch.events import AlertEvent, Bar


@dataclass(frozen=True, slots=True)
class Statement:
    """A write statement, the writer counter it adds to, and how items become its rows.

    ``deferrable``: its rows may be committed after alert writes queued later (see
    ``cut_batch``). Derived rows nothing waits for: analytics snapshots, Kalman states (each
    names the bar it follows), feed statistics.
    """

    sql: str
    counter: str
    rows: Callable[[Sequence[Any], int], list[Row]]
    deferrable: bool = False


WRITE_BARS = Statement(UPSERT_BARS, "bars_written", bar_rows)
WRITE_BAR_ARRAYS = Statement(UPSERT_BARS, "bars_written", lambda rows, now: list(rows))
"""Bars queued as ready-made ``UPSERT_BARS`` rows (``feed_rows.bar_array_rows``)."""
WRITE_TICKS = Statement(INSERT_TICKS, "ticks_written", tick_rows)
WRITE_GAPS = Statement(INSERT_GAPS, "gaps_written", gap_rows)
WRITE_STATES = Statement(UPSERT_SYMBOL_STATE, "states_written", symbol_state_rows)
WRITE_FEED_STATS = Statement(
    UPSERT_FEED_STATS, "feed_stats_written", feed_stats_rows, deferrable=True
)
WRITE_KALMAN = Statement(
    UPSERT_KALMAN_STATE, "kalman_states_written", kalman_state_rows, deferrable=True
)


def metric_statements() -> tuple[Statement, Statement]:
    """Return the ``analytics`` and ``symbol_analytics`` upserts of the metrics registered now."""
    metrics = metric_columns()
    pair_metrics, symbol_metrics = metrics["analytics"], metrics["symbol_analytics"]
    pairs = Statement(
        upsert_sql("analytics", pair_metrics),
        "analytics_written",
        partial(pair_snapshot_rows, metrics=pair_metrics),
        deferrable=True,
    )
    symbols = Statement(
        upsert_sql("symbol_analytics", symbol_metrics),
        "symbol_analytics_written",
        partial(symbol_snapshot_rows, metrics=symbol_metrics),
        deferrable=True,
    )
    return pairs, symbols


@dataclass(frozen=True, slots=True)
class Rows:
    """Items for one statement; runs of the same statement share one executemany."""

    statement: Statement
    items: Sequence[Any]

    @property
    def size(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class Purge:
    """A retention delete (see ``retention.purge_rows``)."""

    table: str
    before_ts: int
    timeframe: str | None
    size: int = 1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Bars and symbol states that must commit together: never split."""

    bars: Sequence[Bar]
    states: Sequence[SymbolState]

    @property
    def size(self) -> int:
        return len(self.bars) + len(self.states)


@dataclass(frozen=True, slots=True)
class Flush:
    """A marker resolved once everything queued before it is committed."""

    future: Future[None]
    size: int = 0


@dataclass(frozen=True, slots=True)
class AlertWrite:
    """Alert events, their outbox rows and their alerts' states: one transaction, never split.

    ``forget`` lists (rule, target) alerts whose stored state is deleted (rules removed).
    """

    events: Sequence[tuple[AlertEvent, bool]]
    notifications: Sequence[Notification]
    states: Sequence[StoredState]
    forget: Sequence[tuple[str, str]] = ()

    @property
    def size(self) -> int:
        return len(self.events) + len(self.notifications) + len(self.states) + len(self.forget)


@dataclass(frozen=True, slots=True)
class Deliveries:
    """Outcomes of outbox deliveries (delivered, retry later, given up)."""

    items: Sequence[Delivery]

    @property
    def size(self) -> int:
        return len(self.items)


Op = Rows | Purge | Checkpoint | Flush | AlertWrite | Deliveries


def cut_batch(
    queue: collections.deque[Op], limit: int, *, defer: bool = True
) -> tuple[list[Op], bool]:
    """Pop up to ``limit`` rows of ops off ``queue`` (splitting ``Rows``, never others);
    return them and whether deferrable ops were left behind.

    Everything waiting goes in one transaction (a group commit: at a bar close the alert
    writes of many pairs queue up while one is written, and every commit and statement
    costs the writer thread GIL hand-offs with the busy loop). When alert writes are
    waiting, the batch ends with the last of them that fits, since their notifications
    wait for the commit; with ``defer``, the deferrable ops queued before it (analytics
    snapshots, Kalman states, feed statistics, delivery outcomes) stay queued too, in their
    order, for the next batch. Order is kept for everything else: what was queued before
    an alert (its bar) is committed with it or earlier.
    """
    # A flush promises everything queued before it: nothing is deferred past one.
    last = _last_alert(queue, limit, until_flush=True) if defer else None
    if last is not None:
        batch: list[Op] = []
        left: list[Op] = []
        for _ in range(last + 1):
            op = queue.popleft()
            (left if _deferrable(op) else batch).append(op)
        queue.extendleft(reversed(left))
        return batch, bool(left)
    end = _last_alert(queue, limit)
    batch = []
    rows = 0
    while queue and rows < limit and (end is None or len(batch) <= end):
        op = queue[0]
        room = limit - rows
        if op.size <= room:
            queue.popleft()
        elif isinstance(op, Rows):
            queue[0] = Rows(op.statement, op.items[room:])
            op = Rows(op.statement, op.items[:room])
        elif not batch:
            queue.popleft()  # an atomic op larger than a batch goes alone
        else:
            break
        batch.append(op)
        rows += op.size
    return batch, False


def _last_alert(
    queue: collections.deque[Op], limit: int, *, until_flush: bool = False
) -> int | None:
    """Return the index of the last alert write that fits in a batch whole (before the
    first flush, with ``until_flush``), None if none."""
    rows = 0
    last = None
    for i, op in enumerate(queue):
        if until_flush and isinstance(op, Flush):
            break
        rows += op.size
        if rows > limit and i > 0:
            break
        if isinstance(op, AlertWrite):
            last = i
    return last


def _deferrable(op: Op) -> bool:
    return isinstance(op, Deliveries) or (isinstance(op, Rows) and op.statement.deferrable)


def write_batch(
    conn: sqlite3.Connection,
    batch: list[Op],
    clock: Callable[[], int],
    offers: list[OutboxOffer] | None = None,
) -> dict[str, int]:
    """Write one batch in one transaction; return rows changed per counter.

    With ``offers``, the outbox rows the batch's alert writes add are appended to it (valid
    once the transaction is committed).

    Rows, checkpoints and alert writes between two other ops (a purge, delivery outcomes,
    an alert write that forgets states) form a segment, written as one multi-row statement
    per table (``sql_bulk``): the rows of each table keep their order, and the whole batch
    commits at once, so an alert is still never committed without the bar queued before it.
    """
    counts: dict[str, int] = {}
    if all(isinstance(op, Flush) for op in batch):
        return counts
    now = clock()
    runs: dict[tuple[str, str], list[Row]] = {}
    """The segment's rows per (statement, counter), in queue order."""
    alerts: list[AlertWrite] = []

    def add(statement: Statement, items: Sequence[Any]) -> None:
        runs.setdefault((statement.sql, statement.counter), []).extend(statement.rows(items, now))

    def write_segment() -> None:
        for (sql, counter), rows in runs.items():
            counts[counter] = counts.get(counter, 0) + insert_rows(conn, sql, rows)
        runs.clear()
        if alerts:
            merged = AlertWrite(
                [e for a in alerts for e in a.events],
                [n for a in alerts for n in a.notifications],
                [s for a in alerts for s in a.states],
            )
            alerts.clear()
            _write_alerts(conn, merged, now, counts, offers)

    conn.execute("BEGIN IMMEDIATE")
    try:
        for op in batch:
            if isinstance(op, Rows):
                add(op.statement, op.items)
            elif isinstance(op, Checkpoint):
                add(WRITE_BARS, op.bars)
                add(WRITE_STATES, op.states)
            elif isinstance(op, AlertWrite) and not op.forget:
                alerts.append(op)
            elif not isinstance(op, Flush):
                write_segment()  # what was queued before it is written first
                if isinstance(op, AlertWrite):
                    _write_alerts(conn, op, now, counts, offers)
                elif isinstance(op, Deliveries):
                    for sql, rows in delivery_rows(op.items).items():
                        if rows:
                            conn.executemany(sql, rows)
                    counts["deliveries_written"] = counts.get("deliveries_written", 0) + op.size
                elif isinstance(op, Purge):
                    purged = purge_rows(conn, op.table, op.before_ts, op.timeframe)
                    counts["rows_purged"] = counts.get("rows_purged", 0) + purged
        write_segment()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return counts


def _write_alerts(
    conn: sqlite3.Connection,
    op: AlertWrite,
    now: int,
    counts: dict[str, int],
    offers: list[OutboxOffer] | None,
) -> None:
    if op.forget:  # first: a state written below may be a new alert under the same key
        conn.executemany(DELETE_ALERT_STATE, op.forget)
    outbox = [] if offers is not None else outbox_rows(op.notifications, now)
    for sql, rows, counter in (
        (INSERT_ALERT_EVENT, event_rows(op.events, now), "alert_events_written"),
        (INSERT_OUTBOX, outbox, "outbox_written"),
        (UPSERT_ALERT_STATE, state_rows(op.states, now), "alert_states_written"),
    ):
        if rows:
            counts[counter] = counts.get(counter, 0) + insert_rows(conn, sql, rows)
    if offers is not None and op.notifications:
        offer = insert_outbox(conn, op.notifications, now)
        counts["outbox_written"] = counts.get("outbox_written", 0) + len(offer.items)
        offers.append(offer)


def resolve(future: Future[None], error: BaseException | None) -> None:
    """Resolve a flush's future with ``error`` or success, unless its waiter cancelled it."""
    try:
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
    except InvalidStateError:
        pass  # the waiter cancelled it
