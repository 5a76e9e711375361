"""Compute the analytics of stored bars in one batch and store them (used by replay).

Reads both legs' closed bars of every pair × timeframe from SQLite, runs the batch path
(``analytics.history``) — which equals what the live engine emits on the same bars — and
upserts one ``analytics`` row per aligned bar and window, one ``symbol_analytics`` row
per symbol bar and window, and the Kalman filter's final state (``kalman_state``), so a
daemon started on the file continues from it. Re-running is idempotent.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from pairwatch.analytics.engine import ADF_METRICS, SNAPSHOT_METRICS, KalmanState, PairSpec
from pairwatch.analytics.history import pair_history
from pairwatch.analytics.kalman import KalmanPair
from pairwatch.analytics.symbol_metrics import SYMBOL_METRICS, symbol_metrics
from pairwatch.daemon import store_reads
from pairwatch.daemon.metrics_schema import (
    UPSERT_ANALYTICS,
    UPSERT_KALMAN_STATE,
    UPSERT_SYMBOL_ANALYTICS,
    kalman_state_rows,
)

logger = logging.getLogger(__name__)

_SYMBOL_BARS = (
    "SELECT ts, close, volume, quote_volume, trades FROM bars "
    "WHERE symbol = ? AND timeframe = ? AND closed = 1 ORDER BY ts"
)


@dataclass(slots=True)
class BackfillStats:
    """What a backfill computed and wrote."""

    pair_rows: int = 0
    symbol_rows: int = 0
    seconds: float = 0.0


def backfill(conn: sqlite3.Connection, specs: Sequence[PairSpec]) -> BackfillStats:
    """Compute and store the analytics of every stored bar of ``specs``' legs."""
    started = time.perf_counter()
    stats = BackfillStats()
    now = int(time.time() * 1000)
    for spec in specs:
        legs = store_reads.load_aligned_closes(conn, spec.y, spec.x, spec.timeframe)
        if len(legs["ts"]) == 0:
            logger.warning("%s %s: no aligned bars to analyse", spec.pair, spec.timeframe)
            continue
        adf: bool | dict[str, np.ndarray] = True
        for window in spec.windows:
            columns = pair_history(
                spec, window, legs["ts"], legs["x_close"], legs["y_close"],
                legs["x_trades"], legs["y_trades"], adf=adf,
            )  # fmt: skip
            adf = {name: columns[name] for name in (*ADF_METRICS, "adf_at")}  # reused
            rows = _pair_rows(spec, window, columns, now)
            with conn:
                conn.executemany(UPSERT_ANALYTICS, rows)
            stats.pair_rows += len(rows)
        states = _kalman_states(spec, legs)
        if states:
            with conn:
                conn.executemany(UPSERT_KALMAN_STATE, kalman_state_rows(states, now))
    for (symbol, timeframe), (bar_ms, windows) in _symbol_windows(specs).items():
        bars = np.array(conn.execute(_SYMBOL_BARS, (symbol, timeframe)).fetchall(), dtype=float)
        if len(bars) == 0:
            continue
        ts, close, volume, quote, trades = bars.T
        for window in sorted(windows):
            values = symbol_metrics(close, volume, quote, trades, window=window, bar_ms=bar_ms)
            rows = list(
                zip(
                    repeat(symbol), repeat(timeframe), repeat(window), ts.astype(np.int64).tolist(),
                    *(_nullable(values[name]) for name in SYMBOL_METRICS), repeat(now),
                )
            )  # fmt: skip
            with conn:
                conn.executemany(UPSERT_SYMBOL_ANALYTICS, rows)
            stats.symbol_rows += len(rows)
    stats.seconds = time.perf_counter() - started
    return stats


def _kalman_states(spec: PairSpec, legs: dict[str, np.ndarray]) -> list[KalmanState]:
    """Return the filter state after the last liquid bar, for each window's series.

    The filter does not depend on the window, so every series of the pair gets the same
    state; a daemon started on this file continues from it.
    """
    liquid = np.ones(len(legs["ts"]), dtype=bool)
    if spec.min_trades > 0:
        liquid = (legs["x_trades"] >= spec.min_trades) & (legs["y_trades"] >= spec.min_trades)
    if not liquid.any():
        return []
    kalman = KalmanPair(delta=spec.delta, obs_var=spec.obs_var, log_prices=spec.log_prices)
    kalman.update_many(legs["x_close"][liquid], legs["y_close"][liquid])
    last = int(legs["ts"][liquid][-1])
    return [
        KalmanState(spec.y, spec.x, spec.timeframe, window, last, kalman.state)
        for window in spec.windows
    ]


def _symbol_windows(specs: Sequence[PairSpec]) -> dict[tuple[str, str], tuple[int, set[int]]]:
    out: dict[tuple[str, str], tuple[int, set[int]]] = {}
    for spec in specs:
        for symbol in (spec.y, spec.x):
            out.setdefault((symbol, spec.timeframe), (spec.bar_ms, set()))[1].update(spec.windows)
    return out


def _nullable(values: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else v for v in values.tolist()]


def _pair_rows(
    spec: PairSpec, window: int, columns: dict[str, np.ndarray], now: int
) -> list[tuple[object, ...]]:
    n = len(columns["ts"])
    adf_at = [None if math.isnan(v) else int(v) for v in columns["adf_at"].tolist()]
    return list(
        zip(
            repeat(spec.y, n), repeat(spec.x, n), repeat(spec.timeframe, n), repeat(window, n),
            columns["ts"].astype(np.int64).tolist(),
            *(_nullable(columns[name]) for name in SNAPSHOT_METRICS),
            adf_at, columns["thin"].astype(int).tolist(), repeat(now, n),
            strict=False,
        )
    )  # fmt: skip
