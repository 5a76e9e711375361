"""The batching store writer: one thread, one connection, one transaction per batch.

Callers on the event loop only append to a queue under a short lock; the thread
drains everything queued (up to ``batch_max_rows``) and writes it with
``executemany`` in a single transaction. A failed commit never loses the batch:
on ``sqlite3.OperationalError`` (disk full, locked, read-only) the same batch is
retried with capped backoff while new items keep queueing. ``max_size`` caps the
database file (``store.limit_size``): past it, writes fail as on a full disk.

Everything is written in the order it was queued: an alert's state is never stored ahead
of the bar it was evaluated on (a restart would apply that bar to it twice). With
``on_outbox`` set, the outbox rows each committed transaction added are handed to it from
the writer thread (``OutboxOffer``): the delivery workers take them without reading the
table back.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

from pairwatch.analytics.engine import KalmanState
from pairwatch.analytics.resample_kernel import BarArrays
from pairwatch.daemon.alert_rows import Delivery, Notification, OutboxOffer, StoredState
from pairwatch.daemon.feed_rows import FeedStatsRow, SymbolState, bar_array_rows
from pairwatch.daemon.retention import check_purge
from pairwatch.daemon.store import DEFAULT_BUSY_TIMEOUT_MS, limit_size, open_store
from pairwatch.daemon.writer_batch import (
    WRITE_BAR_ARRAYS,
    WRITE_BARS,
    WRITE_FEED_STATS,
    WRITE_GAPS,
    WRITE_KALMAN,
    WRITE_STATES,
    WRITE_TICKS,
    AlertWrite,
    Checkpoint,
    Deliveries,
    Flush,
    Op,
    Purge,
    Rows,
    cut_batch,
    metric_statements,
    resolve,
    write_batch,
)
from pairwatch.errors import StoreError
from pairwatch.events import AlertEvent, Bar, Gap, PairSnapshot, SymbolSnapshot, Trade

__all__ = ["FeedStatsRow", "SymbolState", "Writer"]

logger = logging.getLogger(__name__)

_BACKOFF_MIN_S = 0.1
_BACKOFF_MAX_S = 5.0
_STREAMS = ("trade", "aggTrade")
MAX_DEFER_S = 0.5
"""How long alert writes may keep the derived rows queued before them waiting."""


class Writer:
    """Write bars, ticks, gaps, symbol state, feed stats and analytics from one thread."""

    def __init__(
        self,
        path: Path,
        *,
        batch_max_rows: int = 50_000,
        max_queued_ticks: int = 2_000_000,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        max_size: int | None = None,
        on_connect: Callable[[sqlite3.Connection], None] | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if batch_max_rows < 1:
            raise ValueError(f"batch_max_rows must be >= 1, got {batch_max_rows}")
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be >= 1 byte or None, got {max_size}")
        self._path = Path(path)
        self._batch_max_rows = batch_max_rows
        self._max_queued_ticks = max_queued_ticks
        self._busy_timeout_ms = busy_timeout_ms
        self._max_size = max_size
        self._on_connect = on_connect
        self._clock = clock or (lambda: time.time_ns() // 1_000_000)
        # Built from the metric tuples of now: the store adds their columns when it opens.
        self._pairs, self._symbols = metric_statements()
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[Op] = collections.deque()
        self._queued_rows = 0
        self._queued_ticks = 0
        self._closed = False
        self._stopping = False
        self._abort = False
        self._held: collections.deque[list[Op]] = collections.deque()
        """Batches taken from the queue and not yet committed, oldest first."""
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._healthy = True
        self._logged_errors: set[str] = set()
        self._failing_since: float | None = None
        self._failing_since_ms: int | None = None
        self._dropping_ticks = False
        self._deferring_since: float | None = None
        """Since when (monotonic) batches have left deferrable ops behind (``cut_batch``)."""
        # Counters: written by the writer thread only, read from anywhere.
        self.bars_written = 0
        self.ticks_written = 0
        self.gaps_written = 0
        self.states_written = 0
        self.feed_stats_written = 0
        self.analytics_written = 0
        self.symbol_analytics_written = 0
        self.kalman_states_written = 0
        self.alert_events_written = 0
        self.outbox_written = 0
        self.alert_states_written = 0
        self.deliveries_written = 0
        self.rows_purged = 0
        self.transactions = 0
        self.errors = 0
        self.rows_dropped = 0
        """Rows of batches that failed with a non-retryable error (a bug or a bad value)."""
        self.ticks_dropped = 0
        """Ticks refused because ``max_queued_ticks`` were already waiting."""
        self.last_error: str | None = None
        """The most recent write error; kept after recovery (see ``healthy``)."""
        self.last_commit_at: int | None = None
        """Epoch ms of the last successful commit."""
        self.on_outbox: Callable[[OutboxOffer], None] | None = None
        """Called from the writer thread, in commit order, with the outbox rows of each
        committed alert write (it must be quick and thread-safe; it must not raise)."""

    @property
    def queue_depth(self) -> int:
        """Return the rows queued or in a batch that is not yet committed."""
        return self._queued_rows

    @property
    def alive(self) -> bool:
        """Return whether the writer thread was started and still runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def healthy(self) -> bool:
        """Return whether the thread runs and its last write attempt succeeded."""
        return self._healthy and self.alive

    @property
    def failing_since(self) -> int | None:
        """Return when the current spell of failing writes began (epoch ms), None if none."""
        return self._failing_since_ms

    def start(self) -> None:
        """Open (and migrate) the store in the writer thread; raise ``StoreError`` on failure."""
        if self._thread is not None or self._closed:
            raise StoreError("writer already started or closed")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name="pairwatch-writer", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]

    def put_bars(self, bars: Sequence[Bar]) -> None:
        """Queue bars to upsert (a later version of a bar replaces the earlier one)."""
        if bars:
            self._put(Rows(WRITE_BARS, tuple(bars)))

    def put_bar_arrays(self, bars: BarArrays) -> None:
        """Queue closed bars held as columns (the replay path: no ``Bar`` objects)."""
        if len(bars):
            self._put(Rows(WRITE_BAR_ARRAYS, bar_array_rows(bars, self._clock())))

    def put_ticks(self, trades: Sequence[Trade]) -> None:
        """Queue raw trades to insert (duplicates by symbol and id are ignored)."""
        if trades:
            self._put(Rows(WRITE_TICKS, tuple(trades)))

    def put_gaps(self, gaps: Sequence[Gap]) -> None:
        """Queue detected gaps (a gap already stored is ignored)."""
        for gap in gaps:
            if gap.stream not in _STREAMS:
                raise ValueError(f"invalid gap stream {gap.stream!r}: expected trade or aggTrade")
        if gaps:
            self._put(Rows(WRITE_GAPS, tuple(gaps)))

    def put_symbol_state(
        self, market: str, stream: str, states: Sequence[tuple[str, int, int]]
    ) -> None:
        """Queue ``(symbol, last_trade_id, last_trade_ts)`` of one market and stream."""
        if states:
            rows = tuple(SymbolState(market, stream, *state) for state in states)
            self._put(Rows(WRITE_STATES, rows))

    def put_feed_stats(self, row: FeedStatsRow) -> None:
        """Queue one feed statistics snapshot (same source and ts replaces it)."""
        self._put(Rows(WRITE_FEED_STATS, (row,)))

    def put_pair_snapshots(self, snapshots: Sequence[PairSnapshot]) -> None:
        """Queue pair snapshots to upsert into ``analytics`` (non-finite values as NULL)."""
        if snapshots:
            self._put(Rows(self._pairs, tuple(snapshots)))

    def put_symbol_snapshots(self, snapshots: Sequence[SymbolSnapshot]) -> None:
        """Queue symbol snapshots to upsert into ``symbol_analytics``."""
        if snapshots:
            self._put(Rows(self._symbols, tuple(snapshots)))

    def put_kalman_states(self, states: Sequence[KalmanState]) -> None:
        """Queue Kalman filter states to upsert into ``kalman_state`` (one row per series)."""
        if states:
            self._put(Rows(WRITE_KALMAN, tuple(states)))

    def put_alerts(
        self,
        events: Sequence[tuple[AlertEvent, bool]],
        notifications: Sequence[Notification] = (),
        states: Sequence[StoredState] = (),
        forget: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Queue ``(event, silenced)`` pairs, their outbox rows and alert states together."""
        if events or notifications or states or forget:
            self._put(AlertWrite(tuple(events), tuple(notifications), tuple(states), tuple(forget)))

    def put_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        """Queue the outcomes of outbox deliveries."""
        if deliveries:
            self._put(Deliveries(tuple(deliveries)))

    def purge(self, table: str, before_ts: int, timeframe: str | None = None) -> None:
        """Queue a retention delete of rows older than ``before_ts`` (epoch ms)."""
        check_purge(table, timeframe)
        self._put(Purge(table, int(before_ts), timeframe))

    def checkpoint(
        self,
        bars: Sequence[Bar],
        market: str,
        stream: str,
        states: Sequence[tuple[str, int, int]],
    ) -> None:
        """Queue open bars and ``(symbol, last_id, last_ts)`` states for one transaction."""
        if bars or states:
            rows = tuple(SymbolState(market, stream, *state) for state in states)
            self._put(Checkpoint(tuple(bars), rows))

    def flush(self) -> Future[None]:
        """Return a future resolved once everything queued before it is committed."""
        future: Future[None] = Future()
        self._put(Flush(future))
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread (give up after ``timeout`` s)."""
        with self._cond:
            self._closed = True
            self._stopping = True
            self._cond.notify_all()
        thread = self._thread
        if thread is None:
            if self._queued_rows:
                logger.warning(
                    "store writer closed before start: %d rows not written", self._queued_rows
                )
            return
        thread.join(timeout)
        if not thread.is_alive():
            return
        with self._cond:
            self._abort = True
            self._cond.notify_all()
        conn = self._conn
        if conn is not None:
            # interrupt() is documented as safe from another thread; the conn may just close.
            with contextlib.suppress(sqlite3.ProgrammingError):
                conn.interrupt()
        thread.join(timeout)
        logger.error(
            "store writer did not finish within %.1f s: %d rows not written (%s)",
            timeout,
            self._queued_rows,
            self.last_error,
        )

    def _put(self, op: Op) -> None:
        with self._cond:
            if self._closed:
                raise StoreError("store writer is closed")
            if isinstance(op, Rows) and op.statement is WRITE_TICKS:
                # Raw ticks are optional: bound their memory while the store is failing.
                if self._queued_ticks + op.size > self._max_queued_ticks:
                    self.ticks_dropped += op.size
                    if not self._dropping_ticks:
                        self._dropping_ticks = True
                        logger.warning(
                            "store writer has %d ticks waiting: dropping new ticks until it "
                            "catches up",
                            self._queued_ticks,
                        )
                    return
                self._dropping_ticks = False
                self._queued_ticks += op.size
            self._queue.append(op)
            self._queued_rows += op.size
            self._cond.notify()

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        try:
            conn = open_store(self._path, busy_timeout_ms=self._busy_timeout_ms)
        except StoreError as exc:
            failure.append(exc)
            ready.set()
            return
        self._conn = conn
        try:
            if self._max_size is not None:
                self._limit_size(conn, self._max_size)
            if self._on_connect is not None:
                self._on_connect(conn)
        except BaseException as exc:
            self._conn = None
            conn.close()
            failure.append(exc)
            ready.set()
            return
        ready.set()
        try:
            self._loop(conn)
        except Exception as exc:
            # A bug in the loop itself: make it visible rather than die silently.
            logger.exception("store writer thread failed")
            self.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            self._healthy = False
            self._fail_pending(StoreError(f"store writer stopped: {self.last_error}"))
            self._conn = None
            conn.close()

    def _loop(self, conn: sqlite3.Connection) -> None:
        held = self._held
        delay = 0.0
        while True:
            if not held:
                batch = self._take()
                if batch is None:
                    return
                held.append(batch)
            if self._abort:
                return
            batch = held[0]
            offers: list[OutboxOffer] | None = [] if self.on_outbox is not None else None
            try:
                counts = write_batch(conn, batch, self._clock, offers)
            except sqlite3.OperationalError as exc:
                self._failed(exc)
                delay = min(max(delay * 2, _BACKOFF_MIN_S), _BACKOFF_MAX_S)
                with self._cond:
                    self._cond.wait_for(lambda: self._abort, timeout=delay)
                continue
            except Exception as exc:
                # Retrying cannot fix a bad value or a bug: isolate the op that fails.
                held.popleft()
                data = [op for op in batch if not isinstance(op, Flush)]
                if len(data) > 1:
                    held.extendleft(reversed([[op] for op in batch]))
                else:
                    self._dropped(batch, exc)
                continue
            held.popleft()
            delay = 0.0
            self._committed(batch, counts)
            if offers:
                self._offer(offers)
            if any(isinstance(op, Checkpoint) for op in batch):
                self._wal_checkpoint(conn)

    def _wal_checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL into the database now, after a periodic checkpoint (off the bar
        closes: ``maintenance.checkpoint_delay``).

        Left to SQLite, the copy (and its fsyncs) runs inside whichever commit takes the WAL
        past 1,000 pages; under load that was an alert write of a bar close every few
        seconds, 10–20 ms longer. Done here every checkpoint, the WAL seldom gets there.
        Passive: it never waits for readers, and what they still use is copied next time.
        """
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # the next one, or SQLite's own, copies it
            logger.debug("WAL checkpoint failed: %s", exc)

    def _take(self) -> list[Op] | None:
        """Wait for work; return up to ``batch_max_rows`` rows of it, or None to stop."""
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue or self._abort:
                return None
            # Alerts may keep deferring the derived rows for MAX_DEFER_S, not starve them.
            since = self._deferring_since
            defer = since is None or time.monotonic() - since < MAX_DEFER_S
            batch, deferred = cut_batch(self._queue, self._batch_max_rows, defer=defer)
            if not deferred:
                self._deferring_since = None
            elif since is None:
                self._deferring_since = time.monotonic()
            return batch

    def _committed(self, batch: list[Op], counts: dict[str, int]) -> None:
        for counter, value in counts.items():
            setattr(self, counter, getattr(self, counter) + value)
        if counts:
            self.transactions += 1
            self.last_commit_at = self._clock()
        if self._failing_since is not None:
            logger.warning(
                "store writes recovered after %.1f s", time.monotonic() - self._failing_since
            )
        self._healthy = True
        self._failing_since = None
        self._failing_since_ms = None
        self._logged_errors.clear()
        self._release(batch)
        for op in batch:
            if isinstance(op, Flush):
                resolve(op.future, None)

    def _offer(self, offers: list[OutboxOffer]) -> None:
        on_outbox = self.on_outbox
        if on_outbox is None:
            return
        for offer in offers:
            try:
                on_outbox(offer)
            except Exception:  # the rows are committed: the workers read them anyway
                logger.exception("handing committed outbox rows to delivery failed")

    def _failed(self, exc: sqlite3.OperationalError) -> None:
        message = f"{type(exc).__name__}: {exc}"
        self.errors += 1
        self.last_error = message
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            self._failing_since_ms = self._clock()
        self._healthy = False  # after failing_since: an unhealthy live writer always has it
        if message not in self._logged_errors:
            self._logged_errors.add(message)
            cap = ""
            if self._max_size is not None and "full" in message:
                cap = f" (storage.max_size is {self._max_size} bytes)"
            logger.warning(
                "store write failed, retrying (nothing lost, %d rows waiting): %s%s",
                self._queued_rows,
                message,
                cap,
            )

    def _limit_size(self, conn: sqlite3.Connection, max_size: int) -> None:
        cap = limit_size(conn, max_size)
        if cap > max_size:
            logger.warning(
                "store %s is already %d bytes, over storage.max_size (%d): it cannot grow "
                "until rows are deleted",
                self._path,
                cap,
                max_size,
            )
        else:
            logger.info("store %s capped at %d bytes (storage.max_size)", self._path, cap)

    def _dropped(self, batch: list[Op], exc: Exception) -> None:
        rows = sum(op.size for op in batch)
        self.rows_dropped += rows
        self.last_error = f"{type(exc).__name__}: {exc}"
        logger.error("store writer dropped %d rows it cannot write", rows, exc_info=exc)
        self._release(batch)
        for op in batch:
            if isinstance(op, Flush):
                resolve(op.future, None)

    def _release(self, batch: list[Op]) -> None:
        with self._cond:
            for op in batch:
                self._queued_rows -= op.size
                if isinstance(op, Rows) and op.statement is WRITE_TICKS:
                    self._queued_ticks -= op.size

    def _fail_pending(self, error: StoreError) -> None:
        with self._cond:
            self._closed = True
            pending = [op for batch in self._held for op in batch]
            pending.extend(self._queue)
            self._held.clear()
            self._queue.clear()
        for op in pending:
            if isinstance(op, Flush):
                resolve(op.future, error)
