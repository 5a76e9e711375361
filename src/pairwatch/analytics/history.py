"""Pair analytics over stored history in one batch: the numbers the live engine would emit.

Given both legs' closed bars joined on ts (the live alignment: a ts where either leg has
no bar does not exist for the pair), ``pair_history`` runs the batch kernels over the
liquid rows and returns one value per row and metric, as the engine's snapshots would
carry them: thin rows (a leg below ``min_trades``) have NaN metrics and ``thin`` set, and
the Engle–Granger values are refreshed on the bars' own clock — whenever a bar's close
crosses a multiple of ``adf_refresh_ms`` — and apply from the next row on, as a live
refresh applies to the snapshots after it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from pairwatch.analytics.engine import ADF_METRICS, PairSpec, engle_granger
from pairwatch.analytics.kalman import kalman_metrics
from pairwatch.analytics.prices import log_prices
from pairwatch.analytics.rolling_ols import rolling_pair_metrics
from pairwatch.analytics.window_metrics import window_metric_columns

FloatArray = npt.NDArray[np.float64]


def pair_history(
    spec: PairSpec,
    window: int,
    ts: npt.NDArray[np.int64],
    x_close: FloatArray,
    y_close: FloatArray,
    x_trades: npt.NDArray[np.int64] | None = None,
    y_trades: npt.NDArray[np.int64] | None = None,
    *,
    adf: bool | Mapping[str, FloatArray] = True,
) -> dict[str, npt.NDArray[np.float64] | npt.NDArray[np.bool_]]:
    """Return ``ts``, ``thin``, ``adf_at`` (NaN: none yet) and every snapshot metric per row.

    ``adf``: compute the Engle–Granger columns, skip them (NaN), or take them ready-made
    from an earlier call for another window of the same pair (they do not depend on it).
    """
    n = len(ts)
    thin = np.zeros(n, dtype=np.bool_)
    if spec.min_trades > 0 and x_trades is not None and y_trades is not None:
        thin = (np.asarray(x_trades) < spec.min_trades) | (np.asarray(y_trades) < spec.min_trades)
    liquid = ~thin
    x, y = x_close[liquid], y_close[liquid]
    out: dict[str, npt.NDArray[np.float64] | npt.NDArray[np.bool_]] = {
        "ts": np.asarray(ts, dtype=np.float64), "thin": thin,
    }  # fmt: skip
    columns = {
        **rolling_pair_metrics(x, y, window, intercept=spec.intercept, log_prices=spec.log_prices),
        **kalman_metrics(x, y, delta=spec.delta, obs_var=spec.obs_var, log_prices=spec.log_prices),
    }
    transformed = (log_prices(x), log_prices(y)) if spec.log_prices else (x, y)
    columns.update(
        window_metric_columns(*transformed, columns["hedge_ratio"], columns["intercept"], window)
    )
    if isinstance(adf, Mapping):
        columns.update({name: np.asarray(adf[name])[liquid] for name in ADF_METRICS})
        adf_at = np.asarray(adf["adf_at"])[liquid]
    elif adf:
        adf_columns, adf_at = _adf_columns(spec, np.asarray(ts)[liquid], x, y)
        columns.update(adf_columns)
    else:
        columns.update({name: np.full(len(x), math.nan) for name in ADF_METRICS})
        adf_at = np.full(len(x), math.nan)
    for name, values in [*columns.items(), ("adf_at", adf_at)]:
        full = np.full(n, math.nan)
        full[liquid] = values
        out[name] = full
    return out


def _adf_columns(
    spec: PairSpec, ts: npt.NDArray[np.int64], x_raw: FloatArray, y_raw: FloatArray
) -> tuple[dict[str, FloatArray], FloatArray]:
    """Run the tests at each refresh point and carry their values to the following rows."""
    n = len(ts)
    columns = {name: np.full(n, math.nan) for name in ADF_METRICS}
    adf_at = np.full(n, math.nan)
    lookback = spec.adf_lookback
    if n <= lookback:
        return columns, adf_at
    x, y = (log_prices(x_raw), log_prices(y_raw)) if spec.log_prices else (x_raw, y_raw)
    closes = ts + spec.bar_ms
    period = closes // spec.adf_refresh_ms
    # Row i refreshes when its close starts a new period; the values apply from row i + 1.
    refresh = np.flatnonzero(period[1:] != period[:-1]) + 1
    refresh = refresh[refresh >= lookback - 1]
    for k, i in enumerate(refresh):
        if i + 1 >= n:
            break
        start = i + 1
        stop = refresh[k + 1] + 1 if k + 1 < len(refresh) else n
        values = engle_granger(x[i + 1 - lookback : i + 1], y[i + 1 - lookback : i + 1])
        for name, value in values.items():
            columns[name][start:stop] = value
        adf_at[start:stop] = closes[i]
    return columns, adf_at
