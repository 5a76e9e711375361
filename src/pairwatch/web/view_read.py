"""What one view of the page reads: the series' frame, its alerts and statistics, the recent
alerts table, and the range read — in a worker thread, through read-only connections."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple, TypeVar

import pandas as pd

from pairwatch.daemon.store import open_store
from pairwatch.series import SeriesKey
from pairwatch.web import data

T = TypeVar("T")

ALERT_TABLE_ROWS = 1_000
"""Most recent alerts read for the page's table (it shows the newest of them)."""


class View(NamedTuple):
    frame: pd.DataFrame
    """The series' bars and analytics in the range (``data.load_frame``)."""
    alerts: pd.DataFrame
    """The series' alert events in the range (``series_alerts``)."""
    stats: data.Stats | None
    table: pd.DataFrame
    """The most recent alerts of any series."""
    span: tuple[int | None, int | None]
    """The range read, [start, end) in epoch ms (None: open)."""
    alert_id: int
    """The newest alert event's id when read (live mode reads the ones after it)."""


class News(NamedTuple):
    """What live mode adds: bars after the shown ones, and alert events after the last read."""

    frame: pd.DataFrame
    alerts: pd.DataFrame
    """The series' new alert events (``series_alerts``)."""
    table: pd.DataFrame | None
    """The most recent alerts of any series, when there are new ones (None: unchanged)."""
    alert_id: int


def read(db_path: Path, query: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``query`` on a fresh read-only connection, in one read transaction (one snapshot
    of the database for all its statements); call from a worker thread."""
    conn = open_store(db_path, readonly=True)
    try:
        conn.execute("BEGIN")
        return query(conn)
    finally:
        conn.close()


def newest_alert_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM alert_events").fetchone()[0])


def series_alerts(
    conn: sqlite3.Connection,
    key: SeriesKey,
    timeframes: Mapping[str, int],
    *,
    start: int | None,
    end: int | None,
    after_id: int | None = None,
) -> pd.DataFrame:
    """The alert events of ``key``'s series with ``at`` in [start, end) (and an id above
    ``after_id``), ``at`` moved to their bar's open (an event's ``at`` is its bar's close;
    the charts draw bars at their open)."""
    alerts = data.load_alerts(conn, target=key.pair, start=start, end=end, after_id=after_id)
    alerts = alerts[(alerts["timeframe"] == key.timeframe) & (alerts["window"] == key.window)]
    return alerts.assign(at=alerts["at"] - timeframes.get(key.timeframe, 0))


def read_view(
    db_path: Path,
    key: SeriesKey,
    bounds: Callable[[int], tuple[int | None, int | None]],
    timeframes: Mapping[str, int],
) -> View:
    """Read the view of ``key`` over ``bounds(last stored ts)`` (call from a worker thread)."""

    def query(conn: sqlite3.Connection) -> View:
        newest = newest_alert_id(conn)
        table = data.load_alerts(conn, limit=ALERT_TABLE_ROWS)
        last = data.time_bounds(conn, key)
        if last is None:
            empty = data.load_frame(db_path, key, 0, 0)
            alerts = series_alerts(conn, key, timeframes, start=0, end=0)
            return View(empty, alerts, None, table, (0, 0), newest)
        start, end = span = bounds(last[1])
        frame = data.load_frame(db_path, key, start, end)
        alerts = series_alerts(conn, key, timeframes, start=start, end=end)
        return View(frame, alerts, data.load_stats(conn, key), table, span, newest)

    return read(db_path, query)


def read_news(
    db_path: Path,
    key: SeriesKey,
    timeframes: Mapping[str, int],
    *,
    after_ts: int | None,
    end: int | None,
    start: int | None,
    after_id: int,
) -> News:
    """Read the bars of ``key`` from ``after_ts`` to ``end``, and its alert events after
    ``after_id`` over the whole shown range from ``start`` (an event stored after the last
    read may belong to a bar already shown); call from a worker thread."""

    def query(conn: sqlite3.Connection) -> News:
        newest = newest_alert_id(conn)
        if newest == after_id:
            alerts, table = series_alerts(conn, key, timeframes, start=0, end=0), None
        else:
            alerts = series_alerts(conn, key, timeframes, start=start, end=end,
                                   after_id=after_id)  # fmt: skip
            table = data.load_alerts(conn, limit=ALERT_TABLE_ROWS)
        return News(data.load_frame(db_path, key, after_ts, end), alerts, table, newest)

    return read(db_path, query)
