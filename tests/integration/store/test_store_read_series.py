"""Warm-up, replay and web reads: recent closed bars, aligned closes, a pair's analytics."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pairwatch.analytics.engine import SNAPSHOT_METRICS
from pairwatch.daemon.store import open_store
from pairwatch.daemon.store_reads import (
    load_aligned_closes,
    load_pair_analytics,
    load_recent_closed_bars,
)
from pairwatch.events import Bar

T0 = 1_700_000_040_000  # a whole minute
MIN = 60_000


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_store(tmp_path / "pairwatch.db")
    yield connection
    connection.close()


def insert_bar(
    conn: sqlite3.Connection,
    symbol: str,
    ts: int,
    close: float,
    *,
    timeframe: str = "1m",
    trades: int = 3,
    closed: int = 1,
) -> None:
    conn.execute(
        "INSERT INTO bars VALUES (?, ?, ?, 99, 101, 98, ?, 2, 199, 99.5, ?, 1.5, 0, ?, 0)",
        (symbol, timeframe, ts, close, trades, closed),
    )


def bar(ts: int, close: float) -> Bar:
    return Bar("BTCUSDT", "1m", ts, 99.0, 101.0, 98.0, close, 2.0, 199.0, 99.5, 3, 1.5)


def test_load_recent_closed_bars_returns_the_newest_closed_bars_oldest_first(
    conn: sqlite3.Connection,
) -> None:
    for i in range(6):
        insert_bar(conn, "BTCUSDT", T0 + i * MIN, 100.0 + i)
    insert_bar(conn, "BTCUSDT", T0 + 6 * MIN, 106.0, closed=0)  # still open: never warm-up
    insert_bar(conn, "BTCUSDT", T0 + 5 * MIN, 1.0, timeframe="5m")
    insert_bar(conn, "ETHUSDT", T0 + 5 * MIN, 2.0)

    assert load_recent_closed_bars(conn, "BTCUSDT", "1m", 3) == [
        bar(T0 + 3 * MIN, 103.0),
        bar(T0 + 4 * MIN, 104.0),
        bar(T0 + 5 * MIN, 105.0),
    ]
    assert load_recent_closed_bars(conn, "BTCUSDT", "1m", 3, before_ts=T0 + 4 * MIN) == [
        bar(T0 + MIN, 101.0),
        bar(T0 + 2 * MIN, 102.0),
        bar(T0 + 3 * MIN, 103.0),
    ]
    every = load_recent_closed_bars(conn, "BTCUSDT", "1m", 100)
    assert [b.ts for b in every] == [T0 + i * MIN for i in range(6)]
    assert load_recent_closed_bars(conn, "BTCUSDT", "1m", 2, before_ts=T0 + 1) == [bar(T0, 100.0)]
    assert load_recent_closed_bars(conn, "BTCUSDT", "1m", 0) == []
    assert load_recent_closed_bars(conn, "SOLUSDT", "1m", 5) == []


def test_load_aligned_closes_joins_the_legs_closed_bars_on_ts(conn: sqlite3.Connection) -> None:
    for i in range(5):
        insert_bar(conn, "BTCUSDT", T0 + i * MIN, 40_000.0 + i, trades=10 + i, closed=int(i < 4))
        if i != 2:  # ETH has no bar at T0 + 2 min
            insert_bar(conn, "ETHUSDT", T0 + i * MIN, 2_000.0 + i, trades=20 + i)
    insert_bar(conn, "ETHUSDT", T0 + 5 * MIN, 2_005.0)  # BTC has none there
    insert_bar(conn, "ETHUSDT", T0, 1.0, timeframe="5m")
    insert_bar(conn, "BTCUSDT", T0, 2.0, timeframe="5m", closed=0)

    aligned = load_aligned_closes(conn, "ETHUSDT", "BTCUSDT", "1m")

    assert list(aligned) == ["ts", "y_close", "x_close", "y_trades", "x_trades"]
    assert aligned["ts"].dtype == np.int64
    assert aligned["y_close"].dtype == np.float64
    assert aligned["y_trades"].dtype == np.int64
    # T0 + 2 min: ETH missing; T0 + 4 min: BTC's bar is open; T0 + 5 min: BTC missing.
    assert aligned["ts"].tolist() == [T0, T0 + MIN, T0 + 3 * MIN]
    assert aligned["y_close"].tolist() == [2_000.0, 2_001.0, 2_003.0]
    assert aligned["x_close"].tolist() == [40_000.0, 40_001.0, 40_003.0]
    assert aligned["y_trades"].tolist() == [20, 21, 23]
    assert aligned["x_trades"].tolist() == [10, 11, 13]

    window = load_aligned_closes(
        conn, "ETHUSDT", "BTCUSDT", "1m", from_ts=T0 + MIN, to_ts=T0 + 3 * MIN
    )
    assert window["ts"].tolist() == [T0 + MIN]
    assert window["x_close"].tolist() == [40_001.0]
    assert load_aligned_closes(conn, "ETHUSDT", "BTCUSDT", "1m", from_ts=T0 + MIN)[
        "ts"
    ].tolist() == [T0 + MIN, T0 + 3 * MIN]
    assert load_aligned_closes(conn, "ETHUSDT", "BTCUSDT", "1m", to_ts=T0 + MIN)["ts"].tolist() == [
        T0
    ]
    # The legs swapped: same times, closes swapped.
    swapped = load_aligned_closes(conn, "BTCUSDT", "ETHUSDT", "1m")
    assert swapped["y_close"].tolist() == [40_000.0, 40_001.0, 40_003.0]


def test_load_aligned_closes_of_an_unknown_pair_is_empty_arrays(conn: sqlite3.Connection) -> None:
    insert_bar(conn, "BTCUSDT", T0, 1.0)

    empty = load_aligned_closes(conn, "ETHUSDT", "BTCUSDT", "1m")

    assert {name: (a.dtype, a.shape) for name, a in empty.items()} == {
        "ts": (np.dtype(np.int64), (0,)),
        "y_close": (np.dtype(np.float64), (0,)),
        "x_close": (np.dtype(np.float64), (0,)),
        "y_trades": (np.dtype(np.int64), (0,)),
        "x_trades": (np.dtype(np.int64), (0,)),
    }


def test_load_pair_analytics_of_an_empty_series_has_every_column(
    conn: sqlite3.Connection,
) -> None:
    series = load_pair_analytics(conn, "ETHUSDT", "BTCUSDT", "1m", 100)

    assert list(series) == ["ts", *SNAPSHOT_METRICS, "adf_at", "thin"]
    assert all(len(a) == 0 for a in series.values())
    assert series["thin"].dtype == np.bool_
    assert series["adf_at"].dtype == np.float64


def test_load_pair_analytics_selects_one_series_and_a_half_open_range(
    conn: sqlite3.Connection,
) -> None:
    rows = [
        ("ETHUSDT", "BTCUSDT", "1m", 100, T0 + i * MIN, 0.5 * i, None if i == 1 else T0, i == 3)
        for i in range(4)
    ]
    rows.append(("ETHUSDT", "BTCUSDT", "1m", 20, T0, 9.0, None, 0))
    rows.append(("ETHUSDT", "BTCUSDT", "5m", 100, T0, 9.0, None, 0))
    rows.append(("BTCUSDT", "ETHUSDT", "1m", 100, T0, 9.0, None, 0))
    conn.executemany(
        "INSERT INTO analytics (y, x, timeframe, window, ts, zscore, adf_at, thin, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
        rows,
    )

    series = load_pair_analytics(conn, "ETHUSDT", "BTCUSDT", "1m", 100, T0 + MIN, T0 + 3 * MIN)
    assert series["ts"].tolist() == [T0 + MIN, T0 + 2 * MIN]
    assert series["zscore"].tolist() == [0.5, 1.0]
    np.testing.assert_array_equal(series["adf_at"], [np.nan, T0])
    np.testing.assert_array_equal(series["hedge_ratio"], [np.nan, np.nan])
    every = load_pair_analytics(conn, "ETHUSDT", "BTCUSDT", "1m", 100)
    assert every["thin"].tolist() == [False, False, False, True]
