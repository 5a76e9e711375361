"""What one view of the page reads: the series' frame, its alerts and statistics, the recent
alerts table, and the range read — in a worker thread, through read-only connections."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple, TypeVar

import pandas as pd

from pairwatch.daemon.store import open_store
from pairwatch.web import data
from pairwatch.web.data import SeriesKey

T = TypeVar("T")

ALERT_TABLE_ROWS = 1_000
"""Most recent alerts read for the page's table (it shows the newest of them)."""


class View(NamedTuple):
    frame: pd.DataFrame
    """The series' bars and analytics in the range (``data.load_frame``)."""
    alerts: pd.DataFrame
    """The series' alert events in the range, ``at`` moved to their bar's open."""
    stats: data.Stats | None
    table: pd.DataFrame
    """The most recent alerts of any series."""
    span: tuple[int | None, int | None]
    """The range read, [start, end) in epoch ms (None: open)."""


def read(db_path: Path, query: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``query`` on a fresh read-only connection (call from a worker thread)."""
    conn = open_store(db_path, readonly=True)
    try:
        return query(conn)
    finally:
        conn.close()


def read_view(
    db_path: Path,
    key: SeriesKey,
    bounds: Callable[[int], tuple[int | None, int | None]],
    timeframes: Mapping[str, int],
) -> View:
    """Read the view of ``key`` over ``bounds(last stored ts)`` (call from a worker thread)."""

    def query(conn: sqlite3.Connection) -> View:
        last = data.time_bounds(conn, key)
        if last is None:
            empty = data.load_frame(db_path, key, 0, 0)
            alerts = data.load_alerts(conn, target=key.pair, start=0, end=0)
            return View(empty, alerts, None, alerts, (0, 0))
        start, end = span = bounds(last[1])
        frame = data.load_frame(db_path, key, start, end)
        alerts = data.load_alerts(conn, target=key.pair, start=start, end=end)
        alerts = alerts[(alerts["timeframe"] == key.timeframe) & (alerts["window"] == key.window)]
        # An alert's ``at`` is its bar's close; the charts draw bars at their open.
        alerts = alerts.assign(at=alerts["at"] - timeframes.get(key.timeframe, 0))
        return View(frame, alerts, data.load_stats(conn, key), alerts, span)

    view = read(db_path, query)
    table = read(db_path, lambda c: data.load_alerts(c, limit=ALERT_TABLE_ROWS))
    return view._replace(table=table)
