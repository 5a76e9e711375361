"""Many pairs of one window, updated together: the live path at hundreds of pairs.

A ``PairBank`` stacks the state of P pairs (rolling regression with half-life, and the
Kalman filter) in 2-D arrays, and one numba call advances any subset of them by one bar
each. It runs the very same per-pair steps as ``RollingPair`` and ``KalmanPair``, so a pair
in a bank produces the same numbers, to the bit, as one on its own.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from pairwatch.analytics.kalman import KALMAN_METRICS, _kalman_step
from pairwatch.analytics.prices import checked_prices
from pairwatch.analytics.rolling_ols import (
    _COUNT,
    _N_FLOAT,
    _N_INT,
    _POS,
    METRICS,
    _step,
)
from pairwatch.analytics.window_metrics import WINDOW_METRICS, apply_live

PAIR_METRICS = METRICS + KALMAN_METRICS + tuple(WINDOW_METRICS)
"""Columns of ``PairBank.update``'s result, in order."""

_WINDOW_FIRST = len(METRICS) + len(KALMAN_METRICS)


@numba.njit(cache=True)
def _bank_update(  # type: ignore[no-untyped-def]
    rows, st, si, bx, by, brx, bry, kst, x_raw, y_raw, log_prices, window, intercept,
    delta, obs_var, warmup, out,
):  # fmt: skip
    for j in range(rows.shape[0]):
        p = rows[j]
        lx = math.log(x_raw[j])
        ly = math.log(y_raw[j])
        x = lx if log_prices else x_raw[j]
        y = ly if log_prices else y_raw[j]
        _step(st[p], si[p], bx[p], by[p], brx[p], bry[p], lx, ly, x, y, window, intercept,
              True, out[:, :8], j)  # fmt: skip
        _kalman_step(kst[p], x, y, delta, obs_var, warmup, out[:, 8:], j)


class PairBank:
    """The state of ``size`` pairs sharing one window and settings."""

    def __init__(
        self,
        size: int,
        window: int,
        *,
        intercept: bool = True,
        log_prices: bool = True,
        delta: float = 1e-5,
        obs_var: float = 1e-3,
        kalman_warmup: int = 0,
    ) -> None:
        if window < 2:
            raise ValueError(f"window must be at least 2 bars, got {window}")
        if not delta > 0 or not obs_var > 0:
            raise ValueError("delta and obs_var must be > 0")
        self.window = window
        self.intercept = intercept
        self.log_prices = log_prices
        self.delta = delta
        self.obs_var = obs_var
        self.kalman_warmup = float(kalman_warmup)
        self._st = np.zeros((size, _N_FLOAT))
        self._si = np.zeros((size, _N_INT), dtype=np.int64)
        self._bx = np.zeros((size, window))
        self._by = np.zeros((size, window))
        self._brx = np.zeros((size, window - 1))
        self._bry = np.zeros((size, window - 1))
        self._kst = np.zeros((size, 6))
        self._kst[:, 2] = 1.0  # P = I
        self._kst[:, 4] = 1.0

    def kalman_state(self, row: int) -> tuple[float, ...]:
        """Return the Kalman filter state of one pair: β, α, P00, P01, P11, bars seen."""
        return tuple(self._kst[row].tolist())

    def set_kalman_state(self, row: int, state: tuple[float, ...]) -> None:
        """Restore the Kalman filter state of one pair (as ``kalman_state`` returned it)."""
        values = np.array(state, dtype=np.float64)
        if values.shape != (6,) or not np.all(np.isfinite(values)):
            raise ValueError(f"a Kalman state is six finite numbers, got {state!r}")
        self._kst[row] = values

    def update(
        self,
        rows: npt.NDArray[np.int64],
        x_raw: npt.NDArray[np.float64],
        y_raw: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        """Advance pairs ``rows`` by one bar each (raw closes); return one metrics row each."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        x_raw, y_raw = checked_prices(x_raw, y_raw)
        if rows.ndim != 1 or rows.shape != x_raw.shape:
            raise ValueError("rows and prices must be 1-D and of the same length")
        if rows.size and (rows.min() < 0 or rows.max() >= self._st.shape[0]):
            raise ValueError(f"rows must be within 0..{self._st.shape[0] - 1}")
        out = np.empty((rows.shape[0], len(PAIR_METRICS)))
        if WINDOW_METRICS and np.unique(rows).size < rows.size:
            # A pair advancing twice in one call: window metrics read the window after each
            # step, so run the steps in layers (each pair at most once per layer), in order.
            layer = np.empty(rows.size, dtype=np.int64)
            seen: dict[int, int] = {}
            for j, r in enumerate(rows.tolist()):
                layer[j] = seen[r] = seen.get(r, -1) + 1
            for k in range(int(layer.max()) + 1):
                picked = np.flatnonzero(layer == k)
                out[picked] = self._update(rows[picked], x_raw[picked], y_raw[picked])
            return out
        return self._update(rows, x_raw, y_raw)

    def _update(
        self,
        rows: npt.NDArray[np.int64],
        x_raw: npt.NDArray[np.float64],
        y_raw: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        out = np.empty((rows.shape[0], len(PAIR_METRICS)))
        _bank_update(
            rows, self._st, self._si, self._bx, self._by, self._brx, self._bry, self._kst,
            x_raw, y_raw, self.log_prices, self.window, self.intercept, self.delta,
            self.obs_var, self.kalman_warmup, out,
        )  # fmt: skip
        if WINDOW_METRICS:
            apply_live(rows, self._bx, self._by, self._si, (_POS, _COUNT), out, _WINDOW_FIRST, 0, 1)
        return out
