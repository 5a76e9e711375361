"""The metrics tables: their metric columns, upserts and the rows that fill them.

``analytics`` (pair metrics) and ``symbol_analytics`` (per-symbol metrics) are keyed by
(series, ts). Their metric columns follow the metrics registered in
``pairwatch.analytics``: version 2 of the schema creates those of its release, and the
store adds a column for any metric registered later (``metric_columns``). ``kalman_state``
keeps the Kalman filter's latest state per pair series, for restarts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Final

from pairwatch.analytics import engine, symbol_metrics
from pairwatch.analytics.engine import KalmanState
from pairwatch.daemon.schema import Row
from pairwatch.errors import StoreError
from pairwatch.events import PairSnapshot, SymbolSnapshot

SERIES_KEYS: Final = {
    "analytics": ("y", "x", "timeframe", "window"),
    "symbol_analytics": ("symbol", "timeframe", "window"),
}
"""Tables keyed by (series, ts), with their series columns: the primary key's prefix."""

ANALYTICS_FLAGS: Final = ("adf_at", "thin", "updated_at")
"""Columns of ``analytics`` after its metrics that are not metrics."""

_METRIC_NAME = re.compile(r"[a-z][a-z0-9_]*")


def metric_columns() -> dict[str, tuple[str, ...]]:
    """Return the metric columns each metrics table must have: every registered metric.

    Read at call time, so a metric registered in ``pairwatch.analytics`` (the tuples grow)
    becomes a column the next time the store is opened read-write.
    """
    wanted = {
        "analytics": tuple(engine.SNAPSHOT_METRICS),
        "symbol_analytics": tuple(symbol_metrics.SYMBOL_METRICS),
    }
    for table, names in wanted.items():
        reserved = (*SERIES_KEYS[table], "ts", "updated_at", *ANALYTICS_FLAGS)
        for name in names:
            # The names become SQL identifiers: accept plain lower-case words only.
            if not _METRIC_NAME.fullmatch(name) or name in reserved:
                raise StoreError(f"invalid metric name {name!r} for a {table} column")
        if len(set(names)) != len(names):
            raise StoreError(f"metric names of {table} are not unique: {', '.join(names)}")
    return wanted


def add_metric_column_sql(table: str, name: str) -> str:
    """Return the ALTER TABLE that adds one metric column (names from ``metric_columns``)."""
    return f"ALTER TABLE {table} ADD COLUMN {name} REAL"


def upsert_sql(table: str, metrics: Sequence[str]) -> str:
    """Return the upsert of a metrics table writing ``metrics`` (others keep their value)."""
    key = (*SERIES_KEYS[table], "ts")
    extra = ANALYTICS_FLAGS if table == "analytics" else ("updated_at",)
    columns = (*key, *metrics, *extra)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[len(key) :])
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 -- checked names
        f"VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


UPSERT_ANALYTICS: Final = upsert_sql("analytics", engine.SNAPSHOT_METRICS)
"""The ``analytics`` upsert of the metrics registered at import: key, metrics, adf_at, thin,
updated_at (the writer builds its own from ``metric_columns()`` when it is created)."""
UPSERT_SYMBOL_ANALYTICS: Final = upsert_sql("symbol_analytics", symbol_metrics.SYMBOL_METRICS)
"""The ``symbol_analytics`` upsert of the metrics registered at import: key, metrics,
updated_at."""


def _real(value: float | None) -> float | None:
    """Return a finite value as a float; NaN, ±inf and missing become NULL."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def pair_snapshot_rows(
    snapshots: Sequence[PairSnapshot], now: int, metrics: Sequence[str]
) -> list[Row]:
    """Return pair snapshots as ``upsert_sql("analytics", metrics)`` parameters."""
    rows: list[Row] = []
    nulls = (None,) * len(metrics)
    for s in snapshots:
        key = (s.y, s.x, s.timeframe, s.window, s.ts)
        if s.thin:  # skipped by the kernels: no metric is a value of this bar
            rows.append((*key, *nulls, None, 1, now))
        else:
            values = s.metrics
            rows.append((*key, *[_real(values.get(m)) for m in metrics], s.adf_at, 0, now))
    return rows


def symbol_snapshot_rows(
    snapshots: Sequence[SymbolSnapshot], now: int, metrics: Sequence[str]
) -> list[Row]:
    """Return symbol snapshots as ``upsert_sql("symbol_analytics", metrics)`` parameters."""
    return [
        (
            *(s.symbol, s.timeframe, s.window, s.ts),
            *[_real(s.metrics.get(m)) for m in metrics],
            now,
        )
        for s in snapshots
    ]


UPSERT_KALMAN_STATE: Final = (
    "INSERT INTO kalman_state "
    "(y, x, timeframe, window, ts, beta, alpha, p00, p01, p11, bars, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (y, x, timeframe, window) DO UPDATE SET ts = excluded.ts, "
    "beta = excluded.beta, alpha = excluded.alpha, p00 = excluded.p00, p01 = excluded.p01, "
    "p11 = excluded.p11, bars = excluded.bars, updated_at = excluded.updated_at"
)


def kalman_state_rows(states: Sequence[KalmanState], now: int) -> list[Row]:
    """Return Kalman filter states as ``UPSERT_KALMAN_STATE`` parameters."""
    return [
        (s.y, s.x, s.timeframe, s.window, s.ts, *s.state[:5], int(s.state[5]), now) for s in states
    ]
