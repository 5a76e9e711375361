"""Export one pair series: its analytics snapshots with both legs' bars, chunk by chunk.

Read side only (no UI library): ``pairwatch export`` and the web page's download buttons
call it. ``export_rows`` yields Arrow record batches of one row per ``analytics`` snapshot
of (y, x, timeframe, window) with ``start <= ts < end``, LEFT JOINed with both legs' bars at
the same ts and timeframe; the writers turn them into CSV or Parquet without ever holding
the whole range. Columns, in order (``docs/export.md``): ``ts``, ``time``, the y leg's bar
columns (``y_open`` … ``y_closed``), the x leg's, ``thin``, ``adf_at``, then every metric
column the file's ``analytics`` table has, in table order (a newly registered metric is
appended at the end, so existing columns never move).

Each chunk is read in its own short query, a primary-key range after the last ts read, so
an export never holds a read transaction open while its consumer (a slow download) waits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from pairwatch.daemon.metrics_schema import ANALYTICS_FLAGS, SERIES_KEYS
from pairwatch.daemon.retention import first_series_sql, next_series_sql
from pairwatch.daemon.store import open_store, table_columns
from pairwatch.daemon.store_reads import quoted, ts_range
from pairwatch.errors import PairwatchError
from pairwatch.series import SeriesKey
from pairwatch.web import fastread
from pairwatch.web.export_files import (
    FORMATS,
    PARQUET_COMPRESSION,
    Format,
    file_format,
    iter_bytes,
    part_path,
    write_csv,
    write_file,
    write_parquet,
    write_stream,
)

__all__ = [
    "BAR_FIELDS",
    "FORMATS",
    "METADATA_KEY",
    "PARQUET_COMPRESSION",
    "ExportError",
    "Format",
    "SeriesNotFound",
    "count_rows",
    "export_chunks",
    "export_rows",
    "export_schema",
    "iter_bytes",
    "metric_names",
    "part_path",
    "resolve_window",
    "stored_series",
    "write_csv",
    "write_file",
    "write_parquet",
    "write_stream",
]


BAR_FIELDS: Final = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "vwap",
    "trades",
    "taker_buy_volume",
    "filled",
    "closed",
)
"""The columns of ``bars`` exported for each leg (prefixed ``y_`` / ``x_``), in this order.

Spelled out, not read from the table: a column ``bars`` gains later must not move the
exported ones (only metric columns are appended, at the end).
"""

_INT_BAR_FIELDS: Final = frozenset({"trades"})
_BOOL_BAR_FIELDS: Final = frozenset({"filled", "closed"})
_TIME: Final = pa.timestamp("ms", tz="UTC")
_MIN_TS: Final = -(2**63)
_MAX_TS: Final = 2**63 - 1
METADATA_KEY: Final = b"pairwatch"
"""Parquet schema metadata key: JSON ``{"y", "x", "timeframe", "window"}`` of the series."""


class ExportError(PairwatchError):
    """An export cannot be made as asked (the message says why, for the user)."""


class SeriesNotFound(ExportError):  # noqa: N818 -- reads as what happened
    """The database holds no analytics for the pair, timeframe or window asked for."""


Series = tuple[str, str, str, int]
"""A pair series: (y, x, timeframe, window)."""


def stored_series(conn: sqlite3.Connection) -> list[Series]:
    """Return every (y, x, timeframe, window) in ``analytics``, one primary-key seek each."""
    found: list[Series] = []
    key = conn.execute(first_series_sql("analytics")).fetchone()
    next_sql = next_series_sql("analytics")
    while key is not None:
        found.append((str(key[0]), str(key[1]), str(key[2]), int(key[3])))
        key = conn.execute(next_sql, key).fetchone()
    return found


def resolve_window(
    conn: sqlite3.Connection, y: str, x: str, timeframe: str, window: int | None
) -> int:
    """Return the window to export; raise ``SeriesNotFound`` listing what the file holds.

    Without ``window``, the pair's only window on ``timeframe`` is the default; several
    windows are an error that lists them.
    """
    series = stored_series(conn)
    pair = f"{y}/{x}"
    if not series:
        raise SeriesNotFound("the database holds no pair analytics yet")
    mine = [s for s in series if s[:2] == (y, x)]
    if not mine:
        raise SeriesNotFound(f"no analytics for {pair}; the database holds: {_listing(series)}")
    windows = sorted(s[3] for s in mine if s[2] == timeframe)
    if not windows:
        raise SeriesNotFound(
            f"no {timeframe} analytics for {pair}; it has: {_listing(mine, pair=False)}"
        )
    if window is None:
        if len(windows) > 1:
            raise SeriesNotFound(
                f"{pair} {timeframe} has several windows: choose one of "
                f"{', '.join(map(str, windows))}"
            )
        return windows[0]
    if window not in windows:
        raise SeriesNotFound(
            f"no window {window} for {pair} {timeframe}; windows: {', '.join(map(str, windows))}"
        )
    return window


def _listing(series: list[Series], *, pair: bool = True) -> str:
    """Return ``ETHUSDT/BTCUSDT 1m (windows 30, 100), 1s (…); …`` for error messages."""
    grouped: dict[str, dict[str, list[int]]] = {}
    for y, x, timeframe, window in series:
        grouped.setdefault(f"{y}/{x}", {}).setdefault(timeframe, []).append(window)
    parts = []
    for name, frames in grouped.items():
        text = ", ".join(
            f"{tf} (windows {', '.join(map(str, sorted(ws)))})" for tf, ws in frames.items()
        )
        parts.append(f"{name} {text}" if pair else text)
    return "; ".join(parts)


def metric_names(conn: sqlite3.Connection) -> list[str]:
    """Return the metric columns of the file's ``analytics`` table, in table order."""
    skip = {*SERIES_KEYS["analytics"], "ts", *ANALYTICS_FLAGS}
    return [c for c in table_columns(conn, "analytics") if c not in skip]


