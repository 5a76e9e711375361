"""Many rows in one SQLite statement: ``INSERT … SELECT … FROM (VALUES (…), (…), …)``.

The store writer runs in a thread, and Python's ``sqlite3`` releases the GIL around every
step (and reset) of a statement: ``executemany`` hands the GIL to the busy event loop and
waits to get it back once per row. Under load each hand-over costs the writer up to a GIL
switch interval (a probe counted 328 context switches in a 53 ms transaction of 34 rows),
so an alert write's time grew with its row count. One multi-row statement is one step
whatever the number of rows, with every value still bound as a parameter (floats exactly).

Each row's group starts with a marker parameter: 1 for a row, NULL for padding, and only
the marked groups are inserted. A batch of up to ``MAX_CHUNK`` rows is one statement,
padded to the next power of two, so each statement has a handful of cached variants and
an alert's transaction one statement per table (chunks of exactly a power of two needed
one per set bit of the count: 22 bars were three statements).

The statement must be a one-row ``INSERT`` whose ``VALUES`` group holds only ``?``
placeholders (an ``ON CONFLICT`` clause may follow: the ``WHERE`` of the ``SELECT`` keeps
it unambiguous): the writer's statements are.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Sequence
from typing import Any

_GROUP = re.compile(r"\bVALUES\s*(\(\s*\?(?:\s*,\s*\?)*\s*\))", re.IGNORECASE)
MAX_CHUNK = 256
"""Most rows in one statement (also bounded by SQLite's parameter limit)."""


@functools.lru_cache(maxsize=256)
def _template(sql: str) -> tuple[str, str, int]:
    """Return ``sql`` before its ``VALUES`` and after its group, and the group's width."""
    found = list(_GROUP.finditer(sql))
    if len(found) != 1 or sql[found[0].end(1) :].lstrip().startswith(","):
        raise ValueError(f"not a one-row insert with one group of ? placeholders: {sql!r}")
    match = found[0]
    return sql[: match.start(0)], sql[match.end(1) :], match.group(1).count("?")


@functools.lru_cache(maxsize=1024)
def multi_row(sql: str, groups: int) -> str:
    """Return ``sql`` over ``groups`` groups of (marker, the row's values), inserting the
    rows of the groups whose marker is not NULL, in order."""
    head, tail, width = _template(sql)
    group = "(" + ", ".join(["?"] * (width + 1)) + ")"
    columns = ", ".join(f"column{i}" for i in range(2, width + 2))
    rest = f" {tail.lstrip()}" if tail.strip() else ""
    values = ", ".join([group] * groups)
    return f"{head}SELECT {columns} FROM (VALUES {values}) WHERE column1 IS NOT NULL{rest}"  # noqa: S608 -- the caller's statement, placeholders


def insert_rows(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> int:
    """Run the one-row insert ``sql`` for every row, in order; return the rows changed.

    The same as ``conn.executemany(sql, rows)`` (rows are inserted in order, a later row
    meeting an earlier one's key takes the conflict clause), in one statement per
    ``MAX_CHUNK`` rows instead of a step per row.
    """
    if not rows:
        return 0
    width = _template(sql)[2]
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // (width + 1)
    most = 1 << (max(min(MAX_CHUNK, limit), 1).bit_length() - 1)  # a power of two
    pad = [None] * (width + 1)
    changed = 0
    for start in range(0, len(rows), most):
        chunk = rows[start : start + most]
        groups = 1 << (len(chunk) - 1).bit_length()  # the next power of two
        params = [v for row in chunk for v in (1, *row)]
        params.extend(pad * (groups - len(chunk)))
        changed += conn.execute(multi_row(sql, groups), params).rowcount
    return changed
