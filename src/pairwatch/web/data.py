"""What the web page reads: pair series, their metrics joined with both legs' bars, alerts.

Plain functions of a read-only connection, called from worker threads (never the loop).
Every query reads one series' primary-key range, so a page over a 1M-row table costs what
the range holds, not the table.
"""

from __future__ import annotations

import math
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from pairwatch.daemon.retention import first_series_sql, next_series_sql
from pairwatch.series import SeriesKey
from pairwatch.web import fastread

CHART_METRICS: Final = (
    "hedge_ratio",
    "intercept",
    "spread",
    "spread_std",
    "zscore",
    "correlation",
    "kalman_beta",
    "kalman_spread",
    "kalman_zscore",
)
"""The metric columns the charts draw (the exports carry every column)."""

STAT_METRICS: Final = (
    "hedge_ratio",
    "intercept",
    "zscore",
    "correlation",
    "half_life",
    "kalman_beta",
    "kalman_zscore",
    "adf_stat",
    "adf_pvalue",
    "coint_pvalue",
)
"""The metrics of the statistics card."""

LEG_COLUMNS: Final = ("close", "volume")
"""Each leg's bar columns the charts draw, prefixed ``y_`` / ``x_``."""


@dataclass(frozen=True, slots=True)
class Stats:
    """The latest snapshot of a series, for the statistics card."""

    ts: int
    values: dict[str, float]
    """``STAT_METRICS`` values, NaN when not computed."""
    adf_at: int | None
    """When the ADF/cointegration values were computed (epoch ms)."""


def list_series(conn: sqlite3.Connection) -> list[SeriesKey]:
    """Return every series ``analytics`` holds, one primary-key seek per series."""
    found: list[SeriesKey] = []
    row = conn.execute(first_series_sql("analytics")).fetchone()
    after = next_series_sql("analytics")
    while row is not None:
        found.append(SeriesKey(row[0], row[1], row[2], int(row[3])))
        row = conn.execute(after, tuple(row)).fetchone()
    return found


def time_bounds(conn: sqlite3.Connection, key: SeriesKey) -> tuple[int, int] | None:
    """Return the first and last ``ts`` of a series, or None when it has no row."""
    where = "WHERE y = ? AND x = ? AND timeframe = ? AND window = ?"
    args = (key.y, key.x, key.timeframe, key.window)
    first = conn.execute(
        f"SELECT ts FROM analytics {where} ORDER BY ts LIMIT 1",  # noqa: S608 -- constant
        args,
    ).fetchone()
    if first is None:
        return None
    last = conn.execute(
        f"SELECT ts FROM analytics {where} ORDER BY ts DESC LIMIT 1",  # noqa: S608 -- constant
        args,
    ).fetchone()
    return int(first[0]), int(last[0])


def load_frame(
    db_path: Path,
    key: SeriesKey,
    start: int | None = None,
    end: int | None = None,
) -> pd.DataFrame:
    """Return the series' chart columns over ``[start, end)`` (epoch ms; None: open).

    One row per analytics snapshot, in time order: ``ts``, ``time`` (naive UTC), the
    ``CHART_METRICS`` and both legs' ``close`` and ``volume`` (``y_``/``x_``, NaN where a
    leg has no bar at that time). Empty (with every column) when the range holds nothing.
    Read at C speed (``fastread``): the analytics rows, then each leg's bars over their
    span, aligned on ts.
    """
    lo = -(2**63) if start is None else start
    hi = 2**63 - 1 if end is None else end
    metrics = ", ".join(CHART_METRICS)
    # Each leg's bars over the same range, read in two threads while this one reads the
    # analytics rows (the C reads release the GIL), then aligned on the rows' ts.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="page-legs") as pool:
        legs = [
            pool.submit(_bars, db_path, symbol, key.timeframe, lo, hi) for symbol in (key.y, key.x)
        ]
        values = _matrix(
            db_path,
            f"SELECT ts, {metrics} FROM analytics "  # noqa: S608 -- constant columns
            "WHERE y = ? AND x = ? AND timeframe = ? AND window = ? AND ts >= ? AND ts < ? "
            "ORDER BY ts",
            [key.y, key.x, key.timeframe, key.window, lo, hi],
            1 + len(CHART_METRICS),
        )
        ts = values[:, 0].astype(np.int64)
        frame = pd.DataFrame(values[:, 1:], columns=list(CHART_METRICS))
        frame.insert(0, "ts", ts)
        for leg, bars in zip(("y", "x"), legs, strict=True):
            aligned = fastread.align(ts, bars.result(), len(LEG_COLUMNS))
            for n, column in enumerate(LEG_COLUMNS):
                frame[f"{leg}_{column}"] = aligned[:, n]
    frame.insert(1, "time", utc_times(ts))
    return frame


def _matrix(db_path: Path, sql: str, params: list[fastread.Param], columns: int) -> Any:
    reader = fastread.open_reader(db_path)
    try:
        blocks = list(reader.matrices(sql, params, columns, _CHUNK))
    finally:
        reader.close()
    return np.concatenate(blocks) if blocks else np.empty((0, columns))


