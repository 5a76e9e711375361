"""Deliver the outbox: one worker per notifier, at least once, in order, with backoff.

Every notification is in the ``outbox`` table before it is delivered (the alert stage
writes it with its event). A notifier's worker reads its undelivered rows in id order,
delivers them, and queues the outcome through the store writer: delivered (with its
time), retry later (with backoff, or the wait the receiver asked for), or given up (a
permanent error such as a chat that does not exist). A failing notifier only delays its
own rows; the order of a notifier's rows is kept because a row that fails is retried
before the next is tried. After a restart the workers start again from the first
undelivered row, so a notification sent just before a crash may be sent twice: receivers
dedupe on the payload's idempotency key.

Rows written while the daemon runs need not be read back: the store writer hands each
committed transaction's new rows to ``offer()`` with the outbox's id sequence before and
after it (``OutboxOffer``). A worker that has seen every row up to an offer's ``before``
(its last read returned less than a batch, after reading the sequence, or it took the
previous offer) takes the offer's rows as if it had read them; any break in that chain
(a row written by another process, offers dropped) sends it back to reading the table.

A notifier whose transport keeps order (one MQTT connection) may declare a ``window``:
up to that many deliveries are then in flight at once, started in id order and completed
in id order (a burst costs one round trip, not one per row). When one fails for now, the
later ones in flight are not counted even if they arrived: the failed row is retried alone
and they are sent again after it ("go back N"), so the last copy of each row arrives in
order, at the price of duplicates the idempotency key covers. A row refused for good was
never delivered: the rows after it go on as they are. While such a worker waits (idle, or
for its oldest delivery) with room in its window, ``offer()`` starts the offered rows
itself (``outbox_flight.Flight``), in the same turn of the loop as the commit's hand-over.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from pairwatch.daemon.alert_rows import (
    Delivery,
    OutboxItem,
    OutboxOffer,
    load_pending_outbox,
    outbox_sequence,
)
from pairwatch.daemon.store import ReadConnection
from pairwatch.notifiers.outbox_flight import Flight, NotifierCounters, Worker, offered

logger = logging.getLogger(__name__)

BATCH = 100
"""Rows a worker reads at a time."""

IDLE_RECHECK_S = 5.0
"""An idle worker reads the outbox again this often even without a wake-up (a safety net)."""

MAX_OFFERS = 1000
"""Offers a busy worker keeps; beyond, they are dropped and it reads the table instead."""

Progress = Callable[[Mapping[str, NotifierCounters]], bool]
"""A condition on the notifiers' counters (``Dispatcher.wait_until``)."""

_MAX_EXPONENT = 30
RETRY_AFTER_CAP_S = 86_400.0
"""Longest ``retry_after`` a peer can make a row wait (a day; more is taken as a day)."""


class DeliveryError(Exception):
    """A delivery that did not happen: retried later unless ``permanent``.

    ``retry_after`` (seconds) is the receiver's own wait (e.g. Telegram's 429), used
    instead of the backoff when given.
    """

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Notifier(Protocol):
    """Something that delivers outbox rows: the log, Telegram, MQTT, a webhook.

    It may also have an ``int`` attribute ``window``: deliveries it takes in flight at
    once, in order (module docstring); 1 when absent.
    """

    name: str

    async def deliver(self, item: OutboxItem) -> None:
        """Deliver one notification; raise ``DeliveryError`` when it did not happen."""


class DeliveryWriter(Protocol):
    def put_deliveries(self, deliveries: Sequence[Delivery]) -> None: ...


