"""Read helpers of the store against a real SQLite file."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pairwatch.daemon.store import finalize_open_bars, open_store
from pairwatch.daemon.store_reads import load_latest_bars, load_symbol_state, read_bars
from pairwatch.events import Bar

T0 = 1_700_000_040_000  # a whole minute


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_store(tmp_path / "pairwatch.db")
    yield connection
    connection.close()


def insert_bar(
    conn: sqlite3.Connection,
    symbol: str,
    timeframe: str,
    ts: int,
    *,
    close: float = 100.0,
    volume: float = 2.0,
    vwap: float | None = 99.5,
    filled: int = 0,
    closed: int = 1,
) -> None:
    conn.execute(
        "INSERT INTO bars VALUES (?, ?, ?, 99, 101, 98, ?, ?, ?, ?, 3, 1.5, ?, ?, 0)",
        (symbol, timeframe, ts, close, volume, volume * 99.5, vwap, filled, closed),
    )


def test_read_bars_returns_a_half_open_range_oldest_first(conn: sqlite3.Connection) -> None:
    for i in range(5):
        insert_bar(conn, "BTCUSDT", "1m", T0 + i * 60_000, close=100.0 + i)
    insert_bar(conn, "BTCUSDT", "5m", T0, close=1.0)
    insert_bar(conn, "ETHUSDT", "1m", T0, close=2.0)

    every = read_bars(conn, "BTCUSDT", "1m")
    assert [bar.close for bar in every] == [100.0, 101.0, 102.0, 103.0, 104.0]
    middle = read_bars(conn, "BTCUSDT", "1m", start=T0 + 60_000, end=T0 + 180_000)
    assert [bar.ts for bar in middle] == [T0 + 60_000, T0 + 120_000]
    assert [bar.ts for bar in read_bars(conn, "BTCUSDT", "1m", start=T0 + 240_000)] == [
        T0 + 240_000
    ]
    assert [bar.ts for bar in read_bars(conn, "BTCUSDT", "1m", end=T0 + 1)] == [T0]
    assert read_bars(conn, "SOLUSDT", "1m") == []


def test_bars_read_back_as_events_with_nan_vwap_and_bool_flags(conn: sqlite3.Connection) -> None:
    insert_bar(conn, "BTCUSDT", "1m", T0, close=100.0, volume=0.0, vwap=None, filled=1, closed=0)

    (bar,) = read_bars(conn, "BTCUSDT", "1m")
    assert math.isnan(bar.vwap)
    assert bar.filled is True
    assert bar.closed is False
    assert (bar.symbol, bar.timeframe, bar.ts) == ("BTCUSDT", "1m", T0)
    assert (bar.open, bar.high, bar.low, bar.close) == (99.0, 101.0, 98.0, 100.0)
    assert (bar.volume, bar.quote_volume, bar.trades, bar.taker_buy_volume) == (0.0, 0.0, 3, 1.5)


def test_load_latest_bars_picks_the_newest_per_symbol_and_timeframe(
    conn: sqlite3.Connection,
) -> None:
    for i in range(3):
        insert_bar(conn, "BTCUSDT", "1m", T0 + i * 60_000, close=10.0 + i)
        insert_bar(conn, "ETHUSDT", "1m", T0 + i * 60_000, close=20.0 + i)
    insert_bar(conn, "BTCUSDT", "5m", T0, close=30.0, closed=0)

    latest = load_latest_bars(conn, ["BTCUSDT", "ETHUSDT", "SOLUSDT"], ("1m", "5m"))

    assert set(latest) == {("BTCUSDT", "1m"), ("ETHUSDT", "1m"), ("BTCUSDT", "5m")}
    assert latest["BTCUSDT", "1m"].close == 12.0
    assert latest["BTCUSDT", "1m"].ts == T0 + 120_000
    assert latest["ETHUSDT", "1m"].close == 22.0
    assert latest["BTCUSDT", "5m"].closed is False


def test_load_symbol_state_filters_by_market_and_stream(conn: sqlite3.Connection) -> None:
    conn.executemany(
        "INSERT INTO symbol_state VALUES (?, ?, ?, ?, ?, 0)",
        [
            ("spot", "trade", "BTCUSDT", 10, 1000),
            ("spot", "trade", "ETHUSDT", 20, 2000),
            ("spot", "aggTrade", "BTCUSDT", 30, 3000),
            ("usdm", "trade", "BTCUSDT", 40, 4000),
        ],
    )

    assert load_symbol_state(conn, "spot", "trade") == {
        "BTCUSDT": (10, 1000),
        "ETHUSDT": (20, 2000),
    }
    assert load_symbol_state(conn, "usdm", "trade") == {"BTCUSDT": (40, 4000)}
    assert load_symbol_state(conn, "coinm", "trade") == {}


def test_finalize_open_bars_closes_only_bars_that_have_ended(conn: sqlite3.Connection) -> None:
    insert_bar(conn, "BTCUSDT", "1m", T0, closed=0)  # ends T0 + 60 s
    insert_bar(conn, "BTCUSDT", "1m", T0 + 60_000, closed=0)  # ends T0 + 120 s
    insert_bar(conn, "BTCUSDT", "5m", T0 - 240_000, closed=0)  # ends T0 + 60 s
    insert_bar(conn, "ETHUSDT", "1m", T0, closed=1)

    changed = finalize_open_bars(conn, T0 + 60_000, now_ms=123)

    assert sorted(changed) == [("BTCUSDT", "1m", T0), ("BTCUSDT", "5m", T0 - 240_000)]
    rows = conn.execute(
        "SELECT symbol, timeframe, ts, closed, updated_at FROM bars ORDER BY symbol, timeframe, ts"
    ).fetchall()
    assert rows == [
        ("BTCUSDT", "1m", T0, 1, 123),
        ("BTCUSDT", "1m", T0 + 60_000, 0, 0),
        ("BTCUSDT", "5m", T0 - 240_000, 1, 123),
        ("ETHUSDT", "1m", T0, 1, 0),
    ]
    assert finalize_open_bars(conn, T0 + 60_000) == []


def test_latest_bar_round_trips_through_the_bar_event(conn: sqlite3.Connection) -> None:
    insert_bar(conn, "BTCUSDT", "1m", T0, close=100.0)
    expected = Bar("BTCUSDT", "1m", T0, 99.0, 101.0, 98.0, 100.0, 2.0, 199.0, 99.5, 3, 1.5)

    assert load_latest_bars(conn, ["BTCUSDT"], ["1m"]) == {("BTCUSDT", "1m"): expected}
