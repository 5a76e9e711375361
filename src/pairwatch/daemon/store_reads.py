"""Read the store back: resume state, bars and metric series.

Plain functions of a connection (read-only or not): the daemon's start-up (symbol state,
latest bars), warm-up and replay (recent closed bars, aligned closes) and the web page
(metric series) call them.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pairwatch.analytics.engine import KalmanState
from pairwatch.daemon.metrics_schema import ANALYTICS_FLAGS, SERIES_KEYS
from pairwatch.daemon.schema import BAR_COLUMNS
from pairwatch.daemon.store import table_columns
from pairwatch.events import Bar

_BAR_SELECT = f"SELECT {', '.join(BAR_COLUMNS)} FROM bars"  # noqa: S608 -- constant column list


def load_symbol_state(
    conn: sqlite3.Connection, market: str, stream: str
) -> dict[str, tuple[int, int]]:
    """Return ``{symbol: (last_trade_id, last_trade_ts)}`` of one market and stream."""
    rows = conn.execute(
        "SELECT symbol, last_trade_id, last_trade_ts FROM symbol_state "
        "WHERE market = ? AND stream = ?",
        (market, stream),
    )
    return {symbol: (int(last_id), int(last_ts)) for symbol, last_id, last_ts in rows}


def load_latest_bars(
    conn: sqlite3.Connection, symbols: Iterable[str], timeframes: Iterable[str]
) -> dict[tuple[str, str], Bar]:
    """Return the newest stored bar of every symbol and timeframe that has one."""
    latest: dict[tuple[str, str], Bar] = {}
    frames = list(timeframes)
    for symbol in symbols:
        for timeframe in frames:
            row = conn.execute(
                f"{_BAR_SELECT} WHERE symbol = ? AND timeframe = ? ORDER BY ts DESC LIMIT 1",
                (symbol, timeframe),
            ).fetchone()
            if row is not None:
                latest[symbol, timeframe] = bar_from_row(row)
    return latest


def read_bars(
    conn: sqlite3.Connection,
    symbol: str,
    timeframe: str,
    start: int | None = None,
    end: int | None = None,
) -> list[Bar]:
    """Return the bars with ``start <= ts < end`` (either bound optional), oldest first."""
    sql = f"{_BAR_SELECT} WHERE symbol = ? AND timeframe = ?"
    params: list[object] = [symbol, timeframe]
    if start is not None:
        sql += " AND ts >= ?"
        params.append(start)
    if end is not None:
        sql += " AND ts < ?"
        params.append(end)
    return [bar_from_row(row) for row in conn.execute(f"{sql} ORDER BY ts", params)]


def load_recent_closed_bars(
    conn: sqlite3.Connection,
    symbol: str,
    timeframe: str,
    limit: int,
    before_ts: int | None = None,
) -> list[Bar]:
    """Return the newest ``limit`` closed bars (with ``ts < before_ts`` if given), oldest first."""
    if limit <= 0:
        return []
    sql = f"{_BAR_SELECT} WHERE symbol = ? AND timeframe = ? AND closed = 1"
    params: list[object] = [symbol, timeframe]
    sql, params = ts_range(sql, params, None, before_ts, "ts")
    rows = conn.execute(f"{sql} ORDER BY ts DESC LIMIT ?", (*params, limit)).fetchall()
    return [bar_from_row(row) for row in reversed(rows)]


def load_aligned_closes(
    conn: sqlite3.Connection,
    y: str,
    x: str,
    timeframe: str,
    from_ts: int | None = None,
    to_ts: int | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """Return the closes and trade counts of both legs at every ts where both closed a bar.

    Keys ``ts``, ``y_trades``, ``x_trades`` (int64) and ``y_close``, ``x_close``
    (float64), ordered by ts, over ``from_ts <= ts < to_ts`` (either bound optional).
    """
    sql = (
        "SELECT a.ts, a.close, b.close, a.trades, b.trades FROM bars AS a "
        "JOIN bars AS b ON b.symbol = ? AND b.timeframe = a.timeframe AND b.ts = a.ts "
        "AND b.closed = 1 "
        "WHERE a.symbol = ? AND a.timeframe = ? AND a.closed = 1"
    )
    sql, params = ts_range(sql, [x, y, timeframe], from_ts, to_ts, "a.ts")
    rows = conn.execute(f"{sql} ORDER BY a.ts", params).fetchall()
    columns = list(zip(*rows, strict=True)) or [()] * 5
    kinds = (np.int64, np.float64, np.float64, np.int64, np.int64)
    names = ("ts", "y_close", "x_close", "y_trades", "x_trades")
    return {
        name: np.array(column, dtype=kind)
        for name, column, kind in zip(names, columns, kinds, strict=True)
    }


def load_pair_analytics(
    conn: sqlite3.Connection,
    y: str,
    x: str,
    timeframe: str,
    window: int,
    from_ts: int | None = None,
    to_ts: int | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """Return one pair series of ``analytics`` as arrays, ordered by ts.

    Keys: ``ts`` (int64), every metric column the table has (float64, NULL as NaN),
    ``adf_at`` (float64, NaN when NULL) and ``thin`` (bool), over ``from_ts <= ts < to_ts``.
    """
    return _load_series(conn, "analytics", (y, x, timeframe, window), from_ts, to_ts)


def load_symbol_analytics(
    conn: sqlite3.Connection,
    symbol: str,
    timeframe: str,
    window: int,
    from_ts: int | None = None,
    to_ts: int | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """Return one symbol series of ``symbol_analytics``: ``ts`` and every metric column."""
    return _load_series(conn, "symbol_analytics", (symbol, timeframe, window), from_ts, to_ts)


def _load_series(
    conn: sqlite3.Connection,
    table: str,
    key: tuple[object, ...],
    from_ts: int | None,
    to_ts: int | None,
) -> dict[str, npt.NDArray[Any]]:
    names = SERIES_KEYS[table]
    flags = ("adf_at", "thin") if table == "analytics" else ()
    metrics = [c for c in table_columns(conn, table) if c not in {*names, "ts", *ANALYTICS_FLAGS}]
    select = ", ".join(quoted(c) for c in ("ts", *metrics, *flags))
    match = " AND ".join(f"{c} = ?" for c in names)
    sql = f"SELECT {select} FROM {table} WHERE {match}"  # noqa: S608 -- quoted table columns
    sql, params = ts_range(sql, list(key), from_ts, to_ts, "ts")
    rows = conn.execute(f"{sql} ORDER BY ts", params).fetchall()
    columns = list(zip(*rows, strict=True)) or [()] * (1 + len(metrics) + len(flags))
    out: dict[str, npt.NDArray[Any]] = {"ts": np.array(columns[0], dtype=np.int64)}
    for name, column in zip((*metrics, *flags), columns[1:], strict=True):
        # float64 turns NULL (None) into NaN.
        out[name] = np.array(column, dtype=bool if name == "thin" else np.float64)
    return out


def ts_range(
    sql: str, params: list[object], start: int | None, end: int | None, column: str
) -> tuple[str, list[object]]:
    """Append a half-open ``start <= column < end`` range (either bound optional)."""
    if start is not None:
        sql += f" AND {column} >= ?"
        params.append(start)
    if end is not None:
        sql += f" AND {column} < ?"
        params.append(end)
    return sql, params


def quoted(identifier: str) -> str:
    """Return an SQL identifier quoted (for column names read from the schema)."""
    return '"' + identifier.replace('"', '""') + '"'


def bar_from_row(row: Sequence[Any]) -> Bar:
    """Build a ``Bar`` from a row of ``BAR_COLUMNS`` (NULL vwap becomes NaN)."""
    vwap = row[9]
    return Bar(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        math.nan if vwap is None else vwap,
        row[10],
        row[11],
        bool(row[12]),
        bool(row[13]),
    )


def load_kalman_states(conn: sqlite3.Connection) -> list[KalmanState]:
    """Return every saved Kalman filter state (``kalman_state``)."""
    rows = conn.execute(
        "SELECT y, x, timeframe, window, ts, beta, alpha, p00, p01, p11, bars FROM kalman_state"
    ).fetchall()
    return [
        KalmanState(y, x, tf, w, ts, (*map(float, rest[:5]), float(rest[5])))
        for y, x, tf, w, ts, *rest in rows
    ]
