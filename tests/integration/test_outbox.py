"""Outbox delivery against a real SQLite file and the real writer: at least once, in order.

A scripted notifier (the seam) fails as told; the rows, their attempts and delivery
times are read back from the database.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pairwatch.daemon.alert_rows import (
    Notification,
    OutboxItem,
    OutboxOffer,
    alert_event_payload,
    event_from_payload,
    load_pending_outbox,
)
from pairwatch.daemon.store import open_store
from pairwatch.daemon.writer import Writer
from pairwatch.events import AlertEvent
from pairwatch.notifiers.outbox import DeliveryError, Dispatcher

T0 = 1_700_000_000_000


class Scripted:
    """A notifier that fails the first ``failures[key]`` attempts of each key, as told."""

    def __init__(self, name: str = "test", failures: dict[str, list[DeliveryError]] | None = None):
        self.name = name
        self.failures = failures or {}
        self.attempts: list[str] = []
        self.delivered: list[str] = []
        self.done = asyncio.Event()
        self.expected = 0

    async def deliver(self, item: OutboxItem) -> None:
        self.attempts.append(item.key)
        queue = self.failures.get(item.key)
        if queue:
            raise queue.pop(0)
        self.delivered.append(item.key)
        if len(self.delivered) >= self.expected:
            self.done.set()


def event(n: int, kind: str = "firing") -> AlertEvent:
    return AlertEvent(
        rule="z", target="ETHUSDT/BTCUSDT", timeframe="1m", window=30, kind=kind,
        at=T0 + n * 60_000, severity="warning", metric="zscore", value=2.0 + n / 10,
        threshold=2.0, message=f"z #{n}", values={"zscore": 2.0 + n / 10, "hedge_ratio": math.nan},
        labels={"desk": "crypto"}, notify=True,
    )  # fmt: skip


def note(n: int, notifier: str = "test") -> Notification:
    e = event(n)
    return Notification(e.key, notifier, {}, alert_event_payload(e))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "pairwatch.db"


@pytest.fixture
def writer(db: Path) -> Iterator[Writer]:
    w = Writer(db)
    w.start()
    yield w
    w.close(10)


def rows(db: Path) -> list[tuple[object, ...]]:
    conn = open_store(db, readonly=True)
    try:
        return conn.execute(
            "SELECT key, notifier, attempts, delivered_at IS NOT NULL, failed_at IS NOT NULL, "
            "last_error FROM outbox ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def store(writer: Writer, notes: list[Notification]) -> None:
    writer.put_alerts([], notes)
    writer.flush().result(10)


async def run_until(
    dispatcher: Dispatcher,
    done: asyncio.Event,
    writer: Writer,
    outcomes: int | None = None,
) -> None:
    """Run ``dispatcher`` until ``done`` is set and (given) it recorded ``outcomes``."""
    task = asyncio.create_task(dispatcher.run())
    dispatcher.kick()
    try:
        await asyncio.wait_for(done.wait(), 20)
        if outcomes is not None:
            settled = dispatcher.wait_until(
                lambda c: sum(w.delivered + w.failed for w in c.values()) >= outcomes
            )
            await asyncio.wait_for(settled, 20)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await asyncio.wrap_future(writer.flush())


def test_the_payload_round_trips_to_the_event_with_nan_as_null() -> None:
    e = event(3)
    payload = alert_event_payload(e)
    assert payload["event"]["values"] == {"zscore": 2.3}  # NaN is not JSON: left out
    assert payload["event"]["key"] == e.key
    back = event_from_payload(payload)
    assert back.key == e.key
    assert back.values == {"zscore": 2.3}
    assert (back.value, back.threshold, back.labels) == (e.value, e.threshold, e.labels)


async def test_rows_are_delivered_in_order_and_marked_with_their_time(
    db: Path, writer: Writer
) -> None:
    store(writer, [note(n) for n in range(5)])
    notifier = Scripted()
    notifier.expected = 5
    await run_until(Dispatcher([notifier], db, writer), notifier.done, writer)
    assert notifier.delivered == [event(n).key for n in range(5)]
    assert [(r[2], r[3], r[4]) for r in rows(db)] == [(1, 1, 0)] * 5
    conn = open_store(db, readonly=True)
    assert load_pending_outbox(conn, "test") == []
    conn.close()


async def test_a_failing_row_is_retried_with_backoff_before_later_rows(
    db: Path, writer: Writer
) -> None:
    first, second = event(0).key, event(1).key
    notifier = Scripted(
        failures={first: [DeliveryError("503"), DeliveryError("timeout", retry_after=0.05)]}
    )
    notifier.expected = 2
    store(writer, [note(0), note(1)])
    dispatcher = Dispatcher([notifier], db, writer, retry_initial=0.01, retry_max=0.02)
    await run_until(dispatcher, notifier.done, writer)
    assert notifier.attempts == [first, first, first, second]  # the order is kept
    assert [(r[0], r[2], r[3]) for r in rows(db)] == [(first, 3, 1), (second, 1, 1)]
    assert dispatcher.counters()["test"].retried == 2


async def test_a_permanent_refusal_is_given_up_and_the_next_row_goes_on(
    db: Path, writer: Writer
) -> None:
    first = event(0).key
    notifier = Scripted(failures={first: [DeliveryError("chat not found", permanent=True)]})
    notifier.expected = 1
    store(writer, [note(0), note(1)])
    await run_until(Dispatcher([notifier], db, writer), notifier.done, writer)
    assert [(r[2], r[3], r[4], r[5]) for r in rows(db)] == [
        (1, 0, 1, "DeliveryError: chat not found"),
        (1, 1, 0, None),
    ]


async def test_one_failing_notifier_does_not_delay_another(db: Path, writer: Writer) -> None:
    stuck = Scripted("stuck", failures={event(0).key: [DeliveryError("down")] * 1000})
    fine = Scripted("fine")
    fine.expected = 2
    store(writer, [note(0, "stuck"), note(0, "fine"), note(1, "fine")])
    dispatcher = Dispatcher([stuck, fine], db, writer, retry_initial=0.01, retry_max=0.01)
    await run_until(dispatcher, fine.done, writer)
    assert fine.delivered == [event(0).key, event(1).key]
    assert stuck.delivered == []


async def test_undelivered_rows_resume_after_a_restart_and_duplicates_are_not_stored(
    db: Path,
) -> None:
    writer = Writer(db)
    writer.start()
    store(writer, [note(0), note(1)])
    store(writer, [note(1)])  # the same key and route again: ignored
    gate = asyncio.Event()

    class Hanging(Scripted):
        async def deliver(self, item: OutboxItem) -> None:
            await super().deliver(item)
            gate.set()
            await asyncio.Event().wait()  # never returns: the daemon is killed meanwhile

    hanging = Hanging()
    task = asyncio.create_task(Dispatcher([hanging], db, writer).run())
    await asyncio.wait_for(gate.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    writer.close(10)
    assert len(rows(db)) == 2
    assert [r[3] for r in rows(db)] == [0, 0]  # sent (maybe) but never marked: redone

    writer = Writer(db)
    writer.start()
    again = Scripted()
    again.expected = 2
    await run_until(Dispatcher([again], db, writer), again.done, writer)
    writer.close(10)
    assert again.delivered == [event(0).key, event(1).key]  # at least once: key 0 twice in all
    assert [r[3] for r in rows(db)] == [1, 1]


def test_the_backoff_is_capped_for_ever_and_odd_waits_fall_back_to_it(db: Path) -> None:
    dispatcher = Dispatcher([], db, writer=None, retry_initial=1.0, retry_max=300.0)  # type: ignore[arg-type]
    assert [dispatcher._backoff(n, DeliveryError("x")) for n in (1, 2, 3, 10)] == [
        1.0,
        2.0,
        4.0,
        300.0,
    ]
    assert dispatcher._backoff(5_000, DeliveryError("x")) == 300.0  # no overflow after days
    assert dispatcher._backoff(1, DeliveryError("x", retry_after=math.nan)) == 1.0
    assert dispatcher._backoff(1, DeliveryError("x", retry_after=7.5)) == 7.5
    # A peer's retry_after is honoured in full, past retry_max (up to a day).
    assert dispatcher._backoff(1, DeliveryError("x", retry_after=900.0)) == 900.0
    assert dispatcher._backoff(1, DeliveryError("x", retry_after=1e9)) == 86_400.0


async def test_an_unreadable_row_is_given_up_and_the_next_goes_on(db: Path, writer: Writer) -> None:
    store(writer, [note(0)])
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO outbox (key, notifier, route, payload, created_at, next_attempt_at) "
            "VALUES ('broken', 'test', '{}', '{not json', 1, 1)"
        )
    conn.close()
    store(writer, [note(1)])
    notifier = Scripted()
    notifier.expected = 2
    await run_until(Dispatcher([notifier], db, writer), notifier.done, writer)
    assert notifier.delivered == [event(0).key, event(1).key]
    assert [(r[0], r[3], r[4]) for r in rows(db)] == [
        (event(0).key, 1, 0),
        ("broken", 0, 1),
        (event(1).key, 1, 0),
    ]


async def test_rows_written_after_retention_emptied_the_outbox_are_still_delivered(
    db: Path, writer: Writer
) -> None:
    notifier = Scripted()
    dispatcher = Dispatcher([notifier], db, writer)
    task = asyncio.create_task(dispatcher.run())
    try:
        store(writer, [note(0), note(1)])
        dispatcher.kick()
        await asyncio.wait_for(dispatcher.wait_until(lambda c: c["test"].delivered == 2), 10)
        await asyncio.wrap_future(writer.flush())
        writer.purge("outbox", T0 * 10)  # every delivered row, the newest one too
        await asyncio.wrap_future(writer.flush())
        assert rows(db) == []
        store(writer, [note(2)])  # its id must not be one the worker has read past
        dispatcher.kick()
        await asyncio.wait_for(dispatcher.wait_until(lambda c: c["test"].delivered == 3), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert notifier.delivered == [event(n).key for n in range(3)]


class Windowed(Scripted):
    """A notifier with ``window`` deliveries in flight; each waits until released."""

    def __init__(self, window: int, failures: dict[str, list[DeliveryError]] | None = None):
        super().__init__(failures=failures)
        self.window = window
        self.in_flight = 0
        self.most_in_flight = 0
        self.starts: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.started = asyncio.Condition()

    async def deliver(self, item: OutboxItem) -> None:
        self.starts.append(item.key)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        gate = self.gates.setdefault(item.key, asyncio.Event())
        async with self.started:
            self.started.notify_all()
        try:
            await gate.wait()
            gate.clear()  # a second attempt waits to be released again
            await super().deliver(item)
        finally:
            self.in_flight -= 1

    async def release(self, n: int) -> None:
        """Let the delivery of ``event(n)`` finish, once it has started."""
        key = event(n).key
        async with self.started:
            await self.started.wait_for(lambda: key in self.gates)
        self.gates[key].set()


async def test_a_window_keeps_deliveries_in_flight_and_records_them_in_id_order(
    db: Path, writer: Writer
) -> None:
    store(writer, [note(n) for n in range(10)])
    notifier = Windowed(4)
    dispatcher = Dispatcher([notifier], db, writer)
    task = asyncio.create_task(dispatcher.run())
    try:
        async with notifier.started:  # four start at once, before any is released
            await asyncio.wait_for(notifier.started.wait_for(lambda: notifier.in_flight == 4), 10)
        assert sorted(notifier.gates) == sorted(event(n).key for n in range(4))
        for n in (2, 1, 3, 0, *range(4, 10)):  # finished out of order at first
            await notifier.release(n)
        await asyncio.wait_for(dispatcher.wait_until(lambda c: c["test"].delivered == 10), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await asyncio.wrap_future(writer.flush())
    assert notifier.most_in_flight == 4
    assert notifier.starts == [event(n).key for n in range(10)]  # started in id order
    assert notifier.delivered[:4] == [event(n).key for n in (2, 1, 3, 0)]
    assert [(r[0], r[2], r[3]) for r in rows(db)] == [(event(n).key, 1, 1) for n in range(10)]
    assert dispatcher.counters()["test"].backlog == 0


async def test_a_failure_in_a_window_retries_that_row_then_sends_the_later_ones_again(
    db: Path, writer: Writer
) -> None:
    keys = [event(n).key for n in range(4)]
    notifier = Windowed(4, failures={keys[1]: [DeliveryError("broker gone")]})
    for key in keys:  # every attempt finishes at once
        notifier.gates[key] = _Open()
    notifier.expected = 6  # 0, 2, 3 arrive in the first flight; then 1 and again 2, 3
    store(writer, [note(n) for n in range(4)])
    dispatcher = Dispatcher([notifier], db, writer, retry_initial=0.01, retry_max=0.01)
    await run_until(dispatcher, notifier.done, writer, outcomes=4)
    assert notifier.starts == [keys[0], keys[1], keys[2], keys[3], keys[1], keys[2], keys[3]]
    assert notifier.delivered[-3:] == [keys[1], keys[2], keys[3]]  # the last word in order
    assert [(r[0], r[2], r[3]) for r in rows(db)] == [
        (keys[0], 1, 1), (keys[1], 2, 1), (keys[2], 1, 1), (keys[3], 1, 1),
    ]  # fmt: skip
    assert dispatcher.counters()["test"].retried == 1


async def test_a_permanent_refusal_in_a_window_is_given_up_and_the_rest_not_sent_again(
    db: Path, writer: Writer
) -> None:
    keys = [event(n).key for n in range(3)]
    notifier = Windowed(8, failures={keys[0]: [DeliveryError("no such topic", permanent=True)]})
    for key in keys:
        notifier.gates[key] = _Open()
    notifier.expected = 2
    store(writer, [note(n) for n in range(3)])
    await run_until(Dispatcher([notifier], db, writer), notifier.done, writer, outcomes=3)
    assert notifier.starts == keys  # row 0 was never sent: no need to go back for 1 and 2
    assert notifier.delivered == keys[1:]
    assert [(r[2], r[3], r[4]) for r in rows(db)] == [(1, 0, 1), (1, 1, 0), (1, 1, 0)]


class Signalling(Dispatcher):
    """A dispatcher that says when a worker's read of the table returned."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.read_done = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def _read(self, worker, after_id):  # type: ignore[no-untyped-def]
        result = super()._read(worker, after_id)
        self._loop.call_soon_threadsafe(self.read_done.set)
        return result


