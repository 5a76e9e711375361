"""Kalman-filter dynamic hedge ratio: state [β, α] following a random walk, one update per bar.

Model, on transformed prices (log by default) x and y of one pair:

    y_t = β_t·x_t + α_t + ε_t,        ε_t ~ N(0, R)      (R: ``obs_var``)
    [β_t, α_t] = [β_{t-1}, α_{t-1}] + w_t,  w_t ~ N(0, δ·I)  (δ: ``delta``)

Per bar: predict (P⁻ = P + δI), innovation e_t = y_t − (β·x_t + α) with variance
S_t = H P⁻ Hᵀ + R, gain K = P⁻Hᵀ/S, update θ = θ⁻ + K·e and P in Joseph form (which keeps P
symmetric positive definite over millions of updates). Outputs ``kalman_beta`` and
``kalman_alpha`` (the updated state), ``kalman_spread`` = e_t (the one-step-ahead
prediction error) and ``kalman_zscore`` = e_t / √S_t. The filter starts from θ = 0 and
P = ``initial_var``·I; its outputs are NaN for the first ``warmup`` bars while it settles.

As for the rolling regression, one numba step serves the live path (``KalmanPair``) and
the batch path (``kalman_metrics``), so both agree to the bit.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from pairwatch.analytics.prices import checked_prices, log_prices

KALMAN_METRICS = ("kalman_beta", "kalman_alpha", "kalman_spread", "kalman_zscore")

# State: beta, alpha, P00, P01, P11, bars seen
_B, _A, _P00, _P01, _P11, _N = range(6)


@numba.njit
def _kalman_step(st, x, y, delta, obs_var, warmup, out, row):  # type: ignore[no-untyped-def]
    if not (math.isfinite(x) and math.isfinite(y)):  # no observation: the state stays
        for k in range(4):
            out[row, k] = math.nan
        return
    p00 = st[_P00] + delta
    p01 = st[_P01]
    p11 = st[_P11] + delta
    # H = [x, 1]; P⁻Hᵀ = [p00·x + p01, p01·x + p11]
    ph0 = p00 * x + p01
    ph1 = p01 * x + p11
    s = x * ph0 + ph1 + obs_var
    e = y - (st[_B] * x + st[_A])
    k0 = ph0 / s
    k1 = ph1 / s
    st[_B] += k0 * e
    st[_A] += k1 * e
    # Joseph form: P = (I − KH) P⁻ (I − KH)ᵀ + R·K Kᵀ, with (I − KH) = [[1−k0x, −k0], [−k1x, 1−k1]]
    a00 = 1.0 - k0 * x
    a01 = -k0
    a10 = -k1 * x
    a11 = 1.0 - k1
    # M = A P⁻
    m00 = a00 * p00 + a01 * p01
    m01 = a00 * p01 + a01 * p11
    m10 = a10 * p00 + a11 * p01
    m11 = a10 * p01 + a11 * p11
    st[_P00] = m00 * a00 + m01 * a01 + obs_var * k0 * k0
    st[_P01] = m00 * a10 + m01 * a11 + obs_var * k0 * k1
    st[_P11] = m10 * a10 + m11 * a11 + obs_var * k1 * k1
    st[_N] += 1.0
    if st[_N] <= warmup:
        for k in range(4):
            out[row, k] = math.nan
        return
    out[row, 0] = st[_B]
    out[row, 1] = st[_A]
    out[row, 2] = e
    out[row, 3] = e / math.sqrt(s) if s > 0.0 else math.nan


@numba.njit(cache=True)
def _kalman_run(st, x, y, delta, obs_var, warmup, out):  # type: ignore[no-untyped-def]
    for i in range(x.shape[0]):
        _kalman_step(st, x[i], y[i], delta, obs_var, warmup, out, i)


class KalmanPair:
    """The filter state of one pair (O(1) per bar)."""

    __slots__ = ("_st", "delta", "log_prices", "obs_var", "warmup")

    def __init__(
        self,
        *,
        delta: float = 1e-5,
        obs_var: float = 1e-3,
        initial_var: float = 1.0,
        warmup: int = 0,
        log_prices: bool = True,
    ) -> None:
        if not delta > 0 or not obs_var > 0 or not initial_var > 0:
            raise ValueError("delta, obs_var and initial_var must be > 0")
        self.delta = delta
        self.obs_var = obs_var
        self.warmup = warmup
        self.log_prices = log_prices
        self._st = np.array([0.0, 0.0, initial_var, 0.0, initial_var, 0.0])

    @property
    def state(self) -> tuple[float, ...]:
        """Return the filter state: β, α, P00, P01, P11 and the number of bars seen."""
        return tuple(self._st.tolist())

    def update_many(
        self, x_raw: npt.NDArray[np.float64], y_raw: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """Advance by several bars (raw closes); return their metrics, one row each."""
        x, y = checked_prices(x_raw, y_raw)
        if self.log_prices:
            x, y = log_prices(x), log_prices(y)
        out = np.empty((x.shape[0], len(KALMAN_METRICS)))
        _kalman_run(self._st, x, y, self.delta, self.obs_var, float(self.warmup), out)
        return out

    def update(self, x_raw: float, y_raw: float) -> dict[str, float]:
        """Advance by one bar (raw closes of both legs); return the metrics."""
        row = self.update_many(np.array([x_raw]), np.array([y_raw]))[0]
        return dict(zip(KALMAN_METRICS, row.tolist(), strict=True))


def kalman_metrics(
    x_raw: npt.NDArray[np.float64],
    y_raw: npt.NDArray[np.float64],
    *,
    delta: float = 1e-5,
    obs_var: float = 1e-3,
    initial_var: float = 1.0,
    warmup: int = 0,
    log_prices: bool = True,
) -> dict[str, npt.NDArray[np.float64]]:
    """Return the Kalman metrics for every bar of two aligned close-price series (batch)."""
    pair = KalmanPair(
        delta=delta, obs_var=obs_var, initial_var=initial_var, warmup=warmup, log_prices=log_prices
    )
    out = pair.update_many(x_raw, y_raw)
    return {name: out[:, k] for k, name in enumerate(KALMAN_METRICS)}