class Dispatcher:
    """Run one delivery worker per notifier over the outbox of the store at ``db_path``."""

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        db_path: Path,
        writer: DeliveryWriter,
        *,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._workers = {n.name: Worker(n, ReadConnection(db_path)) for n in notifiers}
        self._db_path = db_path
        self._writer = writer
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._clock = clock or (lambda: time.time_ns() // 1_000_000)
        self._waiters: list[tuple[Progress, asyncio.Future[None]]] = []
        """``wait_until``'s predicates and futures, checked after every outcome."""

    @property
    def names(self) -> list[str]:
        """Return the names of the notifiers delivered to."""
        return list(self._workers)

    def offer(self, offer: OutboxOffer) -> None:
        """Take the rows a committed transaction added (call on the loop, in commit order)."""
        for name, worker in self._workers.items():
            offers = worker.offers
            mine = tuple(item for item in offer.items if item.notifier == name)
            last = offers[-1] if offers else None
            if not mine and last is not None and not last.items and last.after == offer.before:
                offers[-1] = OutboxOffer(last.before, offer.after, ())  # nothing for it: merged
                continue
            if len(offers) >= MAX_OFFERS:
                offers.clear()
                worker.must_read = True
            offers.append(OutboxOffer(offer.before, offer.after, mine))
            if mine:
                worker.wake.set()
                if worker.flight is not None:  # waiting with room: start the rows now
                    worker.flight.take()

    def kick(self) -> None:
        """Make the workers read the table: rows were committed (call on the loop)."""
        for worker in self._workers.values():
            worker.must_read = True
            worker.wake.set()

    async def wait_until(self, predicate: Progress) -> None:
        """Wait until ``predicate(counters)`` holds (checked after every outcome)."""
        if predicate(self.counters()):
            return
        waiter = (predicate, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter[1]
        finally:
            self._waiters.remove(waiter)

    def counters(self) -> Mapping[str, NotifierCounters]:
        """Return each notifier's delivery counters."""
        return {name: w.counters for name, w in self._workers.items()}

    async def run(self) -> None:
        """Deliver until cancelled; a worker that fails unexpectedly is restarted."""
        tasks = [
            asyncio.create_task(self._supervise(w), name=f"notify-{name}")
            for name, w in self._workers.items()
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for worker in self._workers.values():
                # Waits for a read still running in its worker thread, then closes.
                await asyncio.to_thread(worker.reader.close)

    async def _supervise(self, worker: Worker) -> None:
        while True:
            try:
                await self._work(worker)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("the %s delivery worker failed; restarting it in 1 s",
                                 worker.notifier.name)  # fmt: skip
                await asyncio.sleep(1.0)

    async def _work(self, worker: Worker) -> None:
        name = worker.notifier.name
        window = max(int(getattr(worker.notifier, "window", 1)), 1)
        cursor = 0  # the id of the last row delivered or given up: never read again
        horizon: int | None = None  # every row up to this id is seen (None: not known)
        while True:
            worker.wake.clear()
            items, horizon = offered(worker, cursor, horizon)
            if items is None:
                horizon, items = await asyncio.to_thread(self._read, worker, cursor)
            if not items:
                idle = Flight(worker, window, self._clock, newest=cursor, horizon=horizon)
                timed_out = await self._idle(worker, idle if window > 1 else None)
                horizon = idle.horizon  # offers it took moved it (or sent it back to a read)
                if idle.flying or idle.waiting:
                    cursor, horizon = await self._pipeline(worker, idle)
                elif timed_out:
                    horizon = None  # the safety net: read the table again
                continue
            worker.counters.backlog = len(items)
            if window > 1:
                flight = Flight(
                    worker, window, self._clock, newest=cursor, horizon=horizon, items=items
                )
                cursor, horizon = await self._pipeline(worker, flight)
            else:
                for item in items:
                    await self._deliver(worker, item)
                    cursor = item.id
                    worker.counters.backlog -= 1
            logger.debug("%s: delivered up to outbox id %d", name, cursor)

    @staticmethod
    async def _idle(worker: Worker, flight: Flight | None) -> bool:
        """Wait for a wake-up, ``flight`` open to offers meanwhile; return whether the wait
        timed out."""
        worker.flight = flight
        try:  # not wait_for: on 3.11 it can lose a cancel that races the wake-up
            async with asyncio.timeout(IDLE_RECHECK_S):
                await worker.wake.wait()
        except TimeoutError:
            return True
        except BaseException:
            if flight is not None:  # stopping: what offers started is sent again next time
                await asyncio.gather(*flight.cancel(), return_exceptions=True)
            raise
        finally:
            worker.flight = None
        return False

    async def _pipeline(self, worker: Worker, flight: Flight) -> tuple[int, int | None]:
        """Deliver ``flight``'s rows with up to its window in flight; return the last id done
        and the horizon (None: read the table next).

        While the oldest delivery is awaited, rows offered join the flight as they come
        (``Dispatcher.offer`` starts them): a row committed during a burst waits neither for
        the burst's last acknowledgement nor for this task to be scheduled.
        """
        counters = worker.counters
        waiting, flying = flight.waiting, flight.flying
        cursor = 0
        try:
            while waiting or flying:
                flight.launch()
                if not flying:  # the next row waits or cannot be read: alone, as usual
                    item = waiting.popleft()
                    await self._deliver(worker, item)
                    cursor = item.id
                    counters.backlog = len(waiting)
                    continue
                item, task = flying[0]
                worker.flight = flight
                try:
                    flight.take()  # what was offered while this task was busy
                    failure = await _outcome(task)
                finally:
                    worker.flight = None
                flying.popleft()
                if failure is None:
                    self._delivered(worker, item, item.attempts + 1)
                elif isinstance(failure, DeliveryError) and failure.permanent:
                    self._failed(worker, item, item.attempts + 1, failure)
                    # Never sent: the rows after it are still in order.
                else:
                    # Go back N: what is still in flight is sent again after this row.
                    await asyncio.gather(*(t for _, t in flying), return_exceptions=True)
                    waiting.extendleft(reversed([i for i, _ in flying]))
                    flying.clear()
                    due = self._failed(worker, item, item.attempts + 1, failure)
                    if due is not None:
                        await self._deliver(worker, item, attempts=item.attempts + 1, due=due)
                cursor = item.id  # rows complete in order: all up to it are done
                counters.backlog = len(waiting) + len(flying)
        finally:
            await asyncio.gather(*flight.cancel(), return_exceptions=True)
        return cursor, flight.horizon

    def _read(self, worker: Worker, after_id: int) -> tuple[int | None, list[OutboxItem]]:
        """Return the horizon and up to ``BATCH`` undelivered rows after ``after_id``."""
        name = worker.notifier.name

        def read(conn: sqlite3.Connection) -> tuple[int | None, list[OutboxItem]]:
            seen = outbox_sequence(conn)  # first: the rows read then include every row to it
            items = load_pending_outbox(conn, name, after_id, BATCH)
            return (seen if len(items) < BATCH else None), items

        return worker.reader.read(read)

    async def _deliver(
        self, worker: Worker, item: OutboxItem, *, attempts: int | None = None,
        due: int | None = None,
    ) -> None:  # fmt: skip
        """Deliver ``item``, retrying until it is delivered or permanently refused.

        ``attempts`` and ``due`` continue after attempts already made (default: the row's).
        """
        attempts = item.attempts if attempts is None else attempts
        if item.error is not None:  # unreadable: it can never be delivered
            worker.counters.failed += 1
            logger.error("%s: gave up outbox id %d: %s", worker.notifier.name, item.id, item.error)
            self._record(Delivery(item.id, "failed", self._clock(), attempts, error=item.error))
            return
        next_due: int | None = item.next_attempt_at if due is None else due
        while next_due is not None:
            wait = (next_due - self._clock()) / 1000
            if wait > 0:
                await asyncio.sleep(wait)
            attempts += 1
            try:
                await worker.notifier.deliver(item)
            except asyncio.CancelledError as exc:
                if _being_cancelled():
                    raise  # shutting down: the row stays undelivered, for the next start
                next_due = self._failed(worker, item, attempts, DeliveryError(f"cancelled: {exc}"))
                continue  # the notifier cancelled something of its own: a failure
            except Exception as exc:
                next_due = self._failed(worker, item, attempts, exc)
                continue
            self._delivered(worker, item, attempts)
            return

    def _delivered(self, worker: Worker, item: OutboxItem, attempts: int) -> None:
        worker.counters.delivered += 1
        self._record(Delivery(item.id, "delivered", self._clock(), attempts))

    def _failed(
        self, worker: Worker, item: OutboxItem, attempts: int, exc: Exception
    ) -> int | None:
        """Record a failed attempt; return when to try again, None when given up."""
        name, counters = worker.notifier.name, worker.counters
        permanent = isinstance(exc, DeliveryError) and exc.permanent
        error = f"{type(exc).__name__}: {exc}"
        counters.last_error = error
        now = self._clock()
        if permanent:
            counters.failed += 1
            logger.error(
                "%s: gave up notification %s after %d attempts: %s", name, item.key, attempts, error
            )
            self._record(Delivery(item.id, "failed", now, attempts, error=error))
            return None
        delay = self._backoff(attempts, exc)
        counters.retried += 1
        level = logging.WARNING if attempts == 1 else logging.INFO
        bug = not isinstance(exc, DeliveryError)  # a bug in the notifier: show the traceback
        logger.log(
            logging.ERROR if bug else level,
            "%s: delivery of %s failed (attempt %d), retrying in %.1f s: %s",
            name, item.key, attempts, delay, error, exc_info=exc if bug else None,
        )  # fmt: skip
        due = now + int(delay * 1000)
        self._record(Delivery(item.id, "retry", now, attempts, next_attempt_at=due, error=error))
        return due

    def _record(self, delivery: Delivery) -> None:
        """Queue an outcome; a closed writer (shutting down) means it is redone next start."""
        try:
            self._writer.put_deliveries([delivery])
        except Exception as exc:
            logger.warning("could not record the outcome of outbox id %d: %s", delivery.id, exc)
        if self._waiters:
            self._progress()

    def _progress(self) -> None:
        """Wake the waiters whose predicate now holds (a failing predicate fails its own)."""
        counters = self.counters()
        for predicate, future in self._waiters:
            if future.done():
                continue
            try:
                if predicate(counters):
                    future.set_result(None)
            except Exception as exc:
                future.set_exception(exc)

    def _backoff(self, attempts: int, exc: Exception) -> float:
        if isinstance(exc, DeliveryError) and exc.retry_after is not None:
            wait = exc.retry_after
            if math.isfinite(wait):
                # The peer's own wait (Telegram's 429 retry_after) is honoured in full even
                # past retry_max: sending sooner only earns another refusal.
                return min(max(wait, 0.0), RETRY_AFTER_CAP_S)
        exponent = min(max(attempts - 1, 0), _MAX_EXPONENT)
        return float(min(self._retry_initial * 2.0**exponent, self._retry_max))


async def _outcome(task: asyncio.Task[None]) -> Exception | None:
    """Wait for a delivery in flight; return its error, None when it was delivered."""
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if _being_cancelled():
            raise  # the worker itself is cancelled: the caller cancels the delivery
        return DeliveryError("the delivery was cancelled")
    except Exception as exc:
        return exc
    return None


def _being_cancelled() -> bool:
    """Return whether the running task was asked to stop (not just saw a CancelledError)."""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0