@pytest.mark.parametrize("turns", range(6))
async def test_a_stop_racing_a_wake_up_still_stops_the_workers(
    db: Path, writer: Writer, turns: int
) -> None:
    # Python 3.11's wait_for could swallow a cancel arriving as the idle wait ended.
    notifier = Scripted()
    dispatcher = Signalling([notifier], db, writer)
    task = asyncio.create_task(dispatcher.run())
    await asyncio.wait_for(dispatcher.read_done.wait(), 10)
    for _ in range(3):
        await asyncio.sleep(0)  # the worker goes from its read to its idle wait
    item = OutboxItem(1, "k", "test", {}, {"type": "notice"}, 0, 0, 0)
    dispatcher.offer(OutboxOffer(0, 1, (item,)))
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=10)
    assert done == {task}
    assert task.cancelled()


async def test_a_notifier_cancelling_its_own_work_is_a_failed_attempt_not_a_stop(
    db: Path, writer: Writer
) -> None:
    class SelfCancelling(Scripted):
        async def deliver(self, item: OutboxItem) -> None:
            if len(self.attempts) < 1:
                self.attempts.append(item.key)
                raise asyncio.CancelledError  # e.g. a library cancelling its own request
            await super().deliver(item)

    notifier = SelfCancelling()
    notifier.expected = 1
    store(writer, [note(0)])
    dispatcher = Dispatcher([notifier], db, writer, retry_initial=0.01, retry_max=0.01)
    await run_until(dispatcher, notifier.done, writer)
    assert notifier.delivered == [event(0).key]
    assert [(r[2], r[3]) for r in rows(db)] == [(2, 1)]
    assert dispatcher.counters()["test"].retried == 1


