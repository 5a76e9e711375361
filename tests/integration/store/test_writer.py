"""The batching writer against a real SQLite file: upserts, dedup, purge, flush, batching."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pairwatch.daemon.alert_rows import Notification
from pairwatch.daemon.store import count_rows, open_store
from pairwatch.daemon.store_reads import load_symbol_state, read_bars
from pairwatch.daemon.writer import MAX_DEFER_S, FeedStatsRow, Writer
from pairwatch.errors import StoreError
from pairwatch.events import AlertEvent, Bar, Gap, Trade

T0 = 1_700_000_040_000
NOW = 1_800_000_000_000


def make_bar(
    symbol: str = "BTCUSDT",
    timeframe: str = "1m",
    ts: int = T0,
    *,
    close: float = 100.0,
    volume: float = 2.0,
    closed: bool = True,
) -> Bar:
    vwap = math.nan if volume == 0 else close - 0.5
    return Bar(
        symbol, timeframe, ts, 99.0, 101.0, 98.0, close, volume, volume * vwap if volume else 0.0,
        vwap, 3, volume / 2, filled=False, closed=closed,
    )  # fmt: skip


def make_trade(trade_id: int, symbol: str = "BTCUSDT", price: float = 100.0) -> Trade:
    return Trade(symbol, trade_id, price, 0.25, T0 + trade_id, T0 + trade_id + 7, trade_id % 2 == 0)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "pairwatch.db"


@pytest.fixture
def writer(db: Path) -> Iterator[Writer]:
    w = Writer(db, clock=lambda: NOW)
    w.start()
    yield w
    w.close(10)


def read(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = open_store(db, readonly=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def flushed(writer: Writer) -> None:
    await asyncio.wait_for(asyncio.wrap_future(writer.flush()), 30)


async def test_flush_resolves_after_commit_and_a_second_connection_sees_the_rows(
    writer: Writer, db: Path
) -> None:
    writer.put_bars([make_bar(ts=T0 + i * 60_000, close=100.0 + i) for i in range(3)])

    await flushed(writer)

    conn = open_store(db, readonly=True)
    try:
        assert [bar.close for bar in read_bars(conn, "BTCUSDT", "1m")] == [100.0, 101.0, 102.0]
    finally:
        conn.close()
    assert writer.bars_written == 3
    assert writer.queue_depth == 0
    assert writer.healthy
    assert writer.last_commit_at == NOW
    assert writer.last_error is None


async def test_a_closed_bar_replaces_its_checkpointed_open_version(
    writer: Writer, db: Path
) -> None:
    writer.checkpoint(
        [make_bar(close=100.0, volume=1.0, closed=False)], "spot", "trade", [("BTCUSDT", 7, T0)]
    )
    await flushed(writer)
    assert read(db, "SELECT close, volume, closed FROM bars") == [(100.0, 1.0, 0)]
    assert read(db, "SELECT * FROM symbol_state") == [("spot", "trade", "BTCUSDT", 7, T0, NOW)]

    final = make_bar(close=105.0, volume=4.0, closed=True)
    writer.put_bars([final])
    writer.put_bars([final])  # a re-replay is idempotent
    await flushed(writer)

    conn = open_store(db, readonly=True)
    try:
        assert read_bars(conn, "BTCUSDT", "1m") == [final]
    finally:
        conn.close()
    assert writer.bars_written == 3  # one insert, two updates


async def test_zero_volume_bars_store_null_vwap(writer: Writer, db: Path) -> None:
    writer.put_bars([make_bar(volume=0.0), make_bar(ts=T0 + 60_000, volume=1.0)])
    await flushed(writer)

    assert read(db, "SELECT ts, vwap FROM bars ORDER BY ts") == [(T0, None), (T0 + 60_000, 99.5)]


async def test_ticks_ignore_duplicates_and_store_the_event_time(writer: Writer, db: Path) -> None:
    writer.put_ticks([make_trade(i) for i in range(1, 6)])
    writer.put_ticks([make_trade(i, price=999.0) for i in range(4, 9)])  # 4 and 5 are repeats
    writer.put_ticks([make_trade(4, symbol="ETHUSDT")])  # ids are per symbol
    await flushed(writer)

    assert writer.ticks_written == 9
    rows = read(db, "SELECT symbol, trade_id, ts, price, qty, buyer_is_maker, count, ts_recv "
                    "FROM ticks ORDER BY symbol, trade_id")  # fmt: skip
    assert len(rows) == 9
    assert rows[3] == ("BTCUSDT", 4, T0 + 4, 100.0, 0.25, 1, 1, T0 + 11)
    assert rows[5] == ("BTCUSDT", 6, T0 + 6, 999.0, 0.25, 1, 1, T0 + 13)
    assert rows[8][:3] == ("ETHUSDT", 4, T0 + 4)


async def test_gaps_symbol_state_and_feed_stats_are_written(writer: Writer, db: Path) -> None:
    gap = Gap("BTCUSDT", 101, 120, T0, stream="aggTrade")
    writer.put_gaps([gap, Gap("ETHUSDT", 5, 5, T0 + 1)])
    writer.put_gaps([gap])  # seen again after a restart: ignored
    writer.put_symbol_state("spot", "trade", [("BTCUSDT", 10, T0), ("ETHUSDT", 20, T0 + 1)])
    writer.put_symbol_state("spot", "trade", [("BTCUSDT", 11, T0 + 2)])
    writer.put_feed_stats(
        FeedStatsRow(T0, "binance-spot", received=10, accepted=9, rejected=1, reconnects=2,
                     gaps=1, lag_ms_p50=12.5, lag_ms_max=80.0, detail={"rejects": {"late": 1}})
    )  # fmt: skip
    await flushed(writer)

    assert read(db, "SELECT symbol, stream, from_id, to_id, detected_at, backfilled_at "
                    "FROM gaps ORDER BY id") == [
        ("BTCUSDT", "aggTrade", 101, 120, T0, None),
        ("ETHUSDT", "trade", 5, 5, T0 + 1, None),
    ]  # fmt: skip
    assert writer.gaps_written == 2
    conn = open_store(db, readonly=True)
    try:
        assert load_symbol_state(conn, "spot", "trade") == {
            "BTCUSDT": (11, T0 + 2),
            "ETHUSDT": (20, T0 + 1),
        }
    finally:
        conn.close()
    (stats,) = read(db, "SELECT * FROM feed_stats")
    assert stats[:9] == (T0, "binance-spot", 10, 9, 1, 2, 1, 12.5, 80.0)
    assert json.loads(str(stats[9])) == {"rejects": {"late": 1}}


def test_invalid_values_are_refused_at_the_call(writer: Writer) -> None:
    with pytest.raises(ValueError, match="invalid gap stream 'depth'"):
        writer.put_gaps([Gap("BTCUSDT", 1, 2, T0, stream="depth")])
    with pytest.raises(ValueError, match="cannot purge table 'meta'"):
        writer.purge("meta", T0)
    with pytest.raises(ValueError, match="cannot purge ticks by timeframe"):
        writer.purge("ticks", T0, timeframe="1m")
    with pytest.raises(ValueError, match="source must not be empty"):
        FeedStatsRow(T0, "")
    assert writer.queue_depth == 0


async def test_purge_deletes_older_rows_by_table_and_timeframe(writer: Writer, db: Path) -> None:
    for tf in ("1m", "5m"):
        writer.put_bars([make_bar(timeframe=tf, ts=T0 + i * 300_000) for i in range(4)])
    writer.put_ticks([make_trade(i) for i in range(10)])
    writer.put_gaps([Gap("BTCUSDT", i * 10, i * 10 + 1, T0 + i) for i in range(4)])
    writer.put_feed_stats(FeedStatsRow(T0, "sim"))
    writer.put_feed_stats(FeedStatsRow(T0 + 10, "sim"))
    await flushed(writer)

    writer.purge("bars", T0 + 600_000, timeframe="1m")
    writer.purge("ticks", T0 + 5)
    writer.purge("gaps", T0 + 2)
    writer.purge("feed_stats", T0 + 10)
    await flushed(writer)

    assert read(db, "SELECT timeframe, count(*), min(ts) FROM bars GROUP BY timeframe") == [
        ("1m", 2, T0 + 600_000),
        ("5m", 4, T0),
    ]
    assert read(db, "SELECT min(trade_id), count(*) FROM ticks") == [(5, 5)]
    assert read(db, "SELECT detected_at FROM gaps ORDER BY id") == [(T0 + 2,), (T0 + 3,)]
    assert read(db, "SELECT ts FROM feed_stats") == [(T0 + 10,)]
    assert writer.rows_purged == 2 + 5 + 2 + 1

    writer.purge("bars", T0 + 10_000_000)
    await flushed(writer)
    assert read(db, "SELECT count(*) FROM bars") == [(0,)]


def test_puts_queued_before_start_commit_in_one_transaction(db: Path) -> None:
    w = Writer(db)
    for i in range(1_000):
        w.put_bars([make_bar(ts=T0 + i * 60_000)])
    assert w.queue_depth == 1_000
    w.start()
    try:
        w.flush().result(30)
        assert w.bars_written == 1_000
        assert w.transactions == 1
    finally:
        w.close(10)
    assert read(db, "SELECT count(*) FROM bars") == [(1_000,)]


def test_a_transaction_holds_at_most_batch_max_rows(db: Path) -> None:
    w = Writer(db, batch_max_rows=2_500)
    for chunk in range(10):
        w.put_ticks([make_trade(chunk * 1_000 + i) for i in range(1_000)])
    w.start()
    try:
        w.flush().result(30)
        assert w.ticks_written == 10_000
        assert w.transactions == 4
    finally:
        w.close(10)


def test_a_checkpoint_is_never_split_across_transactions(db: Path) -> None:
    w = Writer(db, batch_max_rows=10)
    w.put_bars([make_bar(ts=T0 + i * 60_000) for i in range(5)])
    bars = [make_bar(symbol="ETHUSDT", ts=T0 + i * 60_000, closed=False) for i in range(20)]
    w.checkpoint(bars, "spot", "trade", [("ETHUSDT", 1, T0)])
    w.start()
    try:
        w.flush().result(30)
        # 5 bars, then the 21-row checkpoint alone (not 5 of it with the first batch).
        assert w.transactions == 2
        assert w.bars_written == 25
        assert w.states_written == 1
    finally:
        w.close(10)


def _main_file_bars(db: Path, tmp: Path) -> int:
    """Return the bars in the database file alone (what its WAL holds left out)."""
    copy = tmp / "main-only.db"
    shutil.copyfile(db, copy)
    conn = sqlite3.connect(copy)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'bars'").fetchall():
            return 0  # the schema itself is still in the WAL
        return int(conn.execute("SELECT count(*) FROM bars").fetchone()[0])
    finally:
        conn.close()


def test_a_periodic_checkpoint_copies_the_wal_into_the_database(db: Path, tmp_path: Path) -> None:
    # SQLite would copy the WAL inside whichever commit takes it past 1,000 pages (an
    # alert write at a bar close, say); the writer does it after its periodic checkpoint.
    w = Writer(db)
    w.start()
    try:
        w.put_bars([make_bar(ts=T0 + i * 60_000) for i in range(5)])
        w.flush().result(30)
        assert _main_file_bars(db, tmp_path) == 0  # only in the WAL so far
        w.checkpoint([make_bar("ETHUSDT", closed=False)], "spot", "trade", [("ETHUSDT", 1, T0)])
        w.flush().result(30)  # committed; the WAL is copied right after, before the next batch
        w.flush().result(30)
        assert _main_file_bars(db, tmp_path) == 6
    finally:
        w.close(10)


def test_close_writes_everything_queued_and_is_idempotent(db: Path) -> None:
    w = Writer(db)
    w.start()
    w.put_ticks([make_trade(i) for i in range(5_000)])
    w.put_bars([make_bar()])
    w.close(30)
    w.close(30)

    assert read(db, "SELECT count(*) FROM ticks") == [(5_000,)]
    assert read(db, "SELECT count(*) FROM bars") == [(1,)]
    assert not w.healthy
    with pytest.raises(StoreError, match="writer is closed"):
        w.put_bars([make_bar()])


def test_start_reports_a_store_that_cannot_be_opened(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"\x00garbage" * 1_000)
    w = Writer(path)

    with pytest.raises(StoreError, match="is not an SQLite database"):
        w.start()
    assert not w.healthy
    w.close(1)


def test_ticks_beyond_the_queue_bound_are_dropped_and_counted(db: Path) -> None:
    w = Writer(db, max_queued_ticks=1_500)
    w.put_ticks([make_trade(i) for i in range(1_000)])
    w.put_ticks([make_trade(i) for i in range(1_000, 2_000)])  # would exceed the bound
    w.put_bars([make_bar()])  # bars are never dropped
    w.start()
    try:
        w.flush().result(30)
        assert w.ticks_dropped == 1_000
        assert w.ticks_written == 1_000
        assert w.bars_written == 1
        w.put_ticks([make_trade(i) for i in range(2_000, 3_000)])  # room again
        w.flush().result(30)
        assert w.ticks_written == 2_000
    finally:
        w.close(10)
    assert count_rows_in(db, "ticks") == 2_000


def count_rows_in(db: Path, table: str) -> int:
    conn = open_store(db, readonly=True)
    try:
        return count_rows(conn, table)
    finally:
        conn.close()


def _alert(n: int) -> AlertEvent:
    return AlertEvent(
        rule="z", target="ETHUSDT/BTCUSDT", timeframe="1m", window=30, kind="firing",
        at=T0 + n * 60_000, severity="warning", metric="zscore", value=2.5, threshold=2.0,
        message=f"z #{n}", values={"zscore": 2.5}, labels={}, notify=True,
    )  # fmt: skip


def _log_insert_order(conn: sqlite3.Connection) -> None:
    """Record, in the database itself, the order in which bars and alert events land."""
    conn.executescript(
        """
        CREATE TABLE IF NOT EXISTS landed (id INTEGER PRIMARY KEY, what TEXT NOT NULL);
        CREATE TRIGGER IF NOT EXISTS bar_landed AFTER INSERT ON bars
            BEGIN INSERT INTO landed (what) VALUES ('bar'); END;
        CREATE TRIGGER IF NOT EXISTS alert_landed AFTER INSERT ON alert_events
            BEGIN INSERT INTO landed (what) VALUES ('alert'); END;
        """
    )


def _bars_before_each_alert(db: Path) -> list[int]:
    """Return, for each alert event that landed, how many bars had landed before it.

    ``landed`` is written by triggers in the writer's own transactions, so its order is
    the order rows were committed in (within a transaction, the order of statements).
    """
    landed = [str(what) for (what,) in read(db, "SELECT what FROM landed ORDER BY id")]
    return [landed[:i].count("bar") for i, what in enumerate(landed) if what == "alert"]


def test_an_alert_is_never_stored_ahead_of_the_bar_queued_before_it(db: Path) -> None:
    # A restart after a crash must not find an alert's state without the bar it was
    # evaluated on (that bar would then be applied to the alert twice). Alert n is queued
    # after bar n: n + 1 bars land before it, in its transaction or earlier.
    w = Writer(db, on_connect=_log_insert_order)
    w.start()
    try:
        for n in range(20):
            w.put_bars([make_bar(ts=T0 + n * 60_000)])
            alert = _alert(n)
            w.put_alerts([(alert, False)], [Notification(alert.key, "log", {}, {"n": n})])
            w.put_ticks([make_trade(n * 10 + i) for i in range(10)])
        w.flush().result(30)
    finally:
        w.close(10)
    before = _bars_before_each_alert(db)
    assert len(before) == 20
    assert all(bars >= n + 1 for n, bars in enumerate(before))


def test_alert_writes_keep_their_order_among_bars(db: Path) -> None:
    w = Writer(db, on_connect=_log_insert_order)
    w.start()
    try:
        for n in range(5):
            w.put_bars([make_bar(ts=T0 + n * 60_000)])
            w.put_alerts([(_alert(n), False)])
        w.flush().result(30)
        assert (w.bars_written, w.alert_events_written) == (5, 5)
    finally:
        w.close(10)
    assert read(db, "SELECT at FROM alert_events ORDER BY id") == [
        (T0 + n * 60_000,) for n in range(5)
    ]
    assert read(db, "SELECT count(*) FROM landed") == [(10,)]


def _stats(ts: int) -> FeedStatsRow:
    return FeedStatsRow(ts, "binance-spot", received=1, accepted=1, rejected=0, reconnects=0,
                        gaps=0, lag_ms_p50=None, lag_ms_max=None, detail={})  # fmt: skip


def _log_stats_order(conn: sqlite3.Connection) -> None:
    _log_insert_order(conn)
    conn.execute(
        "CREATE TRIGGER IF NOT EXISTS stats_landed AFTER INSERT ON feed_stats "
        "BEGIN INSERT INTO landed (what) VALUES ('stats'); END"
    )


def test_waiting_alert_writes_share_one_transaction_that_ends_with_the_last(db: Path) -> None:
    # A group commit: the alert writes queued while one transaction ran go in the next
    # together; the rows queued after the last of them (its bar's snapshots, ticks) go in
    # the transaction after, so the alerts' notifications do not wait for them.
    w = Writer(db, on_connect=_log_insert_order)
    for n in range(3):
        w.put_bars([make_bar(ts=T0 + n * 60_000)])
        w.put_alerts([(_alert(n), False)])
        w.put_ticks([make_trade(n * 10 + i) for i in range(10)])
    w.start()
    try:
        w.flush().result(30)
        # [bar, alert, ticks, bar, alert, ticks, bar, alert], [ticks]
        assert w.transactions == 2
        assert (w.bars_written, w.alert_events_written, w.ticks_written) == (3, 3, 30)
    finally:
        w.close(10)
    # One statement per table in a transaction: its bars land first, then its alerts.
    assert read(db, "SELECT what FROM landed ORDER BY id") == [("bar",)] * 3 + [("alert",)] * 3


def test_derived_rows_queued_before_an_alert_are_written_after_it(db: Path) -> None:
    # Feed statistics (like analytics snapshots and Kalman states) are nothing an alert
    # depends on: waiting alert writes go first, with only the bars queued before them.
    w = Writer(db, on_connect=_log_stats_order)
    for n in range(2):
        w.put_feed_stats(_stats(T0 + n))
        w.put_bars([make_bar(ts=T0 + n * 60_000)])
        w.put_alerts([(_alert(n), False)])
    w.put_feed_stats(_stats(T0 + 2))
    w.start()
    try:
        w.flush().result(30)
        assert w.transactions == 2  # [bar, alert, bar, alert], [stats × 3]
        assert w.feed_stats_written == 3
    finally:
        w.close(10)
    landed = read(db, "SELECT what FROM landed ORDER BY id")
    assert landed == [("bar",)] * 2 + [("alert",)] * 2 + [("stats",)] * 3
    assert read(db, "SELECT ts FROM feed_stats ORDER BY ts") == [(T0 + n,) for n in range(3)]


def test_nothing_is_deferred_past_a_flush(db: Path) -> None:
    # A flush resolves once everything queued before it is committed: the feed stats
    # queued before it go with the alert write queued after it, not behind.
    w = Writer(db)
    w.put_feed_stats(_stats(T0))
    flushed = w.flush()
    w.put_alerts([(_alert(0), False)])
    batch = w._take()
    assert batch is not None
    assert [type(op).__name__ for op in batch] == ["Rows", "Flush", "AlertWrite"]
    assert not flushed.done()
    w.close(0)


def test_alerts_defer_the_derived_rows_for_at_most_max_defer_s(db: Path) -> None:
    w = Writer(db)
    for n in range(3):
        w.put_feed_stats(_stats(T0 + n))
        w.put_alerts([(_alert(n), False)])
    first = w._take()  # the batch policy, without the thread's timing
    assert first is not None
    assert [type(op).__name__ for op in first] == ["AlertWrite"] * 3
    assert w._deferring_since is not None
    w.put_alerts([(_alert(3), False)])
    w._deferring_since -= MAX_DEFER_S  # deferred long enough
    second = w._take()
    assert second is not None
    assert [type(op).__name__ for op in second] == ["Rows"] * 3 + ["AlertWrite"]
    assert w._deferring_since is None
    w.close(0)
