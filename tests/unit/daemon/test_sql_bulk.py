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


def _groups(statement: str) -> int:
    """Return the number of row groups in a traced multi-row insert."""
    return statement.count("(") - 2  # the column names and the VALUES subquery


@pytest.mark.parametrize("count", [0, 1, 2, 3, 22, 255, 256, 257, 1000])
def test_each_chunk_of_rows_is_one_statement_padded_to_a_power_of_two(count: int) -> None:
    conn = _db()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    data = [(k, k / 7, str(k)) for k in range(count)]
    assert insert_rows(conn, IGNORE, data) == count
    assert _table(conn) == [(k, k / 7, str(k), 0) for k in range(count)]
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert len(inserts) == -(-count // MAX_CHUNK)  # 22 rows: one statement, not 16 + 4 + 2
    groups = [_groups(s) for s in inserts]
    assert all(g & (g - 1) == 0 and g <= MAX_CHUNK for g in groups)
    sizes = [min(MAX_CHUNK, count - start) for start in range(0, count, MAX_CHUNK)]
    assert all(n <= g < 2 * n for g, n in zip(groups, sizes, strict=True))


def test_a_row_of_nulls_is_inserted_and_only_the_padding_is_dropped() -> None:
    conn = _db()
    data: list[tuple[int | None, float | None, str | None]] = [(None, None, None)] * 3
    assert insert_rows(conn, IGNORE, data) == 3  # padded to 4 groups: 3 rows inserted
    assert conn.execute("SELECT count(*), count(v), count(s) FROM t").fetchone() == (3, 0, 0)


def test_a_chunk_stays_within_the_parameter_limit() -> None:
    conn = _db()
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)  # 4 parameters a group: 2 groups
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    assert insert_rows(conn, IGNORE, [(k, 0.5, "x") for k in range(7)]) == 7
    assert [_groups(s) for s in statements if s.startswith("INSERT")] == [2, 2, 2, 1]
    assert len(_table(conn)) == 7


def test_the_rows_are_selected_from_marked_groups_and_the_conflict_clause_kept() -> None:
    assert multi_row(UPSERT, 2) == (
        "INSERT INTO t (k, v, s) SELECT column2, column3, column4 "
        "FROM (VALUES (?, ?, ?, ?), (?, ?, ?, ?)) WHERE column1 IS NOT NULL "
        "ON CONFLICT (k) DO UPDATE SET v = excluded.v, s = excluded.s, n = n + 1"
    )


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
