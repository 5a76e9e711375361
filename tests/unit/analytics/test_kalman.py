"""The Kalman hedge ratio against a plain-numpy filter written here, independently."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairwatch.analytics.kalman import KALMAN_METRICS, KalmanPair, kalman_metrics
from unit.analytics.test_rolling_ols import btc_eth


def reference_filter(x: np.ndarray, y: np.ndarray, delta: float, obs_var: float) -> np.ndarray:
    """The textbook filter with explicit matrices (standard covariance update)."""
    theta = np.zeros(2)
    cov = np.eye(2)
    q = delta * np.eye(2)
    rows = []
    for xt, yt in zip(x, y, strict=True):
        prior = cov + q
        h = np.array([xt, 1.0])
        innovation = yt - h @ theta
        s = h @ prior @ h + obs_var
        gain = prior @ h / s
        theta = theta + gain * innovation
        cov = (np.eye(2) - np.outer(gain, h)) @ prior
        rows.append([theta[0], theta[1], innovation, innovation / np.sqrt(s)])
    return np.array(rows)


def test_matches_a_plain_numpy_filter_on_log_prices() -> None:
    x, y = btc_eth(20_000, seed=5)
    got = kalman_metrics(x, y, delta=1e-5, obs_var=1e-3)
    want = reference_filter(np.log(x), np.log(y), 1e-5, 1e-3)
    for k, name in enumerate(KALMAN_METRICS):
        np.testing.assert_allclose(got[name], want[:, k], rtol=1e-7, atol=1e-9, err_msg=name)


def test_tracks_a_hedge_ratio_that_moves() -> None:
    rng = np.random.default_rng(6)
    n = 5_000
    lx = np.log(60_000) + np.cumsum(rng.normal(0, 1e-2, n))
    beta = np.linspace(0.6, 0.9, n)
    ly = beta * lx + 0.5 + rng.normal(0, 1e-4, n)
    got = kalman_metrics(np.exp(lx), np.exp(ly), delta=1e-6, obs_var=1e-8)
    assert np.abs(got["kalman_beta"][-500:] - beta[-500:]).max() < 0.02


def test_warmup_hides_the_first_bars() -> None:
    x, y = btc_eth(20, seed=7)
    got = kalman_metrics(x, y, warmup=5)
    for name in KALMAN_METRICS:
        assert np.isnan(got[name][:5]).all()
        assert np.isfinite(got[name][5:]).all()


def test_covariance_stays_positive_definite_over_a_million_updates() -> None:
    x, y = btc_eth(1_000_000, seed=8)
    pair = KalmanPair(delta=1e-7, obs_var=1e-6)
    out = pair.update_many(x, y)
    assert np.isfinite(out).all()
    p00, p01, p11 = pair._st[2], pair._st[3], pair._st[4]
    assert p00 > 0
    assert p00 * p11 - p01 * p01 > 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=6), st.integers(0, 999))
def test_incremental_updates_equal_the_batch_path_bit_for_bit(chunks: list[int], seed: int) -> None:
    x, y = btc_eth(sum(chunks), seed=seed)
    batch = kalman_metrics(x, y)
    pair = KalmanPair()
    rows, start = [], 0
    for size in chunks:
        rows.append(pair.update_many(x[start : start + size], y[start : start + size]))
        start += size
    live = np.vstack(rows)
    for k, name in enumerate(KALMAN_METRICS):
        np.testing.assert_array_equal(live[:, k], batch[name], err_msg=name)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        KalmanPair(delta=0)
