"""``fastread``: SQLite's C API from numba gives what Python's sqlite3 gives, as float64."""

from __future__ import annotations

import math
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from pairwatch.web import fastread


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "values.sqlite3"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (k TEXT, ts INTEGER, v REAL, n INTEGER, flag INTEGER)")
        rows = [
            ("a", 1_723_161_255_342 + i, None if i % 7 == 0 else i / 3, i * 1_000, i % 2)
            for i in range(1_000)
        ]
        rows.append(("b", 2**53, -0.0, -(2**53), 0))
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)
    return path


def python_rows(db: Path, sql: str, params: list[object]) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


def as_matrix(rows: list[tuple[object, ...]]) -> np.ndarray:  # type: ignore[type-arg]
    return np.array([[math.nan if v is None else v for v in row] for row in rows], dtype=float)


@pytest.mark.parametrize("chunk", [1, 7, 1_000, 5_000])
def test_the_fast_reader_equals_python_sqlite3_in_any_chunking(db: Path, chunk: int) -> None:
    assert fastread.available()
    sql = "SELECT ts, v, n, flag FROM t WHERE k = ? AND ts >= ? ORDER BY ts"
    params: list[fastread.Param] = ["a", 1_723_161_255_342 + 10]
    reader = fastread.FastReader(db)
    try:
        blocks = list(reader.matrices(sql, params, 4, chunk))
    finally:
        reader.close()
    assert all(len(b) <= chunk for b in blocks)
    got = np.concatenate(blocks)
    expected = as_matrix(python_rows(db, sql, list(params)))
    assert got.shape == (990, 4)
    np.testing.assert_array_equal(got, expected)  # NULL as NaN, exact values
    assert np.isnan(got[:, 1]).sum() == sum(1 for i in range(10, 1_000) if i % 7 == 0)


def test_integers_up_to_two_to_the_53_and_text_and_float_parameters_are_exact(db: Path) -> None:
    reader = fastread.FastReader(db)
    try:
        (block,) = reader.matrices("SELECT ts, n, v FROM t WHERE k = ? AND v <= ?", ["b", 0.5], 3)
    finally:
        reader.close()
    assert block.tolist() == [[2.0**53, -(2.0**53), 0.0]]


def test_an_empty_result_yields_nothing_and_the_python_reader_agrees(db: Path) -> None:
    sql = "SELECT ts FROM t WHERE k = ?"
    fast = fastread.FastReader(db)
    slow = fastread.PythonReader(sqlite3.connect(db))
    try:
        assert list(fast.matrices(sql, ["zz"], 1)) == []
        assert list(slow.matrices(sql, ["zz"], 1)) == []
        both = [np.concatenate(list(r.matrices(sql, ["a"], 1, 64))) for r in (fast, slow)]
        np.testing.assert_array_equal(both[0], both[1])
    finally:
        fast.close()
        slow.close()


def test_errors_name_the_problem_and_a_closed_reader_refuses(db: Path, tmp_path: Path) -> None:
    reader = fastread.FastReader(db)
    with pytest.raises(sqlite3.OperationalError, match="no such column: nope"):
        list(reader.matrices("SELECT nope FROM t", [], 1))
    reader.close()
    reader.close()  # idempotent
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        list(reader.matrices("SELECT ts FROM t", [], 1))
    with pytest.raises(sqlite3.OperationalError, match="cannot open"):
        fastread.FastReader(tmp_path / "missing.sqlite3")


def test_the_reader_is_read_only(db: Path) -> None:
    reader = fastread.FastReader(db)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            list(reader.matrices("DELETE FROM t", [], 1))
    finally:
        reader.close()
    assert python_rows(db, "SELECT count(*) FROM t", []) == [(1_001,)]
