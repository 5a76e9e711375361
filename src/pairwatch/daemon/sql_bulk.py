"""Many rows in one SQLite statement: ``INSERT … VALUES (…), (…), …``.

The store writer runs in a thread, and Python's ``sqlite3`` releases the GIL around every
step of a statement: ``executemany`` hands the GIL to the busy event loop and waits to get
it back once per row. Under load each hand-over costs the writer ~0.1–0.2 ms (a probe
counted 328 context switches in a 53 ms transaction of 34 rows), so an alert write's
time grew with its row count. One multi-row ``VALUES`` statement is one step whatever the
number of rows, with every value still bound as a parameter (floats exactly).

The statement must be a one-row ``INSERT`` whose ``VALUES`` group holds only ``?``
placeholders (an ``ON CONFLICT`` clause may follow): the writer's statements are. Rows are
sent in chunks of powers of two (or as many as the parameter limit allows), so each
statement has a handful of cached variants.
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
def _template(sql: str) -> tuple[str, str, str, int]:
    """Return ``sql`` split around its ``VALUES`` group, the group and its width."""
    found = list(_GROUP.finditer(sql))
    if len(found) != 1 or sql[found[0].end(1) :].lstrip().startswith(","):
        raise ValueError(f"not a one-row insert with one group of ? placeholders: {sql!r}")
    match = found[0]
    group = match.group(1)
    return sql[: match.start(1)], group, sql[match.end(1) :], group.count("?")


@functools.lru_cache(maxsize=1024)
def multi_row(sql: str, rows: int) -> str:
    """Return ``sql`` with its ``VALUES`` group repeated for ``rows`` rows."""
    head, group, tail, _ = _template(sql)
    return head + ", ".join([group] * rows) + tail


def insert_rows(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> int:
    """Run the one-row insert ``sql`` for every row, in order; return the rows changed.

    The same as ``conn.executemany(sql, rows)`` (rows are inserted in order, a later row
    meeting an earlier one's key takes the conflict clause), in about log2(len(rows))
    statements instead of len(rows) steps.
    """
    if not rows:
        return 0
    width = _template(sql)[3]
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // max(width, 1)
    most = max(min(MAX_CHUNK, limit), 1)
    changed = 0
    start = 0
    total = len(rows)
    while start < total:
        size = min(most, 1 << ((total - start).bit_length() - 1))
        chunk = rows[start : start + size]
        params = [value for row in chunk for value in row]
        changed += conn.execute(multi_row(sql, size), params).rowcount
        start += size
    return changed
