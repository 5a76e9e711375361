"""Pair and symbol snapshots through the batching writer into a real SQLite file."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pairwatch.analytics.engine import SNAPSHOT_METRICS, KalmanState, PairEngine, PairSpec
from pairwatch.analytics.symbol_metrics import SYMBOL_METRICS
from pairwatch.daemon import metrics_schema, retention, schema
from pairwatch.daemon.store import open_store
from pairwatch.daemon.store_reads import (
    load_kalman_states,
    load_pair_analytics,
    load_symbol_analytics,
)
from pairwatch.daemon.writer import Writer
from pairwatch.events import Bar, PairSnapshot, SymbolSnapshot

T0 = 1_700_000_040_000
NOW = 1_800_000_000_000
MIN = 60_000


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "pairwatch.db"


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


def pair(
    ts: int = T0,
    *,
    y: str = "ETHUSDT",
    x: str = "BTCUSDT",
    timeframe: str = "1m",
    window: int = 100,
    base: float = 1.0,
    adf_at: int | None = None,
) -> PairSnapshot:
    metrics = {name: base + k for k, name in enumerate(SNAPSHOT_METRICS)}
    return PairSnapshot(y, x, timeframe, window, ts, metrics, adf_at)


async def test_pair_snapshots_round_trip_with_non_finite_and_missing_values_as_null(
    writer: Writer, db: Path
) -> None:
    metrics = {name: float(k) for k, name in enumerate(SNAPSHOT_METRICS)}
    metrics |= {"zscore": math.nan, "half_life": math.inf, "correlation": -math.inf}
    del metrics["kalman_beta"]
    writer.put_pair_snapshots(
        [
            PairSnapshot("ETHUSDT", "BTCUSDT", "1m", 100, T0, metrics, adf_at=T0 - 5),
            PairSnapshot("ETHUSDT", "BTCUSDT", "1m", 100, T0 + MIN, {}, thin=True),
        ]
    )
    await flushed(writer)

    names = ", ".join(SNAPSHOT_METRICS)
    first, second = read(
        db,
        f"SELECT y, x, timeframe, window, ts, {names}, adf_at, thin, updated_at "
        "FROM analytics ORDER BY ts",
    )
    expected = [
        None if name in {"zscore", "half_life", "correlation", "kalman_beta"} else float(k)
        for k, name in enumerate(SNAPSHOT_METRICS)
    ]
    assert first == ("ETHUSDT", "BTCUSDT", "1m", 100, T0, *expected, T0 - 5, 0, NOW)
    assert second == (
        "ETHUSDT", "BTCUSDT", "1m", 100, T0 + MIN, *[None] * len(SNAPSHOT_METRICS), None, 1, NOW,
    )  # fmt: skip
    assert writer.analytics_written == 2

    conn = open_store(db, readonly=True)
    try:
        series = load_pair_analytics(conn, "ETHUSDT", "BTCUSDT", "1m", 100)
    finally:
        conn.close()
    assert list(series) == ["ts", *SNAPSHOT_METRICS, "adf_at", "thin"]
    assert series["ts"].dtype == np.int64
    assert series["ts"].tolist() == [T0, T0 + MIN]
    assert series["thin"].tolist() == [False, True]
    np.testing.assert_array_equal(series["adf_at"], [T0 - 5, np.nan])
    for k, name in enumerate(SNAPSHOT_METRICS):
        value = np.nan if expected[k] is None else expected[k]
        np.testing.assert_array_equal(series[name], [value, np.nan], err_msg=name)


async def test_a_thin_snapshot_stores_no_metrics_even_if_some_rode_along(
    writer: Writer, db: Path
) -> None:
    thin = PairSnapshot("ETHUSDT", "BTCUSDT", "1m", 100, T0, {"zscore": 2.0}, T0 - 1, thin=True)
    writer.put_pair_snapshots([thin])
    await flushed(writer)

    assert read(db, "SELECT zscore, adf_at, thin FROM analytics") == [(None, None, 1)]


async def test_rewriting_snapshots_is_idempotent_and_the_newest_values_win(
    writer: Writer, db: Path
) -> None:
    snapshots = [pair(T0 + i * MIN) for i in range(3)]
    writer.put_pair_snapshots(snapshots)
    writer.put_pair_snapshots(snapshots)  # a replay of the same bars
    await flushed(writer)
    assert read(db, "SELECT count(*), sum(zscore) FROM analytics") == [(3, 3 * 5.0)]

    writer.put_pair_snapshots([pair(T0, base=10.0, adf_at=T0)])
    await flushed(writer)
    assert read(db, "SELECT ts, zscore, adf_at FROM analytics ORDER BY ts") == [
        (T0, 14.0, T0),
        (T0 + MIN, 5.0, None),
        (T0 + 2 * MIN, 5.0, None),
    ]
    assert writer.analytics_written == 7  # three inserts, four updates


async def test_symbol_snapshots_round_trip_and_upsert(writer: Writer, db: Path) -> None:
    values = {"log_return": 0.01, "volatility": math.nan, "vwap": 100.5, "trades_zscore": 1.5}
    writer.put_symbol_snapshots(
        [
            SymbolSnapshot("BTCUSDT", "1m", 20, T0, values),
            SymbolSnapshot("BTCUSDT", "1m", 20, T0 + MIN, dict.fromkeys(SYMBOL_METRICS, 2.0)),
            SymbolSnapshot("BTCUSDT", "1m", 50, T0, {"log_return": 0.01}),
        ]
    )
    writer.put_symbol_snapshots([SymbolSnapshot("BTCUSDT", "1m", 20, T0, values)])
    await flushed(writer)

    names = ", ".join(SYMBOL_METRICS)
    assert read(
        db,
        f"SELECT symbol, timeframe, window, ts, {names}, updated_at FROM symbol_analytics "
        "ORDER BY window, ts",
    ) == [
        ("BTCUSDT", "1m", 20, T0, 0.01, None, 100.5, None, 1.5, NOW),
        ("BTCUSDT", "1m", 20, T0 + MIN, 2.0, 2.0, 2.0, 2.0, 2.0, NOW),
        ("BTCUSDT", "1m", 50, T0, 0.01, None, None, None, None, NOW),
    ]
    assert writer.symbol_analytics_written == 4

    conn = open_store(db, readonly=True)
    try:
        series = load_symbol_analytics(conn, "BTCUSDT", "1m", 20, from_ts=T0 + 1)
    finally:
        conn.close()
    assert list(series) == ["ts", *SYMBOL_METRICS]
    assert series["ts"].tolist() == [T0 + MIN]
    assert series["volatility"].tolist() == [2.0]


async def test_purge_by_timeframe_deletes_only_that_timeframe(writer: Writer, db: Path) -> None:
    for timeframe in ("1m", "5m"):
        for y in ("ETHUSDT", "SOLUSDT"):
            for window in (20, 100):
                writer.put_pair_snapshots(
                    [pair(T0 + i * MIN, y=y, timeframe=timeframe, window=window) for i in range(4)]
                )
        for symbol in ("BTCUSDT", "ETHUSDT"):
            writer.put_symbol_snapshots(
                [SymbolSnapshot(symbol, timeframe, 20, T0 + i * MIN, {}) for i in range(4)]
            )
    await flushed(writer)
    assert read(db, "SELECT count(*) FROM analytics") == [(32,)]

    writer.purge("analytics", T0 + 2 * MIN, timeframe="1m")
    writer.purge("symbol_analytics", T0 + 3 * MIN, timeframe="5m")
    await flushed(writer)

    assert read(db, "SELECT timeframe, count(*), min(ts) FROM analytics GROUP BY timeframe") == [
        ("1m", 8, T0 + 2 * MIN),
        ("5m", 16, T0),
    ]
    assert read(
        db, "SELECT y, window, count(*) FROM analytics WHERE timeframe = '1m' GROUP BY y, window"
    ) == [("ETHUSDT", 20, 2), ("ETHUSDT", 100, 2), ("SOLUSDT", 20, 2), ("SOLUSDT", 100, 2)]
    assert read(
        db, "SELECT timeframe, count(*), min(ts) FROM symbol_analytics GROUP BY timeframe"
    ) == [("1m", 8, T0), ("5m", 2, T0 + 3 * MIN)]
    assert writer.rows_purged == 8 + 6

    writer.purge("analytics", T0 + 10 * MIN)  # every timeframe
    writer.purge("symbol_analytics", T0 + MIN)
    writer.purge("analytics", T0 + 10 * MIN, timeframe="1m")  # nothing left: a no-op
    await flushed(writer)
    assert read(db, "SELECT count(*) FROM analytics") == [(0,)]
    assert read(db, "SELECT timeframe, count(*) FROM symbol_analytics GROUP BY timeframe") == [
        ("1m", 6),
        ("5m", 2),
    ]
    assert writer.rows_purged == 8 + 6 + 24 + 2


def test_purge_by_timeframe_is_refused_for_tables_without_one(writer: Writer) -> None:
    with pytest.raises(ValueError, match="cannot purge gaps by timeframe: only bars, analytics"):
        writer.purge("gaps", T0, timeframe="1m")


@pytest.mark.parametrize("table", ["analytics", "symbol_analytics"])
def test_retention_seeks_along_the_primary_key_and_never_scans(tmp_path: Path, table: str) -> None:
    conn = open_store(tmp_path / "pairwatch.db")
    try:
        key = metrics_schema.SERIES_KEYS[table]

        def plan(sql: str, n: int) -> str:
            rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", [None] * n).fetchall()
            return " | ".join(str(row[3]) for row in rows)

        first = plan(retention.first_series_sql(table), 0)
        assert "TEMP B-TREE" not in first
        assert f"SCAN {table}" in first  # in key order, stopped after one row by LIMIT 1
        # The whole key, ts included: on the series columns alone SQLite searched with the
        # same plan text but stepped through every row of the series.
        assert plan(retention.next_series_sql(table), len(key)) == (
            f"SEARCH {table} USING PRIMARY KEY "
            f"(({','.join(key)},ts)>({','.join('?' * (len(key) + 1))}))"
        )
        match = " AND ".join(f"{c}=?" for c in key)
        assert plan(retention.purge_series_sql(table), len(key) + 1) == (
            f"SEARCH {table} USING PRIMARY KEY ({match} AND ts<?)"
        )
    finally:
        conn.close()


async def test_engine_snapshots_are_stored_as_the_engine_computed_them(
    writer: Writer, db: Path
) -> None:
    spec = PairSpec("ETHUSDT", "BTCUSDT", "1m", MIN, (3,), min_trades=2, adf_lookback=20)
    engine = PairEngine([spec])
    bars = []
    for i in range(8):
        trades = 1 if i == 5 else 4  # one thin bar
        for symbol, price in (("ETHUSDT", 2000.0 + 7 * i + (i % 3)), ("BTCUSDT", 40000.0 + i)):
            bars.append(
                Bar(symbol, "1m", T0 + i * MIN, price, price, price, price, 1.0, price, price,
                    trades, 0.5)
            )  # fmt: skip
    pairs, symbols = engine.on_bars(bars)
    writer.put_pair_snapshots(pairs)
    writer.put_symbol_snapshots(symbols)
    await flushed(writer)

    conn = open_store(db, readonly=True)
    try:
        stored = load_pair_analytics(conn, "ETHUSDT", "BTCUSDT", "1m", 3)
        eth = load_symbol_analytics(conn, "ETHUSDT", "1m", 3)
    finally:
        conn.close()
    pairs.sort(key=lambda s: s.ts)  # the engine emits thin snapshots first
    assert stored["ts"].tolist() == [s.ts for s in pairs]
    assert stored["thin"].tolist() == [s.thin for s in pairs] == [i == 5 for i in range(8)]
    for name in SNAPSHOT_METRICS:
        expected = [math.nan if s.thin else s.metrics[name] for s in pairs]
        np.testing.assert_array_equal(stored[name], expected, err_msg=name)
    assert np.isfinite(stored["zscore"][-1])  # warmed up: real values, not only NaN
    eth_snapshots = [s for s in symbols if s.symbol == "ETHUSDT"]
    for name in SYMBOL_METRICS:
        np.testing.assert_array_equal(eth[name], [s.metrics[name] for s in eth_snapshots])


def test_snapshot_rows_map_every_non_finite_value_to_null() -> None:
    snapshot = PairSnapshot("A", "B", "1s", 3, 0, {"zscore": -math.inf, "spread": 0.0})
    (row,) = metrics_schema.pair_snapshot_rows([snapshot], NOW, ("zscore", "spread", "hurst"))
    assert row == ("A", "B", "1s", 3, 0, None, 0.0, None, None, 0, NOW)
    assert isinstance(row[6], float)


def test_the_upsert_names_its_columns_and_conflict_target() -> None:
    sql = metrics_schema.upsert_sql("symbol_analytics", ("log_return", "vwap"))
    assert sql == (
        "INSERT INTO symbol_analytics (symbol, timeframe, window, ts, log_return, vwap, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (symbol, timeframe, window, ts) "
        "DO UPDATE SET log_return = excluded.log_return, vwap = excluded.vwap, "
        "updated_at = excluded.updated_at"
    )
    conn = sqlite3.connect(":memory:")
    try:
        for statement in (*schema.MIGRATIONS[0], *schema.MIGRATIONS[1]):
            conn.execute(statement)
        conn.execute(sql, ("BTCUSDT", "1m", 20, T0, 0.5, None, NOW))
        conn.execute(sql, ("BTCUSDT", "1m", 20, T0, 0.25, 9.0, NOW + 1))
        assert conn.execute(
            "SELECT log_return, vwap, volatility, updated_at FROM symbol_analytics"
        ).fetchall() == [(0.25, 9.0, None, NOW + 1)]
    finally:
        conn.close()


def test_the_exported_upserts_take_the_snapshot_row_layout(tmp_path: Path) -> None:
    assert (
        metrics_schema.upsert_sql("analytics", SNAPSHOT_METRICS) == metrics_schema.UPSERT_ANALYTICS
    )
    assert (
        metrics_schema.upsert_sql("symbol_analytics", SYMBOL_METRICS)
        == metrics_schema.UPSERT_SYMBOL_ANALYTICS
    )
    conn = open_store(tmp_path / "pairwatch.db")
    try:
        conn.executemany(
            metrics_schema.UPSERT_ANALYTICS,
            metrics_schema.pair_snapshot_rows([pair()], NOW, SNAPSHOT_METRICS),
        )
        conn.executemany(
            metrics_schema.UPSERT_SYMBOL_ANALYTICS,
            metrics_schema.symbol_snapshot_rows(
                [SymbolSnapshot("BTCUSDT", "1m", 20, T0, {"vwap": 3.0})], NOW, SYMBOL_METRICS
            ),
        )
        coint_pvalue = 1.0 + SNAPSHOT_METRICS.index("coint_pvalue")  # as pair() builds it
        assert conn.execute("SELECT zscore, coint_pvalue, thin FROM analytics").fetchall() == [
            (5.0, coint_pvalue, 0)
        ]
        assert conn.execute("SELECT vwap, log_return FROM symbol_analytics").fetchall() == [
            (3.0, None)
        ]
    finally:
        conn.close()


def test_kalman_states_round_trip_one_row_per_series(tmp_path: Path) -> None:
    db = tmp_path / "k.sqlite3"
    open_store(db).close()
    writer = Writer(db)
    writer.start()
    first = KalmanState(
        "ETHUSDT", "BTCUSDT", "1m", 100, 60_000, (0.7, 0.1, 1e-4, -2e-5, 3e-4, 42.0)
    )
    later = KalmanState(
        "ETHUSDT", "BTCUSDT", "1m", 100, 120_000, (0.71, 0.09, 1e-4, 0.0, 3e-4, 43.0)
    )
    other = KalmanState("ETHUSDT", "BTCUSDT", "1m", 30, 120_000, (0.5, 0.2, 1.0, 0.0, 1.0, 1.0))
    writer.put_kalman_states([first, other])
    writer.put_kalman_states([later])
    writer.close()
    assert writer.kalman_states_written == 3
    conn = open_store(db, readonly=True)
    try:
        assert sorted(load_kalman_states(conn), key=lambda k: k.window) == [other, later]
    finally:
        conn.close()
