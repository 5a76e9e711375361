"""A delivery worker's state, the offers it takes, and a windowed notifier's flight.

Split from ``outbox`` (which runs the workers): what an offer hands a worker, and how a
notifier with a ``window`` keeps up to that many deliveries in flight. While a worker
waits — idle, or for the oldest delivery of its flight — its ``Flight`` is open and
``Dispatcher.offer`` starts the offered rows itself: a row committed at a bar close is
handed to its notifier in the same turn of the event loop as the offer, not after the
worker's task has been woken and scheduled (each hop is a full turn of a busy loop).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pairwatch.daemon.alert_rows import OutboxItem, OutboxOffer
from pairwatch.daemon.store import ReadConnection

if TYPE_CHECKING:
    from pairwatch.notifiers.outbox import Notifier


@dataclass(slots=True)
class NotifierCounters:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    last_error: str | None = None
    backlog: int = 0
    """Rows read and not yet delivered or given up (this worker's current batch)."""


@dataclass(slots=True)
class Worker:
    notifier: Notifier
    reader: ReadConnection
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    counters: NotifierCounters = field(default_factory=NotifierCounters)
    offers: collections.deque[OutboxOffer] = field(default_factory=collections.deque)
    """Committed rows handed over (only this notifier's items), oldest first."""
    must_read: bool = False
    """Read the table next (a kick, or offers dropped because too many waited)."""
    flight: Flight | None = None
    """Set while the worker waits with room in its window: offers join it at once."""


def offered(
    worker: Worker, cursor: int, horizon: int | None
) -> tuple[list[OutboxItem] | None, int | None]:
    """Return the offered rows after ``cursor`` and the new horizon; None: read instead."""
    offers = worker.offers
    if worker.must_read or horizon is None:
        worker.must_read = False
        return None, None
    while offers and offers[0].after <= horizon:
        offers.popleft()  # rows a read already saw
    if offers and offers[0].before != horizon:
        return None, None  # rows between what was seen and this offer: read them
    items: list[OutboxItem] = []
    while offers and offers[0].before == horizon:
        offer = offers.popleft()
        items.extend(item for item in offer.items if item.id > cursor)
        horizon = offer.after
    return items, horizon


def may_take(worker: Worker, horizon: int | None) -> bool:
    """Return whether offers can be taken without reading the table first."""
    return horizon is not None and not worker.must_read


class Flight:
    """The deliveries of a windowed notifier: up to ``window`` in flight, started in id
    order, and the rows taken that wait to start."""

    __slots__ = ("_clock", "_window", "_worker", "flying", "horizon", "newest", "waiting")

    def __init__(
        self,
        worker: Worker,
        window: int,
        clock: Callable[[], int],
        *,
        newest: int,
        horizon: int | None,
        items: list[OutboxItem] | None = None,
    ) -> None:
        self._worker = worker
        self._window = window
        self._clock = clock
        self.waiting: collections.deque[OutboxItem] = collections.deque(items or ())
        self.flying: collections.deque[tuple[OutboxItem, asyncio.Task[None]]] = collections.deque()
        self.newest = items[-1].id if items else newest
        """The id of the newest row taken."""
        self.horizon = horizon
        """Every row up to this id is seen (None: read the table next)."""

    def launch(self) -> None:
        """Start the waiting rows, in order, while the window has room and the next row is
        for the fast path (readable and due: others go alone once the flight has landed)."""
        deliver = self._worker.notifier.deliver
        waiting, flying = self.waiting, self.flying
        while waiting and len(flying) < self._window:
            item = waiting[0]
            if item.error is not None or item.next_attempt_at > self._clock():
                return
            waiting.popleft()
            flying.append((item, asyncio.ensure_future(deliver(item))))

    def take(self) -> None:
        """Take the rows offered after the newest taken, and start what has room."""
        worker = self._worker
        if self.waiting or len(self.flying) >= self._window:
            return  # the worker takes them once the flight has room again
        if not may_take(worker, self.horizon):
            return
        more, self.horizon = offered(worker, self.newest, self.horizon)
        if more:
            self.waiting.extend(more)
            self.newest = more[-1].id
            worker.counters.backlog = len(self.waiting) + len(self.flying)
        self.launch()

    def cancel(self) -> list[asyncio.Task[None]]:
        """Cancel the deliveries in flight; return them (to be awaited)."""
        tasks = [task for _, task in self.flying]
        for task in tasks:
            task.cancel()
        return tasks