def _bars(db_path: Path, symbol: str, timeframe: str, lo: int, hi: int) -> Any:
    return _matrix(
        db_path,
        f"SELECT ts, {', '.join(LEG_COLUMNS)} FROM bars "  # noqa: S608 -- constant
        "WHERE symbol = ? AND timeframe = ? AND ts >= ? AND ts < ? ORDER BY ts",
        [symbol, timeframe, lo, hi],
        1 + len(LEG_COLUMNS),
    )


_CHUNK: Final = 262_144


def load_stats(conn: sqlite3.Connection, key: SeriesKey) -> Stats | None:
    """Return the latest snapshot's statistics, with the ADF values of the latest refresh."""
    where = "WHERE y = ? AND x = ? AND timeframe = ? AND window = ?"
    args = (key.y, key.x, key.timeframe, key.window)
    names = ", ".join(STAT_METRICS)
    row = conn.execute(
        f"SELECT ts, {names}, adf_at FROM analytics {where} "  # noqa: S608 -- constant
        "ORDER BY ts DESC LIMIT 1",
        args,
    ).fetchone()
    if row is None:
        return None
    values = {name: _float(v) for name, v in zip(STAT_METRICS, row[1:-1], strict=True)}
    adf_at = row[-1]
    if adf_at is None:
        # The latest bar may predate the first refresh: take the newest refreshed row.
        adf = conn.execute(
            f"SELECT adf_stat, adf_pvalue, coint_pvalue, adf_at FROM analytics {where} "  # noqa: S608
            "AND adf_at IS NOT NULL ORDER BY ts DESC LIMIT 1",
            args,
        ).fetchone()
        if adf is not None:
            values.update(
                adf_stat=_float(adf[0]), adf_pvalue=_float(adf[1]), coint_pvalue=_float(adf[2])
            )
            adf_at = adf[3]
    return Stats(ts=int(row[0]), values=values, adf_at=None if adf_at is None else int(adf_at))


ALERT_COLUMNS: Final = (
    "id",
    "at",
    "rule",
    "target",
    "timeframe",
    "window",
    "kind",
    "severity",
    "metric",
    "value",
    "threshold",
    "message",
)


def load_alerts(
    conn: sqlite3.Connection,
    *,
    target: str | None = None,
    start: int | None = None,
    end: int | None = None,
    after_id: int | None = None,
    limit: int = 1_000,
) -> pd.DataFrame:
    """Return alert transitions (newest first), of one target or all, within a range of
    ``at`` (and with an id above ``after_id``)."""
    clauses: list[str] = []
    args: list[Any] = []
    if after_id is not None:
        clauses.append("id > ?")
        args.append(after_id)
    if target is not None:
        clauses.append("target = ?")
        args.append(target)
    if start is not None:
        clauses.append("at >= ?")
        args.append(start)
    if end is not None:
        clauses.append("at < ?")
        args.append(end)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        f"SELECT {', '.join(ALERT_COLUMNS)} FROM alert_events {where} "  # noqa: S608 -- constant
        "ORDER BY at DESC, id DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    frame = pd.DataFrame(rows, columns=list(ALERT_COLUMNS))
    frame["value"] = frame["value"].astype(np.float64)
    frame["threshold"] = frame["threshold"].astype(np.float64)
    frame.insert(1, "time", utc_times(frame["at"].to_numpy(dtype=np.int64)))
    return frame


def load_alerts_empty() -> pd.DataFrame:
    """Return the alert table's columns with no row (what ``load_alerts`` gives on none)."""
    frame = pd.DataFrame({name: pd.Series(dtype=object) for name in ALERT_COLUMNS})
    frame.insert(1, "time", utc_times(np.empty(0, dtype=np.int64)))
    return frame


def verdict(stats: Stats, level: float = 0.05) -> str:
    """Return a plain-language reading of the ADF and cointegration p-values."""
    adf, coint = (
        stats.values.get("adf_pvalue", math.nan),
        stats.values.get("coint_pvalue", math.nan),
    )
    percent = f"{level * 100:g}%"
    if math.isnan(adf) and math.isnan(coint):
        return "no stationarity test yet (the ADF refresh has not run on this series)"
    parts = []
    if not math.isnan(adf):
        state = "stationary" if adf < level else "not stationary"
        parts.append(f"spread {state} at {percent} (ADF p = {adf:.3g})")
    if not math.isnan(coint):
        state = "cointegrated" if coint < level else "not cointegrated"
        parts.append(f"legs {state} at {percent} (Engle-Granger p = {coint:.3g})")
    return "; ".join(parts)


def utc_times(ms: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Return epoch milliseconds as naive ``datetime64[ms]`` in UTC (what the charts draw:
    plain numpy datetimes render fast; timezone-aware ones go through Python objects)."""
    return np.asarray(ms, dtype=np.int64).astype("datetime64[ms]")


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)
