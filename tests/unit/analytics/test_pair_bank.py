"""A bank of pairs gives each pair the numbers it would get on its own."""

from __future__ import annotations

import numpy as np
import pytest

from pairwatch.analytics.kalman import KALMAN_METRICS, kalman_metrics
from pairwatch.analytics.pair_bank import PAIR_METRICS, PairBank
from pairwatch.analytics.rolling_ols import METRICS, rolling_pair_metrics
from pairwatch.analytics.window_metrics import WINDOW_METRICS, window_metric_columns
from unit.analytics.test_rolling_ols import btc_eth


def test_each_pair_of_a_bank_equals_its_own_batch_to_the_bit() -> None:
    n_pairs, n_bars, window = 5, 300, 30
    series = [btc_eth(n_bars, seed=s) for s in range(n_pairs)]
    bank = PairBank(n_pairs, window)
    rng = np.random.default_rng(1)
    results: list[list[np.ndarray]] = [[] for _ in range(n_pairs)]
    cursor = [0] * n_pairs
    # Pairs receive their bars in a random interleaving, several in one call.
    while any(c < n_bars for c in cursor):
        live = [p for p in range(n_pairs) if cursor[p] < n_bars]
        chosen = rng.choice(live, size=rng.integers(1, len(live) + 1), replace=False)
        rows = np.array(sorted(chosen), dtype=np.int64)
        xs = np.array([series[p][0][cursor[p]] for p in rows])
        ys = np.array([series[p][1][cursor[p]] for p in rows])
        out = bank.update(rows, xs, ys)
        for k, p in enumerate(rows):
            results[p].append(out[k])
            cursor[p] += 1
    for p in range(n_pairs):
        got = np.array(results[p])
        x, y = series[p]
        alone = batch(x, y, window)
        for k, name in enumerate(PAIR_METRICS):
            np.testing.assert_array_equal(got[:, k], alone[name], err_msg=f"pair {p} {name}")
    assert METRICS + KALMAN_METRICS + tuple(WINDOW_METRICS) == PAIR_METRICS


def batch(x: np.ndarray, y: np.ndarray, window: int) -> dict[str, np.ndarray]:
    core = rolling_pair_metrics(x, y, window) | kalman_metrics(x, y)
    extra = window_metric_columns(
        np.log(x), np.log(y), core["hedge_ratio"], core["intercept"], window
    )
    return core | extra


def test_a_pair_advanced_several_times_in_one_call_equals_its_batch() -> None:
    window = 20
    series = [btc_eth(200, seed=s) for s in range(2)]
    bank = PairBank(2, window)
    # Rows repeat within a call (bars of several seconds closing at once).
    got: list[list[np.ndarray]] = [[], []]
    for start in range(0, 200, 5):
        rows = np.array([0, 1] * 5, dtype=np.int64)
        steps = np.repeat(np.arange(start, start + 5), 2)
        xs = np.array([series[r][0][t] for r, t in zip(rows, steps, strict=True)])
        ys = np.array([series[r][1][t] for r, t in zip(rows, steps, strict=True)])
        out = bank.update(rows, xs, ys)
        for k, r in enumerate(rows):
            got[r].append(out[k])
    for p in range(2):
        expected = batch(*series[p], window)
        for k, name in enumerate(PAIR_METRICS):
            np.testing.assert_array_equal(np.array(got[p])[:, k], expected[name], name)


def test_a_bank_refuses_rows_and_prices_it_cannot_trust() -> None:
    bank = PairBank(2, 10)
    one = np.array([1.0])
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        bank.update(np.array([2]), one, one)
    with pytest.raises(ValueError, match="same length"):
        bank.update(np.array([0, 1]), one, one)
    with pytest.raises(ValueError, match="finite and greater than zero"):
        bank.update(np.array([0]), np.array([np.nan]), one)
    with pytest.raises(ValueError, match="must be > 0"):
        PairBank(2, 10, delta=0.0)
