"""Open (and migrate) the SQLite store; the functions that read it are in ``store_reads``.

Every connection runs in autocommit mode (``isolation_level=None``): writers open
their transactions explicitly with ``BEGIN IMMEDIATE`` so a transaction never has
to upgrade a read lock to a write lock (which fails instead of waiting).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from pairwatch import __version__
from pairwatch.analytics.timeframes import parse_timeframe
from pairwatch.daemon.metrics_schema import add_metric_column_sql, metric_columns
from pairwatch.daemon.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, TABLES
from pairwatch.errors import StoreError

logger = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_MS = 5_000

T = TypeVar("T")


WRITER_CACHED_STATEMENTS = 512
"""Prepared statements a read-write connection keeps (Python's default is 128)."""


def open_store(
    path: Path | str,
    *,
    readonly: bool = False,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    check_same_thread: bool = True,
) -> sqlite3.Connection:
    """Open the store at ``path``, creating and migrating it unless ``readonly``.

    Raises ``StoreError`` when the file is not an SQLite database, belongs to
    another application, or has a schema version this code does not know.
    """
    db = Path(path)
    try:
        if readonly:
            if not db.is_file():
                raise StoreError(f"cannot open store {db}: no such database file")
            conn = sqlite3.connect(
                f"{db.resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                timeout=busy_timeout_ms / 1000,
                check_same_thread=check_same_thread,
            )
        else:
            db.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                db,
                isolation_level=None,
                timeout=busy_timeout_ms / 1000,
                check_same_thread=check_same_thread,
                # The writer's multi-row inserts: a few sizes of each statement (sql_bulk).
                cached_statements=WRITER_CACHED_STATEMENTS,
            )
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open store {db}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if readonly:
            conn.execute("PRAGMA query_only = ON")
            _check_readable(conn, db)
        else:
            _configure_writable(conn, db)
            migrate(conn, db)
            add_metric_columns(conn, db)
    except sqlite3.DatabaseError as exc:
        conn.close()
        kind = "is not an SQLite database" if _is_not_a_db(exc) else "cannot be opened"
        raise StoreError(f"store {db} {kind}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    """Return the database's ``PRAGMA user_version``."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, name: Path | str = "store") -> None:
    """Apply every pending migration step, each in its own transaction."""
    while True:
        version = schema_version(conn)
        _check_not_newer(version, name)
        if version == SCHEMA_VERSION:
            break
        with transaction(conn):
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = schema_version(conn)
            _check_not_newer(version, name)
            if version == SCHEMA_VERSION:
                continue
            if version == 0:
                _check_unclaimed(conn, name)
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        logger.info("store %s migrated to schema version %d", name, version + 1)
    with transaction(conn):
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('app_version', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value "
            "WHERE value IS NOT excluded.value",
            (__version__,),
        )


def add_metric_columns(conn: sqlite3.Connection, name: Path | str = "store") -> list[str]:
    """Add a REAL column for every registered metric a metrics table lacks; return them.

    Migration steps are frozen, but metrics are registered in code: this runs after
    every read-write migration so the tables follow the metric tuples. Idempotent.
    """
    wanted = metric_columns()
    if not _missing_metric_columns(conn, wanted):
        return []
    with transaction(conn):
        # Re-read under the write lock: another process may have added them meanwhile.
        missing = _missing_metric_columns(conn, wanted)
        for table, column in missing:
            conn.execute(add_metric_column_sql(table, column))
    added = [f"{table}.{column}" for table, column in missing]
    if added:
        logger.info("store %s: added metric columns %s", name, ", ".join(added))
    return added


def table_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    """Return the column names of one of the store's tables, in table order."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}: expected one of {', '.join(TABLES)}")
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _missing_metric_columns(
    conn: sqlite3.Connection, wanted: dict[str, tuple[str, ...]]
) -> list[tuple[str, str]]:
    missing: list[tuple[str, str]] = []
    for table, names in wanted.items():
        have = set(table_columns(conn, table))
        missing.extend((table, n) for n in names if n not in have)
    return missing


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the block in one ``BEGIN IMMEDIATE`` transaction; roll back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_ENDED_OPEN_BARS = (
    "SELECT symbol, timeframe, ts FROM bars WHERE closed = 0 AND timeframe = ? AND ts <= ?"
)
_CLOSE_ENDED_BARS = (
    "UPDATE bars SET closed = 1, updated_at = ? WHERE closed = 0 AND timeframe = ? AND ts <= ?"
)


def finalize_open_bars(
    conn: sqlite3.Connection, before_ts: int, *, now_ms: int | None = None
) -> list[tuple[str, str, int]]:
    """Mark open bars (``closed = 0``) that end at or before ``before_ts`` closed.

    Returns the (symbol, timeframe, ts) of the bars it closed: they were never handed on
    as closed bars, so later stages still have to see them. Runs in one transaction on
    ``conn``; meant for start-up, before the writer takes over.
    """
    updated_at = int(time.time() * 1000) if now_ms is None else now_ms
    closed: list[tuple[str, str, int]] = []
    with transaction(conn):
        frames = [
            row[0] for row in conn.execute("SELECT DISTINCT timeframe FROM bars WHERE closed = 0")
        ]
        for timeframe in frames:
            try:
                length = parse_timeframe(timeframe)
            except ValueError:
                logger.warning("open bars with unknown timeframe %r left open", timeframe)
                continue
            params = (timeframe, before_ts - length)
            closed.extend(conn.execute(_ENDED_OPEN_BARS, params))
            conn.execute(_CLOSE_ENDED_BARS, (updated_at, *params))
    return closed


def limit_size(conn: sqlite3.Connection, max_bytes: int) -> int:
    """Cap the database file at ``max_bytes`` for writes on ``conn``; return the cap in effect.

    Sets ``PRAGMA max_page_count`` to the whole pages of ``page_size`` that fit (at least
    one). SQLite never sets it below the pages the file already has, so the cap in effect
    (returned, in bytes) can be larger than asked: the file then cannot grow at all. A
    write that needs a page past the cap fails with "database or disk is full"; pages that
    deletes freed are reused first. The ``-wal`` file beside the database is not counted.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = max(max_bytes // page_size, 1)
    in_effect = int(conn.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0])
    return in_effect * page_size


def count_rows(conn: sqlite3.Connection, table: str) -> int:
    """Return the number of rows in one of the store's tables."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}: expected one of {', '.join(TABLES)}")
    sql = f"SELECT count(*) FROM {table}"  # noqa: S608 -- table checked against TABLES
    return int(conn.execute(sql).fetchone()[0])


def _configure_writable(conn: sqlite3.Connection, name: Path) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        logger.warning(
            "store %s: journal_mode is %s, not WAL; readers may block the writer", name, mode
        )
    # NORMAL in WAL mode: a commit survives a crash of the process, not a power cut.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA journal_size_limit = 67108864")


def _check_readable(conn: sqlite3.Connection, name: Path) -> None:
    version = schema_version(conn)
    _check_not_newer(version, name)
    application_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if version == 0 or application_id != APPLICATION_ID:
        raise StoreError(f"store {name} is not a pairwatch database (no pairwatch schema)")
    if version < SCHEMA_VERSION:
        raise StoreError(
            f"store {name} has schema version {version}, older than {SCHEMA_VERSION}: "
            "open it read-write once (start the daemon) to migrate it"
        )


def _check_not_newer(version: int, name: Path | str) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"store {name} has schema version {version}, newer than this pairwatch "
            f"{__version__} knows ({SCHEMA_VERSION}): upgrade pairwatch or use another file"
        )


def _check_unclaimed(conn: sqlite3.Connection, name: Path | str) -> None:
    application_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if application_id not in (0, APPLICATION_ID):
        raise StoreError(
            f"store {name} belongs to another application (application_id {application_id})"
        )
    tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    if tables:
        raise StoreError(
            f"store {name} already holds {tables} tables but no pairwatch schema: "
            "refusing to add ours; choose a new file"
        )


def _is_not_a_db(exc: sqlite3.DatabaseError) -> bool:
    return "not a database" in str(exc) or getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB"


class ReadConnection:
    """A read-only connection opened on first use and used from worker threads.

    ``read`` runs under a lock, and ``close`` takes the same lock: a read still running in
    a worker when its awaiting task is cancelled is never left with a closed connection
    (closing an SQLite connection that another thread is using can crash the process).
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._closed = False

    def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``query`` on the connection (call from a worker thread)."""
        with self._lock:
            if self._closed:
                raise StoreError(f"read connection to {self._path} is closed")
            if self._conn is None:
                self._conn = open_store(self._path, readonly=True, check_same_thread=False)
            return query(self._conn)

    def close(self) -> None:
        """Close the connection once no read is running."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
