"""Readers see committed data while the writer writes (WAL), and puts batch up meanwhile."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from pairwatch.daemon.store import count_rows, open_store
from pairwatch.daemon.writer import Writer
from pairwatch.events import Bar, Trade

T0 = 1_700_000_040_000
SQLITE_CLI = shutil.which("sqlite3")


def make_bar(ts: int) -> Bar:
    return Bar("BTCUSDT", "1m", ts, 99.0, 101.0, 98.0, 100.0, 2.0, 199.0, 99.5, 3, 1.0)


def make_trade(trade_id: int) -> Trade:
    return Trade("BTCUSDT", trade_id, 100.0, 0.25, T0 + trade_id, T0 + trade_id + 7, False)


class WriterPause:
    """Hold the writer inside its next bars write (with the write lock) until released."""

    def __init__(self) -> None:
        self.armed = threading.Event()
        self.entered = threading.Event()
        self.release = threading.Event()

    def install(self, conn: sqlite3.Connection) -> None:
        def trace(statement: str) -> None:
            # Called by the writer thread as each statement starts, after BEGIN IMMEDIATE.
            if self.armed.is_set() and statement.startswith("INSERT INTO bars"):
                self.armed.clear()
                self.entered.set()
                self.release.wait(30)

        conn.set_trace_callback(trace)


def count_bars(db: Path) -> int:
    """Count bars the way an operator would: the sqlite3 CLI, else a read-only connection."""
    if SQLITE_CLI is not None:
        done = subprocess.run(
            [SQLITE_CLI, "-readonly", str(db), "select count(*) from bars"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert done.stderr == ""
        return int(done.stdout)
    conn = open_store(db, readonly=True)
    try:
        return count_rows(conn, "bars")
    finally:
        conn.close()


def test_a_reader_sees_committed_bars_while_a_write_transaction_is_open(tmp_path: Path) -> None:
    db = tmp_path / "pairwatch.db"
    pause = WriterPause()
    w = Writer(db, on_connect=pause.install)
    w.start()
    try:
        w.put_bars([make_bar(T0 + i * 60_000) for i in range(100)])
        w.flush().result(30)
        pause.armed.set()
        w.put_bars([make_bar(T0 + i * 60_000) for i in range(100, 150)])
        assert pause.entered.wait(30)

        # The writer holds the write lock mid-transaction; readers are not blocked.
        assert count_bars(db) == 100
        reader = open_store(db, readonly=True)
        try:
            assert count_rows(reader, "bars") == 100
        finally:
            reader.close()

        pause.release.set()
        w.flush().result(30)
        assert count_bars(db) == 150
    finally:
        pause.release.set()
        w.close(10)


def test_concurrent_readers_only_ever_see_whole_transactions(tmp_path: Path) -> None:
    db = tmp_path / "pairwatch.db"
    w = Writer(db, batch_max_rows=10_000)
    for chunk in range(20):
        w.put_ticks([make_trade(chunk * 1_000 + i) for i in range(1_000)])
    done = w.flush()
    w.start()
    seen: list[int] = []
    reader = open_store(db, readonly=True)
    try:
        while not done.done():
            seen.append(count_rows(reader, "ticks"))
        done.result(0)
        seen.append(count_rows(reader, "ticks"))
    finally:
        reader.close()
        w.close(10)

    assert seen[-1] == 20_000
    assert seen == sorted(seen)
    assert all(count % 10_000 == 0 for count in seen)
    assert w.transactions == 2


async def test_puts_arriving_during_a_commit_share_the_next_transaction(tmp_path: Path) -> None:
    pause = WriterPause()
    w = Writer(tmp_path / "pairwatch.db", on_connect=pause.install)
    w.start()
    try:
        pause.armed.set()
        w.put_bars([make_bar(T0)])
        assert await asyncio.to_thread(pause.entered.wait, 30)
        for i in range(1, 1_001):
            w.put_bars([make_bar(T0 + i * 60_000)])
        assert w.queue_depth == 1_001
        pause.release.set()
        await asyncio.wait_for(asyncio.wrap_future(w.flush()), 30)
        assert w.bars_written == 1_001
        assert w.transactions == 2  # 1,001 puts, 2 transactions
    finally:
        pause.release.set()
        w.close(10)


@pytest.mark.skipif(SQLITE_CLI is None, reason="needs the sqlite3 command-line shell")
def test_a_live_store_can_be_backed_up_with_the_cli(tmp_path: Path) -> None:
    db = tmp_path / "pairwatch.db"
    backup = tmp_path / "backup.db"
    w = Writer(db)
    w.start()
    try:
        w.put_bars([make_bar(T0 + i * 60_000) for i in range(10)])
        w.flush().result(30)
        assert SQLITE_CLI is not None
        subprocess.run(
            [SQLITE_CLI, "-readonly", str(db), f".backup '{backup}'"], check=True, timeout=30
        )
        w.put_bars([make_bar(T0 + i * 60_000) for i in range(10, 20)])
        w.flush().result(30)
    finally:
        w.close(10)
    copy = open_store(backup, readonly=True)
    try:
        assert count_rows(copy, "bars") == 10
    finally:
        copy.close()
