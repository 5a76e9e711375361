"""Alert rows written in one statement from a JSON array: the same values as row by row."""

from __future__ import annotations

import math
import sqlite3

from pairwatch.daemon.alert_rows import from_json, json_rows


def test_rows_from_json_keep_their_values_types_and_order() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, n INTEGER, x REAL, s TEXT)"
    )
    rows = [
        ("b", 7, 1.25, 'text with "Infinity" and NaN inside, é'),
        ("a", 2**53 + 1, math.nan, '{"zscore":2.5}'),
        ("c", None, math.inf, None),
        ("d", 1, 3.0, ""),
    ]
    sql = from_json("INSERT OR IGNORE INTO t (k, n, x, s)", 4)
    assert conn.execute(sql, json_rows(rows)).rowcount == 4
    got = conn.execute("SELECT id, k, n, x, s, typeof(n), typeof(x) FROM t ORDER BY id").fetchall()
    # What executemany would store, except ±inf, which becomes NULL like NaN.
    assert got == [
        (1, "b", 7, 1.25, 'text with "Infinity" and NaN inside, é', "integer", "real"),
        (2, "a", 2**53 + 1, None, '{"zscore":2.5}', "integer", "null"),
        (3, "c", None, None, None, "null", "null"),
        (4, "d", 1, 3.0, "", "integer", "real"),
    ]
    # INSERT OR IGNORE: a key already there is skipped, the rest go in, in order.
    assert conn.execute(sql, json_rows([("a", 0, 0.0, ""), ("e", 5, 5.0, "e")])).rowcount == 1
    assert conn.execute("SELECT id, k FROM t WHERE k = 'e'").fetchone() == (5, "e")


def test_an_upsert_from_json_updates_in_array_order() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE s (rule TEXT, target TEXT, phase TEXT, PRIMARY KEY (rule, target))")
    sql = from_json(
        "INSERT INTO s (rule, target, phase)", 3,
        "ON CONFLICT (rule, target) DO UPDATE SET phase = excluded.phase",
    )  # fmt: skip
    conn.execute(sql, json_rows([("r", "t", "pending"), ("r", "u", "firing")]))
    conn.execute(sql, json_rows([("r", "t", "firing"), ("r", "t", "inactive")]))
    assert conn.execute("SELECT * FROM s ORDER BY target").fetchall() == [
        ("r", "t", "inactive"),
        ("r", "u", "firing"),
    ]