def export_schema(
    conn: sqlite3.Connection, series: Series | None = None
) -> Any:  # pa.Schema (pyarrow has no type hints)
    """Return the Arrow schema of an export (with the series in its metadata, if given)."""
    fields = [pa.field("ts", pa.int64(), nullable=False), pa.field("time", _TIME, nullable=False)]
    for leg in ("y", "x"):
        fields += [pa.field(f"{leg}_{name}", _bar_type(name)) for name in BAR_FIELDS]
    fields += [pa.field("thin", pa.bool_(), nullable=False), pa.field("adf_at", pa.int64())]
    fields += [pa.field(name, pa.float64()) for name in metric_names(conn)]
    metadata = None
    if series is not None:
        y, x, timeframe, window = series
        text = json.dumps({"y": y, "x": x, "timeframe": timeframe, "window": window})
        metadata = {METADATA_KEY: text.encode()}
    return pa.schema(fields, metadata=metadata)


def _bar_type(name: str) -> Any:
    if name in _INT_BAR_FIELDS:
        return pa.int64()
    return pa.bool_() if name in _BOOL_BAR_FIELDS else pa.float64()


def count_rows(
    conn: sqlite3.Connection,
    y: str,
    x: str,
    timeframe: str,
    window: int,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> int:
    """Return how many rows ``export_rows`` yields for the same arguments (a progress total)."""
    sql = "SELECT count(*) FROM analytics WHERE y = ? AND x = ? AND timeframe = ? AND window = ?"
    sql, params = ts_range(sql, [y, x, timeframe, window], start_ms, end_ms, "ts")
    return int(conn.execute(sql, params).fetchone()[0])


def export_rows(
    conn: sqlite3.Connection,
    y: str,
    x: str,
    timeframe: str,
    window: int | None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    chunk: int = 50_000,
) -> Iterator[Any]:  # Iterator[pa.RecordBatch]
    """Return an iterator of record batches of the series over ``start_ms <= ts < end_ms``.

    Either bound may be ``None`` (open). The window is resolved (and the series checked)
    now, so a bad request raises ``SeriesNotFound`` before anything is read. The iterator
    yields batches of at most ``chunk`` rows, ordered by ts, and at least one batch (empty
    for an empty range) so a writer always knows the schema.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    window = resolve_window(conn, y, x, timeframe, window)
    schema = export_schema(conn, (y, x, timeframe, window))
    return _batches(conn, (y, x, timeframe, window), schema, start_ms, end_ms, chunk)


def _batches(
    conn: sqlite3.Connection,
    series: Series,
    schema: Any,
    start_ms: int | None,
    end_ms: int | None,
    chunk: int,
) -> Iterator[Any]:
    """Read the series in chunks of analytics rows, each joined with both legs' bars.

    Three range scans on primary keys (the chunk's analytics rows, then each leg's bars
    over the chunk's first to last ts), aligned on ts in numpy: cheaper than a per-row SQL
    join, and read through ``fastread`` at C speed. Bars are read after their analytics
    rows; the daemon writes a bar before the snapshots computed from it, so a row read here
    finds its bars.
    """
    y, x, timeframe, window = series
    metrics = schema.names[schema.get_field_index("adf_at") + 1 :]
    picked = ["ts", "thin", "adf_at", *(quoted(name) for name in metrics)]
    analytics_sql = (
        f"SELECT {', '.join(picked)} FROM analytics "  # noqa: S608 -- quoted table columns
        "WHERE y = ? AND x = ? AND timeframe = ? AND window = ? AND ts >= ? AND ts < ? "
        "ORDER BY ts LIMIT ?"
    )
    bars_sql = (
        f"SELECT ts, {', '.join(BAR_FIELDS)} FROM bars "  # noqa: S608 -- constant columns
        "WHERE symbol = ? AND timeframe = ? AND ts >= ? AND ts <= ? ORDER BY ts"
    )
    lo = _MIN_TS if start_ms is None else start_ms
    hi = _MAX_TS if end_ms is None else end_ms
    width = 1 + len(BAR_FIELDS)
    readers = [_reader(conn) for _ in range(3)]  # analytics, y's bars, x's bars
    # Python's sqlite3 connection (the fallback) stays in this thread: legs read inline.
    fast = isinstance(readers[0], fastread.FastReader)
    pool = ThreadPoolExecutor(max_workers=2 if fast else 1, thread_name_prefix="export-legs")

    def leg(n: int, symbol: str, ts: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        params: list[fastread.Param] = [symbol, timeframe, int(ts[0]), int(ts[-1])]
        blocks = list(readers[n].matrices(bars_sql, params, width, len(ts) + 1))
        bars = np.concatenate(blocks) if blocks else np.empty((0, width))
        return fastread.align(ts, bars, len(BAR_FIELDS))

    def finish(ts: Any, block: Any, legs: list[Future[Any]]) -> Any:
        return _to_batch(ts, [f.result() for f in legs], block[:, 1:], schema)

    # The legs of one chunk are read in two threads while this one reads the next chunk's
    # analytics rows: the C reads release the GIL, so the three scans overlap.
    pending: tuple[Any, Any, list[Future[Any]]] | None = None
    sent = False
    try:
        for block in _chunks(
            readers[0], analytics_sql, [y, x, timeframe, window], lo, hi, chunk, len(picked)
        ):
            ts = block[:, 0].astype(np.int64)
            legs = [
                pool.submit(leg, n, symbol, ts) if fast else _done(leg(n, symbol, ts))
                for n, symbol in ((1, y), (2, x))
            ]
            if pending is not None:
                yield finish(*pending)
            pending = (ts, block, legs)
        if pending is not None:
            sent = True
            yield finish(*pending)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for reader in readers:
            reader.close()
    if not sent:
        yield pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)


def _chunks(
    reader: fastread.Reader,
    sql: str,
    series: list[fastread.Param],
    lo: int,
    hi: int,
    chunk: int,
    columns: int,
) -> Iterator[fastread.Matrix]:
    """Yield the series' analytics rows ``chunk`` at a time, each chunk its own short query
    (``ts`` after the last one read): no read transaction stays open across chunks, so a
    slow download never holds back the write-ahead log, and rows stored meanwhile are
    included when the export reaches them."""
    after = lo
    while True:
        blocks = list(reader.matrices(sql, [*series, after, hi, chunk], columns, chunk))
        if not blocks:
            return
        block = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        yield block
        if len(block) < chunk:
            return
        after = int(block[-1, 0]) + 1


def _done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


def _reader(conn: sqlite3.Connection) -> fastread.Reader:
    """Return a fast reader of ``conn``'s file, or ``conn`` itself through Python."""
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    if path and fastread.available():
        return fastread.FastReader(Path(path))
    return fastread.PythonReader(conn, owned=False)


def _to_batch(
    ts: npt.NDArray[np.int64],
    legs: list[npt.NDArray[np.float64]],
    rest: npt.NDArray[np.float64],
    schema: Any,
) -> Any:
    """Make a record batch of ``schema``: ts, time, both legs' bar columns, then thin,
    adf_at and the metrics (``rest``). Floats keep NaN as null."""
    matrix = np.concatenate([*legs, rest], axis=1).T
    arrays = [pa.array(ts), pa.array(ts, type=_TIME)]
    arrays += [
        _column(np.ascontiguousarray(values), f.type)
        for values, f in zip(matrix, list(schema)[2:], strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _column(values: npt.NDArray[np.float64], kind: Any) -> Any:
    if pa.types.is_floating(kind):
        return pa.array(values, type=kind, from_pandas=True)  # NaN -> null
    missing = np.isnan(values)
    if pa.types.is_boolean(kind):
        column: npt.NDArray[Any] = values != 0
    else:
        column = np.where(missing, 0, values).astype(np.int64)
    return pa.array(column, type=kind, mask=missing if missing.any() else None)


def export_chunks(
    db: Path, key: SeriesKey, start_ms: int | None, end_ms: int | None, fmt: str
) -> Generator[bytes, None, None]:
    """Yield the export file of one series in pieces, on a read-only connection of its own.

    For a download made in a worker thread: the connection is opened, used and closed in
    the thread that iterates. ``SeriesNotFound`` (an ``ExportError``) comes before any bytes.
    """
    kind = file_format(fmt)
    conn = open_store(db, readonly=True)
    try:
        batches = export_rows(conn, key.y, key.x, key.timeframe, key.window, start_ms, end_ms)
        yield from iter_bytes(batches, kind)
    finally:
        conn.close()