class _Open(asyncio.Event):
    """A gate that is always open."""

    def __init__(self) -> None:
        super().__init__()
        self.set()

    def clear(self) -> None:
        pass


class Counting(Dispatcher):
    """A dispatcher that counts its reads of the outbox table."""

    reads = 0

    def _read(self, worker, after_id):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super()._read(worker, after_id)


def offers_to(dispatcher: Dispatcher, writer: Writer) -> None:
    """Wire the writer's committed rows to the dispatcher, as the daemon does."""
    loop = asyncio.get_running_loop()
    writer.on_outbox = lambda offer: loop.call_soon_threadsafe(dispatcher.offer, offer)


async def test_rows_committed_while_running_are_delivered_without_reading_them_back(
    db: Path, writer: Writer
) -> None:
    notifier = Scripted()
    other = Scripted("other")
    dispatcher = Counting([notifier, other], db, writer)
    offers_to(dispatcher, writer)
    store(writer, [note(0), note(0, "other")])
    task = asyncio.create_task(dispatcher.run())
    try:
        # Both workers delivered their first row: each read the table once, at its start.
        await asyncio.wait_for(
            dispatcher.wait_until(lambda c: c["test"].delivered == 1 and c["other"].delivered == 1),
            10,
        )
        assert dispatcher.reads == 2
        for n in range(1, 6):
            writer.put_alerts([], [note(n), note(n, "other")] if n % 2 else [note(n)])
            await asyncio.wrap_future(writer.flush())
        await asyncio.wait_for(
            dispatcher.wait_until(lambda c: c["test"].delivered == 6 and c["other"].delivered == 4),
            10,
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert dispatcher.reads == 2  # rows 1-5 came with their commits: not read back
    assert notifier.delivered == [event(n).key for n in range(6)]
    assert other.delivered == [event(n).key for n in (0, 1, 3, 5)]
    await asyncio.wrap_future(writer.flush())
    assert {r[3] for r in rows(db)} == {1}


async def test_a_row_committed_during_a_windows_flight_starts_before_the_flight_lands(
    db: Path, writer: Writer
) -> None:
    notifier = Windowed(4)
    dispatcher = Counting([notifier], db, writer)
    offers_to(dispatcher, writer)
    task = asyncio.create_task(dispatcher.run())
    try:
        writer.put_alerts([], [note(0)])
        await asyncio.wrap_future(writer.flush())
        async with notifier.started:
            await asyncio.wait_for(notifier.started.wait_for(lambda: notifier.in_flight == 1), 10)
        writer.put_alerts([], [note(1)])  # while row 0 waits for its acknowledgement
        await asyncio.wrap_future(writer.flush())
        async with notifier.started:
            await asyncio.wait_for(notifier.started.wait_for(lambda: notifier.in_flight == 2), 10)
        assert notifier.starts == [event(0).key, event(1).key]
        assert notifier.delivered == []  # row 0 is still in flight
        for n in (1, 0):
            await notifier.release(n)
        await asyncio.wait_for(dispatcher.wait_until(lambda c: c["test"].delivered == 2), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert notifier.delivered == [event(1).key, event(0).key]  # as released
    assert dispatcher.reads == 1  # row 1 came with its commit
    await asyncio.wrap_future(writer.flush())
    assert [(r[0], r[2], r[3]) for r in rows(db)] == [(event(n).key, 1, 1) for n in range(2)]


class Idling(Dispatcher):
    """A dispatcher that says when a worker waits idle for a wake-up."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.idle = asyncio.Event()

    async def _idle(self, worker, flight):  # type: ignore[no-untyped-def]
        self.idle.set()
        return await super()._idle(worker, flight)


def offered_item(row: int) -> OutboxItem:
    return OutboxItem(row, f"k{row}", "test", {}, {"type": "notice"}, 0, 0, 0)


@pytest.mark.parametrize("state", ["idle", "in flight"])
async def test_an_offered_row_starts_in_the_offers_own_turn_of_the_loop(
    db: Path, writer: Writer, state: str
) -> None:
    # Each wake-up of the worker's task is a turn of a busy loop at a bar close: the
    # offer starts the delivery itself, so the next turn runs it.
    notifier = Windowed(4)
    dispatcher = Idling([notifier], db, writer)
    if state == "in flight":
        store(writer, [note(0)])  # row 1, read at the start and held in flight
    task = asyncio.create_task(dispatcher.run())
    try:
        if state == "idle":
            await asyncio.wait_for(dispatcher.idle.wait(), 10)  # the empty table was read
            before: list[str] = []
        else:
            async with notifier.started:
                await asyncio.wait_for(notifier.started.wait_for(lambda: notifier.in_flight), 10)
            before = [event(0).key]
        seen = len(before)
        dispatcher.offer(OutboxOffer(seen, seen + 1, (offered_item(seen + 1),)))
        await asyncio.sleep(0)  # one turn of the loop
        assert notifier.starts == [*before, f"k{seen + 1}"]
        assert notifier.delivered == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_row_written_behind_the_writers_back_breaks_the_chain_and_is_read(
    db: Path, writer: Writer
) -> None:
    notifier = Scripted()
    dispatcher = Counting([notifier], db, writer)
    offers_to(dispatcher, writer)
    task = asyncio.create_task(dispatcher.run())
    try:
        writer.put_alerts([], [note(0)])
        await asyncio.wrap_future(writer.flush())
        await asyncio.wait_for(dispatcher.wait_until(lambda c: c["test"].delivered == 1), 10)
        reads = dispatcher.reads
        conn = sqlite3.connect(db)  # another process, say: no offer for this row
        with conn:
            conn.execute(
                "INSERT INTO outbox (key, notifier, route, payload, created_at, next_attempt_at) "
                "VALUES ('side', 'test', '{}', '{\"type\":\"notice\"}', 1, 1)"
            )
        conn.close()
        writer.put_alerts([], [note(1)])  # its offer starts after the side row: a gap
        await asyncio.wrap_future(writer.flush())
        await asyncio.wait_for(dispatcher.wait_until(lambda c: c["test"].delivered == 3), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert dispatcher.reads == reads + 1
    assert notifier.delivered == [event(0).key, "side", event(1).key]  # in id order


async def test_too_many_offers_waiting_are_dropped_and_the_rows_read_instead(
    db: Path, writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pairwatch.notifiers import outbox

    monkeypatch.setattr(outbox, "MAX_OFFERS", 3)
    notifier = Windowed(1)
    dispatcher = Counting([notifier], db, writer)
    offers_to(dispatcher, writer)
    task = asyncio.create_task(dispatcher.run())
    try:
        store(writer, [note(0)])
        async with notifier.started:  # row 0 is held in delivery while 5 more are committed
            await asyncio.wait_for(notifier.started.wait_for(lambda: notifier.in_flight == 1), 10)
        for n in range(1, 6):
            store(writer, [note(n)])
        await asyncio.sleep(0)  # the offers' callbacks
        for n in range(6):
            await notifier.release(n)
        await asyncio.wait_for(dispatcher.wait_until(lambda c: c["test"].delivered == 6), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert notifier.delivered == [event(n).key for n in range(6)]
    assert len(dispatcher._workers["test"].offers) <= 3


def test_an_offer_holds_exactly_what_a_worker_would_read_back(db: Path) -> None:
    from pairwatch.daemon.alert_rows import insert_outbox, outbox_sequence

    conn = open_store(db)
    try:
        with conn:
            first = insert_outbox(conn, [note(0), note(1, "other")], T0)
        with conn:
            again = insert_outbox(conn, [note(1, "other"), note(2)], T0 + 1)  # one duplicate
        assert (first.before, first.after) == (0, 2)
        assert again.before == 2
        assert again.after == outbox_sequence(conn) >= 3  # an ignored insert may use an id
        assert [i.key for i in again.items] == [event(2).key]
        read = load_pending_outbox(conn, "test") + load_pending_outbox(conn, "other")
        assert sorted(read, key=lambda i: i.id) == [*first.items, *again.items]
    finally:
        conn.close()


def test_a_payload_shared_by_two_notifiers_is_stored_as_if_encoded_for_each(db: Path) -> None:
    import json

    from pairwatch.daemon.alert_rows import insert_outbox, outbox_rows

    payload = alert_event_payload(event(0))  # one event's payload, routed to two notifiers
    notes = [
        Notification(event(0).key, "test", {}, payload),
        Notification(event(0).key, "other", {"chat": "42", "a": "b"}, payload),
        note(1),
    ]
    rows = outbox_rows(notes, T0)
    assert [r[2:4] for r in rows] == [
        (
            json.dumps(dict(n.route), sort_keys=True, separators=(",", ":")),
            json.dumps(n.payload, separators=(",", ":"), allow_nan=False),
        )
        for n in notes
    ]
    conn = open_store(db)
    try:
        with conn:
            offer = insert_outbox(conn, notes, T0)
        read = load_pending_outbox(conn, "test") + load_pending_outbox(conn, "other")
        assert sorted(read, key=lambda i: i.id) == list(offer.items)
        assert [i.route for i in offer.items] == [{}, {"a": "b", "chat": "42"}, {}]
    finally:
        conn.close()
