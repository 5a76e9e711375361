"""Opening, creating and migrating real SQLite store files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pairwatch import __version__
from pairwatch.daemon import schema, store
from pairwatch.daemon.store import count_rows, open_store, schema_version
from pairwatch.errors import StoreError


def test_open_creates_parent_dirs_and_migrates_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "pairwatch.db"
    conn = open_store(path)
    try:
        assert path.is_file()
        assert schema_version(conn) == schema.SCHEMA_VERSION == len(schema.MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert conn.execute("PRAGMA application_id").fetchone()[0] == schema.APPLICATION_ID
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        assert tables == set(schema.TABLES)
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        assert meta["app_version"] == __version__
        assert isinstance(meta["created_at"], int)
        assert meta["created_at"] > 1_600_000_000_000
    finally:
        conn.close()


def test_reopen_keeps_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "pairwatch.db"
    conn = open_store(path)
    conn.execute(
        "INSERT INTO symbol_state VALUES ('spot', 'trade', 'BTCUSDT', 42, 1700000000000, 1)"
    )
    created_at = conn.execute("SELECT value FROM meta WHERE key = 'created_at'").fetchone()[0]
    conn.close()

    conn = open_store(path)
    try:
        assert count_rows(conn, "symbol_state") == 1
        assert conn.execute("SELECT last_trade_id FROM symbol_state").fetchone()[0] == 42
        again = conn.execute("SELECT value FROM meta WHERE key = 'created_at'").fetchone()[0]
        assert again == created_at
        assert schema_version(conn) == schema.SCHEMA_VERSION
    finally:
        conn.close()


def test_each_migration_step_commits_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing_step = ("CREATE TABLE extra (x INTEGER)", "INSERT INTO no_such_table VALUES (1)")
    monkeypatch.setattr(store, "MIGRATIONS", (*schema.MIGRATIONS, failing_step))
    monkeypatch.setattr(store, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    path = tmp_path / "pairwatch.db"

    with pytest.raises(StoreError, match="no such table"):
        open_store(path)

    raw = sqlite3.connect(path)
    try:
        # Step 1 stayed committed; the failed step left nothing behind.
        assert raw.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
        names = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
        assert "bars" in names
        assert "extra" not in names
    finally:
        raw.close()


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pairwatch.db"
    open_store(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    raw.close()

    newer, known = schema.SCHEMA_VERSION + 1, schema.SCHEMA_VERSION
    with pytest.raises(
        StoreError, match=rf"schema version {newer}, newer than .* knows \({known}\)"
    ):
        open_store(path)
    with pytest.raises(StoreError, match="newer than"):
        open_store(path, readonly=True)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not an SQLite database, just some text\n" * 100)

    with pytest.raises(StoreError, match="is not an SQLite database"):
        open_store(path)
    with pytest.raises(StoreError, match="is not an SQLite database"):
        open_store(path, readonly=True)
    assert path.read_bytes().startswith(b"this is not")


def test_a_foreign_sqlite_database_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    raw.commit()
    raw.close()

    with pytest.raises(StoreError, match="already holds 1 tables but no pairwatch schema"):
        open_store(path)

    raw = sqlite3.connect(path)
    try:
        names = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
        assert names == {"customers"}
    finally:
        raw.close()


def test_a_directory_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open store"):
        open_store(tmp_path)


def test_readonly_reads_but_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "pairwatch.db"
    conn = open_store(path)
    conn.execute("INSERT INTO meta VALUES ('probe', 7)")
    conn.close()

    reader = open_store(path, readonly=True)
    try:
        assert reader.execute("SELECT value FROM meta WHERE key = 'probe'").fetchone()[0] == 7
        with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only"):
            reader.execute("INSERT INTO meta VALUES ('other', 1)")
    finally:
        reader.close()


def test_readonly_needs_an_existing_migrated_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such database file"):
        open_store(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(StoreError, match="not a pairwatch database"):
        open_store(empty, readonly=True)


def test_count_rows_rejects_unknown_tables(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "pairwatch.db")
    try:
        assert count_rows(conn, "bars") == 0
        with pytest.raises(ValueError, match="unknown table 'sqlite_master; --'"):
            count_rows(conn, "sqlite_master; --")
    finally:
        conn.close()


def test_an_existing_empty_file_is_initialised(tmp_path: Path) -> None:
    path = tmp_path / "pairwatch.db"
    path.touch()

    conn = open_store(path)
    try:
        assert schema_version(conn) == schema.SCHEMA_VERSION
        assert count_rows(conn, "bars") == 0
    finally:
        conn.close()
