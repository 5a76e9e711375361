"""Schema versions 2 and 3: a version-1 file migrates; metric columns follow the registry."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pairwatch.analytics import engine, symbol_metrics
from pairwatch.daemon import schema
from pairwatch.daemon.store import (
    add_metric_columns,
    count_rows,
    open_store,
    schema_version,
    table_columns,
)
from pairwatch.daemon.store_reads import load_pair_analytics, load_symbol_analytics, read_bars
from pairwatch.daemon.writer import Writer
from pairwatch.errors import StoreError
from pairwatch.events import Bar, PairSnapshot, SymbolSnapshot

T0 = 1_700_000_040_000
NOW = 1_800_000_000_000

PAIR_COLUMNS_V2 = [
    "y", "x", "timeframe", "window", "ts",
    "hedge_ratio", "intercept", "spread", "spread_std", "zscore", "correlation",
    "price_correlation", "half_life", "kalman_beta", "kalman_alpha", "kalman_spread",
    "kalman_zscore", "max_abs_zscore", "adf_stat", "adf_pvalue", "adf_lag", "coint_pvalue",
    "adf_at", "thin", "updated_at",
]  # fmt: skip
SYMBOL_COLUMNS_V2 = [
    "symbol", "timeframe", "window", "ts",
    "log_return", "volatility", "vwap", "volume_zscore", "trades_zscore", "updated_at",
]  # fmt: skip


def create_v1_store(path: Path) -> None:
    """Write a file as pairwatch schema version 1 left it, with two bars."""
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        raw.execute("BEGIN")
        for statement in schema.MIGRATIONS[0]:
            raw.execute(statement)
        raw.execute("PRAGMA user_version = 1")
        raw.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
        raw.executemany(
            "INSERT INTO bars VALUES (?, '1m', ?, 99, 101, 98, ?, 2, 199, 99.5, 3, 1.5, 0, 1, 7)",
            [("BTCUSDT", T0, 100.0), ("BTCUSDT", T0 + 60_000, 101.0)],
        )
        raw.execute("COMMIT")
    finally:
        raw.close()


def test_a_version_1_file_migrates_to_the_current_version_and_keeps_its_bars(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pairwatch.db"
    create_v1_store(path)
    with pytest.raises(StoreError, match=f"schema version 1, older than {schema.SCHEMA_VERSION}"):
        open_store(path, readonly=True)

    conn = open_store(path)
    try:
        assert schema_version(conn) == schema.SCHEMA_VERSION
        assert [(b.ts, b.close) for b in read_bars(conn, "BTCUSDT", "1m")] == [
            (T0, 100.0),
            (T0 + 60_000, 101.0),
        ]
        assert table_columns(conn, "analytics") == PAIR_COLUMNS_V2
        assert table_columns(conn, "symbol_analytics") == SYMBOL_COLUMNS_V2
        assert count_rows(conn, "analytics") == 0
        assert count_rows(conn, "symbol_analytics") == 0
        assert table_columns(conn, "kalman_state") == [
            *("y", "x", "timeframe", "window", "ts", "beta", "alpha"),
            *("p00", "p01", "p11", "bars", "updated_at"),
        ]
    finally:
        conn.close()
    reader = open_store(path, readonly=True)
    try:
        assert schema_version(reader) == schema.SCHEMA_VERSION
    finally:
        reader.close()


def test_the_version_2_columns_are_the_registered_metrics_of_that_version() -> None:
    # If this fails, a metric was registered or renamed: a new one is fine (it becomes a
    # column on open), but the frozen v2 step must keep its columns.
    assert PAIR_COLUMNS_V2[5:-3] == list(engine.SNAPSHOT_METRICS)
    assert SYMBOL_COLUMNS_V2[4:-1] == list(symbol_metrics.SYMBOL_METRICS)


def test_primary_keys_of_the_analytics_tables(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "pairwatch.db")
    try:
        pk = {
            table: [
                name
                for _, name in sorted(
                    (row[5], row[1])
                    for row in conn.execute(f"PRAGMA table_info({table})")
                    if row[5]
                )
            ]
            for table in ("analytics", "symbol_analytics")
        }
        assert pk == {
            "analytics": ["y", "x", "timeframe", "window", "ts"],
            "symbol_analytics": ["symbol", "timeframe", "window", "ts"],
        }
        without_rowid = conn.execute(
            "SELECT name FROM sqlite_master WHERE name IN ('analytics', 'symbol_analytics') "
            "AND sql LIKE '%WITHOUT ROWID%' ORDER BY name"
        ).fetchall()
        assert without_rowid == [("analytics",), ("symbol_analytics",)]
    finally:
        conn.close()


async def test_a_newly_registered_metric_becomes_a_column_and_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pairwatch.db"
    open_store(path).close()
    monkeypatch.setattr(engine, "SNAPSHOT_METRICS", (*engine.SNAPSHOT_METRICS, "hurst"))
    monkeypatch.setattr(symbol_metrics, "SYMBOL_METRICS", (*symbol_metrics.SYMBOL_METRICS, "skew"))

    # A read-only open neither adds nor needs the new columns.
    reader = open_store(path, readonly=True)
    try:
        assert "hurst" not in table_columns(reader, "analytics")
        assert "hurst" not in load_pair_analytics(reader, "ETHUSDT", "BTCUSDT", "1m", 100)
    finally:
        reader.close()

    conn = open_store(path)
    try:
        assert table_columns(conn, "analytics") == [*PAIR_COLUMNS_V2, "hurst"]
        assert table_columns(conn, "symbol_analytics") == [*SYMBOL_COLUMNS_V2, "skew"]
        assert schema_version(conn) == schema.SCHEMA_VERSION
        assert add_metric_columns(conn) == []  # idempotent
    finally:
        conn.close()
    open_store(path).close()  # and again on the next open

    writer = Writer(path, clock=lambda: NOW)
    writer.start()
    try:
        metrics = dict.fromkeys(engine.SNAPSHOT_METRICS, 1.0) | {"hurst": 0.42}
        writer.put_pair_snapshots([PairSnapshot("ETHUSDT", "BTCUSDT", "1m", 100, T0, metrics)])
        writer.put_symbol_snapshots(
            [SymbolSnapshot("BTCUSDT", "1m", 100, T0, {"log_return": 0.5, "skew": -0.25})]
        )
        writer.flush().result(30)
    finally:
        writer.close(10)

    conn = open_store(path, readonly=True)
    try:
        pair = load_pair_analytics(conn, "ETHUSDT", "BTCUSDT", "1m", 100)
        assert pair["hurst"].tolist() == [0.42]
        assert pair["zscore"].tolist() == [1.0]
        symbol = load_symbol_analytics(conn, "BTCUSDT", "1m", 100)
        assert symbol["skew"].tolist() == [-0.25]
        assert symbol["log_return"].tolist() == [0.5]
    finally:
        conn.close()


def test_a_version_1_file_gets_new_metric_columns_after_its_migration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "pairwatch.db"
    create_v1_store(path)
    monkeypatch.setattr(engine, "SNAPSHOT_METRICS", (*engine.SNAPSHOT_METRICS, "hurst"))

    conn = open_store(path)
    try:
        assert schema_version(conn) == schema.SCHEMA_VERSION
        assert table_columns(conn, "analytics") == [*PAIR_COLUMNS_V2, "hurst"]
        assert count_rows(conn, "bars") == 2
    finally:
        conn.close()


@pytest.mark.parametrize("name", ["ts", "thin", "Zscore", "z score", "x); DROP TABLE bars; --"])
def test_a_metric_name_that_cannot_be_a_column_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setattr(engine, "SNAPSHOT_METRICS", (*engine.SNAPSHOT_METRICS, name))
    path = tmp_path / "pairwatch.db"

    with pytest.raises(StoreError, match="invalid metric name"):
        open_store(path)
    with pytest.raises(StoreError, match="invalid metric name"):
        Writer(path)
    raw = sqlite3.connect(path)
    try:
        # The migration itself committed; nothing else was touched.
        assert raw.execute("SELECT count(*) FROM bars").fetchone()[0] == 0
        assert table_columns(raw, "analytics") == PAIR_COLUMNS_V2
    finally:
        raw.close()


def test_duplicate_metric_names_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "SNAPSHOT_METRICS", (*engine.SNAPSHOT_METRICS, "zscore"))
    with pytest.raises(StoreError, match="metric names of analytics are not unique"):
        open_store(tmp_path / "pairwatch.db")


def test_bars_from_before_the_migration_still_read_back_as_events(tmp_path: Path) -> None:
    path = tmp_path / "pairwatch.db"
    create_v1_store(path)
    conn = open_store(path)
    try:
        first = read_bars(conn, "BTCUSDT", "1m")[0]
        assert first == Bar("BTCUSDT", "1m", T0, 99.0, 101.0, 98.0, 100.0, 2.0, 199.0, 99.5, 3, 1.5)
    finally:
        conn.close()
