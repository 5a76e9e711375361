"""Deliver the outbox: one worker per notifier, at least once, in order, with backoff.

Every notification is in the ``outbox`` table before it is delivered (the alert stage
writes it with its event). A notifier's worker reads its undelivered rows in id order,
delivers one at a time, and queues the outcome through the store writer: delivered (with
its time), retry later (with backoff, or the wait the receiver asked for), or given up
(a permanent error such as a chat that does not exist). A failing notifier only delays
its own rows; the order of a notifier's rows is kept because a row that fails is retried
before the next is tried. After a restart the workers start again from the first
undelivered row, so a notification sent just before a crash may be sent twice: receivers
dedupe on the payload's idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pairwatch.daemon.alert_rows import Delivery, OutboxItem, load_pending_outbox
from pairwatch.daemon.store import ReadConnection

logger = logging.getLogger(__name__)

BATCH = 100
"""Rows a worker reads at a time."""

IDLE_RECHECK_S = 5.0
"""An idle worker reads the outbox again this often even without a wake-up (a safety net)."""

_MAX_EXPONENT = 30


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
    """Something that delivers outbox rows: the log, Telegram, MQTT, a webhook."""

    name: str

    async def deliver(self, item: OutboxItem) -> None:
        """Deliver one notification; raise ``DeliveryError`` when it did not happen."""


class DeliveryWriter(Protocol):
    def put_deliveries(self, deliveries: Sequence[Delivery]) -> None: ...


@dataclass(slots=True)
class NotifierCounters:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    last_error: str | None = None
    backlog: int = 0
    """Rows read and not yet delivered or given up (this worker's current batch)."""


@dataclass(slots=True)
class _Worker:
    notifier: Notifier
    reader: ReadConnection
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    counters: NotifierCounters = field(default_factory=NotifierCounters)


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
        self._workers = {n.name: _Worker(n, ReadConnection(db_path)) for n in notifiers}
        self._db_path = db_path
        self._writer = writer
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._clock = clock or (lambda: time.time_ns() // 1_000_000)
        self._progress = asyncio.Condition()

    @property
    def names(self) -> list[str]:
        """Return the names of the notifiers delivered to."""
        return list(self._workers)

    def kick(self) -> None:
        """Wake the workers: new outbox rows are committed (call on the loop)."""
        for worker in self._workers.values():
            worker.wake.set()

    async def wait_until(self, predicate: Callable[[Mapping[str, NotifierCounters]], bool]) -> None:
        """Wait until ``predicate(counters)`` holds (checked after every outcome)."""
        async with self._progress:
            await self._progress.wait_for(lambda: predicate(self.counters()))

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

    async def _supervise(self, worker: _Worker) -> None:
        while True:
            try:
                await self._work(worker)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("the %s delivery worker failed; restarting it in 1 s",
                                 worker.notifier.name)  # fmt: skip
                await asyncio.sleep(1.0)

    async def _work(self, worker: _Worker) -> None:
        name = worker.notifier.name
        cursor = 0  # the id of the last row delivered or given up: never read again
        while True:
            worker.wake.clear()
            items = await asyncio.to_thread(self._read, worker, cursor)
            if not items:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(worker.wake.wait(), IDLE_RECHECK_S)
                continue
            worker.counters.backlog = len(items)
            for item in items:
                await self._deliver(worker, item)
                cursor = item.id
                worker.counters.backlog -= 1
            logger.debug("%s: delivered up to outbox id %d", name, cursor)

    def _read(self, worker: _Worker, after_id: int) -> list[OutboxItem]:
        name = worker.notifier.name
        return worker.reader.read(lambda conn: load_pending_outbox(conn, name, after_id, BATCH))

    async def _deliver(self, worker: _Worker, item: OutboxItem) -> None:
        """Deliver ``item``, retrying until it is delivered or permanently refused."""
        notifier, counters = worker.notifier, worker.counters
        attempts = item.attempts
        if item.error is not None:  # unreadable: it can never be delivered
            counters.failed += 1
            logger.error("%s: gave up outbox id %d: %s", notifier.name, item.id, item.error)
            self._record(Delivery(item.id, "failed", self._clock(), attempts, error=item.error))
            return
        due = item.next_attempt_at
        while True:
            wait = (due - self._clock()) / 1000
            if wait > 0:
                await asyncio.sleep(wait)
            attempts += 1
            try:
                await notifier.deliver(item)
            except asyncio.CancelledError:
                raise  # shutting down: the row stays undelivered, for the next start
            except Exception as exc:
                permanent = isinstance(exc, DeliveryError) and exc.permanent
                error = f"{type(exc).__name__}: {exc}"
                counters.last_error = error
                now = self._clock()
                if permanent:
                    counters.failed += 1
                    logger.error(
                        "%s: gave up notification %s after %d attempts: %s",
                        notifier.name, item.key, attempts, error,
                    )  # fmt: skip
                    self._record(Delivery(item.id, "failed", now, attempts, error=error))
                    return
                delay = self._backoff(attempts, exc)
                counters.retried += 1
                log = logger.warning if attempts == 1 else logger.info
                if not isinstance(exc, DeliveryError):
                    log = logger.exception  # a bug in the notifier: show the traceback
                log(
                    "%s: delivery of %s failed (attempt %d), retrying in %.1f s: %s",
                    notifier.name, item.key, attempts, delay, error,
                )  # fmt: skip
                due = now + int(delay * 1000)
                self._record(
                    Delivery(item.id, "retry", now, attempts, next_attempt_at=due, error=error)
                )
                continue
            counters.delivered += 1
            self._record(Delivery(item.id, "delivered", self._clock(), attempts))
            return

    def _record(self, delivery: Delivery) -> None:
        """Queue an outcome; a closed writer (shutting down) means it is redone next start."""
        try:
            self._writer.put_deliveries([delivery])
        except Exception as exc:
            logger.warning("could not record the outcome of outbox id %d: %s", delivery.id, exc)
        asyncio.get_running_loop().create_task(self._notify_progress())

    async def _notify_progress(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    def _backoff(self, attempts: int, exc: Exception) -> float:
        if isinstance(exc, DeliveryError) and exc.retry_after is not None:
            wait = exc.retry_after
            if math.isfinite(wait):
                return min(max(wait, 0.0), self._retry_max)
        exponent = min(max(attempts - 1, 0), _MAX_EXPONENT)
        return float(min(self._retry_initial * 2.0**exponent, self._retry_max))
