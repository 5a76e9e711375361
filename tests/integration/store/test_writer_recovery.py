"""The writer keeps every batch through disk-full and locked databases, and recovers."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import Future
from pathlib import Path

import pytest

from pairwatch.daemon.store import count_rows, open_store
from pairwatch.daemon.writer import Writer
from pairwatch.errors import StoreError
from pairwatch.events import Bar, Trade
from support.timing import wait_until

T0 = 1_700_000_040_000


def make_bars(start: int, stop: int, symbol: str = "BTCUSDT") -> list[Bar]:
    return [
        Bar(symbol, "1m", T0 + i * 60_000, 99.0, 101.0, 98.0, 100.0, 2.0, 199.0, 99.5, 3, 1.0)
        for i in range(start, stop)
    ]


def count_bars(db: Path) -> int:
    conn = open_store(db, readonly=True)
    try:
        return count_rows(conn, "bars")
    finally:
        conn.close()


def failure_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "store write failed" in r.getMessage()]


async def test_a_full_disk_loses_nothing_and_the_writer_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "pairwatch.db"
    conn = open_store(db)
    conn.execute("CREATE TABLE filler (b BLOB)")
    conn.executemany("INSERT INTO filler VALUES (randomblob(32768))", [()] * 64)
    conn.close()

    def cap_size(writer_conn: sqlite3.Connection) -> None:
        # A limit below the current size is clamped to it: the file cannot grow at all.
        writer_conn.execute("PRAGMA max_page_count = 1")

    caplog.set_level(logging.INFO, logger="pairwatch.daemon.writer")
    w = Writer(db, on_connect=cap_size)
    w.start()
    try:
        w.put_bars(make_bars(0, 3_000))
        first: Future[None] = w.flush()
        wait_until(lambda: w.errors >= 3, timeout=30)

        assert not w.healthy
        assert w.last_error is not None
        assert "full" in w.last_error
        assert not first.done()
        assert count_bars(db) == 0
        assert len(failure_logs(caplog)) == 1  # once per distinct error, not per retry

        w.put_bars(make_bars(3_000, 3_500))  # still accepted while failing
        assert w.queue_depth == 3_500

        # Free space: dropping the filler returns 2 MB of pages to the freelist.
        other = open_store(db)
        other.execute("DROP TABLE filler")
        other.close()

        await asyncio.wait_for(asyncio.wrap_future(first), 30)
        await asyncio.wait_for(asyncio.wrap_future(w.flush()), 30)
        assert w.healthy
        assert w.bars_written == 3_500
        assert w.queue_depth == 0
        assert count_bars(db) == 3_500
        assert any("recovered" in r.getMessage() for r in caplog.records)
    finally:
        w.close(10)


async def test_a_locked_database_delays_writes_without_losing_them(tmp_path: Path) -> None:
    db = tmp_path / "pairwatch.db"
    w = Writer(db, busy_timeout_ms=20)
    w.start()
    locker = sqlite3.connect(db, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        w.put_bars(make_bars(0, 100))
        done = w.flush()
        wait_until(lambda: w.errors >= 2, timeout=30)

        assert not w.healthy
        assert w.last_error == "OperationalError: database is locked"
        assert count_bars(db) == 0  # readers still read while the lock is held
        assert not done.done()

        locker.execute("COMMIT")
        await asyncio.wait_for(asyncio.wrap_future(done), 30)
        assert w.healthy
        assert count_bars(db) == 100
        assert w.last_error == "OperationalError: database is locked"  # kept for /status
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()
        w.close(10)


def test_close_gives_up_after_its_timeout_and_fails_waiting_flushes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "pairwatch.db"
    w = Writer(db, busy_timeout_ms=20)
    w.start()
    locker = sqlite3.connect(db, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        w.put_bars(make_bars(0, 10))
        done = w.flush()
        w.close(0.3)

        assert isinstance(done.exception(10), StoreError)
        assert any("did not finish" in r.getMessage() for r in caplog.records)
        assert not w.healthy
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert count_bars(db) == 0


def test_a_value_sqlite_cannot_store_drops_only_its_own_put(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "pairwatch.db"
    w = Writer(db)
    w.put_bars(make_bars(0, 2))
    # Structs do not check types on construction: this bar reaches SQLite and fails there.
    w.put_bars([Bar("ETHUSDT", "1m", T0, object(), 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1, 1.0)])  # type: ignore[arg-type]
    w.put_ticks([Trade("BTCUSDT", 1, 100.0, 1.0, T0, T0, True)])
    w.put_bars(make_bars(2, 4))
    done = w.flush()
    w.start()
    try:
        done.result(30)
        assert w.rows_dropped == 1
        assert w.bars_written == 4
        assert w.ticks_written == 1
        assert w.healthy
        assert w.last_error is not None
        assert "binding parameter" in w.last_error
        assert any("dropped 1 rows" in r.getMessage() for r in caplog.records)
    finally:
        w.close(10)
    assert count_bars(db) == 4
