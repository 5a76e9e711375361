"""Multi-row inserts (``sql_bulk``) against ``executemany``, the oracle, on real SQLite."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairwatch.daemon.sql_bulk import MAX_CHUNK, insert_rows, multi_row

SCHEMA = "CREATE TABLE t (k INTEGER PRIMARY KEY, v REAL, s TEXT, n INTEGER NOT NULL DEFAULT 0)"
UPSERT = "INSERT INTO t (k, v, s) VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v, s = excluded.s, n = n + 1"  # noqa: E501
IGNORE = "INSERT OR IGNORE INTO t (k, v, s) VALUES (?, ?, ?)"

rows = st.lists(
    st.tuples(
        st.integers(0, 40),  # few keys: conflicts within one call
        st.one_of(st.none(), st.floats(allow_nan=False)),
        st.one_of(st.none(), st.text(max_size=5)),
    ),
    max_size=600,
)


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute(SCHEMA)
    return conn


def _table(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return conn.execute("SELECT k, v, s, n FROM t ORDER BY k").fetchall()


@settings(max_examples=60, deadline=None)
@given(rows, st.sampled_from([UPSERT, IGNORE]))
def test_the_rows_and_the_count_equal_executemany(data: list[tuple[int, float | None, str | None]],
                                                  sql: str) -> None:  # fmt: skip
    bulk, oracle = _db(), _db()
    changed = insert_rows(bulk, sql, data)
    expected = oracle.executemany(sql, data).rowcount
    assert _table(bulk) == _table(oracle)  # floats bit for bit: they are bound, not parsed
    assert changed == expected


@pytest.mark.parametrize("count", [0, 1, 2, 3, 255, 256, 257, 1000])
def test_rows_go_in_chunks_of_powers_of_two(count: int) -> None:
    conn = _db()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    data = [(k, k / 7, str(k)) for k in range(count)]
    assert insert_rows(conn, IGNORE, data) == count
    assert _table(conn) == [(k, k / 7, str(k), 0) for k in range(count)]
    # one group per row, one for the column names
    sizes = [s.count("(") - 1 for s in statements if s.startswith("INSERT")]
    assert sum(sizes) == count
    assert all(size & (size - 1) == 0 and size <= MAX_CHUNK for size in sizes)


def test_a_chunk_stays_within_the_parameter_limit() -> None:
    conn = _db()
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)  # 3 parameters a row: 3 rows
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    assert insert_rows(conn, IGNORE, [(k, 0.5, "x") for k in range(7)]) == 7
    assert [s.count("(") - 1 for s in statements if s.startswith("INSERT")] == [3, 3, 1]
    assert len(_table(conn)) == 7


def test_the_values_group_is_repeated_and_the_conflict_clause_kept() -> None:
    assert multi_row(UPSERT, 2) == UPSERT.replace("(?, ?, ?)", "(?, ?, ?), (?, ?, ?)")


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE t SET v = ? WHERE k = ?",
        "INSERT INTO t (k, v) VALUES (?, 1.5)",
        "INSERT INTO t (k) VALUES (?), (?)",
    ],
)
def test_a_statement_that_is_not_a_one_row_insert_is_refused(sql: str) -> None:
    with pytest.raises(ValueError, match="one group of \\? placeholders"):
        multi_row(sql, 2)
