"""``storage.max_size``: the writer caps the file, fails as on a full disk, and recovers."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from pairwatch.daemon.store import limit_size, open_store
from pairwatch.daemon.writer import Writer
from pairwatch.events import Bar
from support.timing import Clock, wait_until

T0 = 1_700_000_040_000
FULL = "OperationalError: database or disk is full"


def make_bars(start: int, stop: int) -> list[Bar]:
    return [
        Bar("BTCUSDT", "1m", T0 + i * 60_000, 99.0, 101.0, 98.0, 100.0, 2.0, 199.0, 99.5, 3, 1.0)
        for i in range(start, stop)
    ]


def pragma(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


def store_with_filler(db: Path, blobs: int = 64) -> int:
    """Make the store with ``blobs`` 32 kB filler rows; return the file's size."""
    conn = open_store(db)
    conn.execute("CREATE TABLE filler (b BLOB)")
    conn.executemany("INSERT INTO filler VALUES (randomblob(32768))", [()] * blobs)
    conn.close()
    return db.stat().st_size


@pytest.mark.parametrize(("page_size", "pages"), [(4096, 490), (16384, 122)])
def test_the_cap_is_the_whole_pages_that_fit(tmp_path: Path, page_size: int, pages: int) -> None:
    db = tmp_path / "pairwatch.db"
    empty = sqlite3.connect(db)
    empty.execute(f"PRAGMA page_size = {page_size}")
    empty.execute("VACUUM")  # the page size is fixed once the first page is written
    empty.close()
    conn = open_store(db)
    try:
        assert pragma(conn, "page_size") == page_size
        assert limit_size(conn, 2_010_000) == pages * page_size
        assert pragma(conn, "max_page_count") == pages
    finally:
        conn.close()


def test_a_cap_below_the_file_holds_it_at_its_size(tmp_path: Path) -> None:
    db = tmp_path / "pairwatch.db"
    size = store_with_filler(db)
    conn = open_store(db)
    try:
        assert limit_size(conn, 1_000_000) == size
        with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
            conn.execute("INSERT INTO filler VALUES (randomblob(32768))")
    finally:
        conn.close()


async def test_a_writer_at_its_cap_fails_as_full_says_since_when_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pairwatch.daemon.writer")
    db = tmp_path / "pairwatch.db"
    size = store_with_filler(db)
    clock = Clock(T0)
    w = Writer(db, max_size=size, clock=clock)
    assert not w.alive
    w.start()
    try:
        assert w.alive
        assert w.failing_since is None
        w.put_bars(make_bars(0, 2_000))
        done = w.flush()
        await asyncio.to_thread(wait_until, lambda: w.errors >= 2)  # a first try and a retry
        clock.now = T0 + 5_000

        assert (w.alive, w.healthy) == (True, False)
        assert w.failing_since == T0  # the first failure of the spell, not the latest
        assert w.last_error == FULL
        assert w.queue_depth == 2_000
        assert db.stat().st_size == size
        [failed] = [
            r.getMessage() for r in caplog.records if "store write failed" in r.getMessage()
        ]
        assert failed.endswith(f"{FULL} (storage.max_size is {size} bytes)")
        assert any(f"capped at {size} bytes" in r.getMessage() for r in caplog.records)

        other = open_store(db)
        other.execute("DROP TABLE filler")  # its pages go to the freelist, under the cap
        other.close()
        await asyncio.wait_for(asyncio.wrap_future(done), 30)
        assert (w.alive, w.healthy, w.failing_since) == (True, True, None)
        assert w.bars_written == 2_000
        assert db.stat().st_size <= size
    finally:
        w.close(10)
    assert not w.alive


def test_max_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_size must be >= 1 byte or None, got 0"):
        Writer(tmp_path / "pairwatch.db", max_size=0)
