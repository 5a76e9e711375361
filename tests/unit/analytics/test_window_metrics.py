"""Window metrics: the registered functions against numpy, live equal to batch."""

from __future__ import annotations

import numpy as np

from pairwatch.analytics.rolling_ols import rolling_pair_metrics
from pairwatch.analytics.window_metrics import (
    WINDOW_METRICS,
    max_abs_zscore,
    window_metric_columns,
)
from unit.analytics.test_rolling_ols import btc_eth


def test_max_abs_zscore_is_the_largest_standardised_residual() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=50)
    y = 0.7 * x + rng.normal(scale=0.1, size=50)
    beta, alpha = np.polyfit(x, y, 1)
    e = y - alpha - beta * x
    expected = np.max(np.abs(e - e.mean())) / e.std(ddof=1)
    assert np.isclose(max_abs_zscore(x, y, beta, alpha), expected, rtol=1e-12)


def test_a_flat_window_gives_nan() -> None:
    x = np.arange(10.0)
    assert np.isnan(max_abs_zscore(x, 2.0 * x + 1.0, 2.0, 1.0))


def test_batch_columns_are_nan_until_the_window_is_full_then_equal_per_window() -> None:
    x, y = btc_eth(300, seed=4)
    window = 40
    core = rolling_pair_metrics(x, y, window)
    lx, ly = np.log(x), np.log(y)
    columns = window_metric_columns(lx, ly, core["hedge_ratio"], core["intercept"], window)
    assert set(columns) == set(WINDOW_METRICS)
    got = columns["max_abs_zscore"]
    assert np.isnan(got[: window - 1]).all()
    for t in (window - 1, 150, 299):
        b, a = core["hedge_ratio"][t], core["intercept"][t]
        e = ly[t + 1 - window : t + 1] - a - b * lx[t + 1 - window : t + 1]
        expected = np.max(np.abs(e - e.mean())) / e.std(ddof=1)
        assert np.isclose(got[t], expected, rtol=1e-9)
    # The latest |z| can never exceed the window's largest.
    assert (np.abs(core["zscore"][window:]) <= got[window:] * (1 + 1e-9)).all()
