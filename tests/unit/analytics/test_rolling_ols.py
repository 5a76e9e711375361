"""Rolling pair regression against exact per-window arithmetic, statsmodels and pandas."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view
from statsmodels.regression.rolling import RollingOLS

from pairwatch.analytics.pair_bank import PairBank
from pairwatch.analytics.rolling_ols import (
    METRICS,
    RESYNC_WINDOWS,
    RollingPair,
    rolling_pair_metrics,
)

CHECKED = ["hedge_ratio", "intercept", "spread", "spread_std", "zscore"]


def btc_eth(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cointegrated random walks at BTC (~60,000) and ETH (~3,000) scale."""
    rng = np.random.default_rng(seed)
    factor = np.cumsum(rng.normal(0, 1e-3, n))
    spread = np.zeros(n)
    noise = rng.normal(0, 4e-4, n)
    for i in range(1, n):  # an AR(1) spread, so z-scores stay O(1)
        spread[i] = 0.98 * spread[i - 1] + noise[i]
    return 60_000 * np.exp(factor), 3_000 * np.exp(0.8 * factor + spread)


def exact(x: np.ndarray, y: np.ndarray, window: int, intercept: bool) -> dict[str, np.ndarray]:
    """Two-pass, centred, float64 per-window computation, in chunks to bound memory."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in CHECKED}
    xs, ys = sliding_window_view(x, window), sliding_window_view(y, window)
    for start in range(0, len(xs), 50_000):
        xw, yw = xs[start : start + 50_000], ys[start : start + 50_000]
        xm, ym = xw.mean(1, keepdims=True), yw.mean(1, keepdims=True)
        dx, dy = xw - xm, yw - ym
        if intercept:
            beta = (dx * dy).sum(1) / (dx * dx).sum(1)
            alpha = ym[:, 0] - beta * xm[:, 0]
        else:
            beta = (xw * yw).sum(1) / (xw * xw).sum(1)
            alpha = np.zeros(len(xw))
        resid = yw - alpha[:, None] - beta[:, None] * xw
        std = resid.std(1, ddof=1)
        parts["hedge_ratio"].append(beta)
        parts["intercept"].append(alpha)
        parts["spread"].append(resid[:, -1])
        parts["spread_std"].append(std)
        parts["zscore"].append((resid[:, -1] - resid.mean(1)) / std)
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def assert_close_to_exact(got: dict[str, np.ndarray], want: dict[str, np.ndarray], w: int) -> None:
    for name in CHECKED:
        error = np.abs(got[name][w - 1 :] - want[name]) / np.maximum(1.0, np.abs(want[name]))
        assert error.max() < 1e-9, (name, error.max())


def test_a_million_updates_stay_within_1e9_of_exact_on_log_prices() -> None:
    x, y = btc_eth(1_000_000)
    got = rolling_pair_metrics(x, y, 100)
    assert_close_to_exact(got, exact(np.log(x), np.log(y), 100, True), 100)


def test_a_million_updates_stay_within_1e9_of_exact_on_raw_prices() -> None:
    x, y = btc_eth(1_000_000, seed=3)
    got = rolling_pair_metrics(x, y, 100, log_prices=False)
    assert_close_to_exact(got, exact(x, y, 100, True), 100)


@pytest.mark.parametrize(
    ("log_prices", "intercept"), [(False, True), (False, False), (True, False)]
)
def test_raw_prices_and_no_intercept_stay_within_1e9_of_exact(
    log_prices: bool, intercept: bool
) -> None:
    x, y = btc_eth(200_000, seed=1)
    got = rolling_pair_metrics(x, y, 60, intercept=intercept, log_prices=log_prices)
    tx, ty = (np.log(x), np.log(y)) if log_prices else (x, y)
    assert_close_to_exact(got, exact(tx, ty, 60, intercept), 60)


def test_hedge_ratio_and_intercept_match_statsmodels_rolling_ols() -> None:
    x, y = btc_eth(5_000, seed=2)
    lx, ly = np.log(x), np.log(y)
    fit = RollingOLS(ly, np.column_stack([np.ones_like(lx), lx]), window=50).fit()
    got = rolling_pair_metrics(x, y, 50)
    # RollingOLS updates its cross-products without re-centring: it drifts (up to ~1e-4
    # relative here), so it agrees loosely, and the exact values side with us.
    np.testing.assert_allclose(got["hedge_ratio"][49:], fit.params[49:, 1], rtol=1e-3)
    np.testing.assert_allclose(got["intercept"][49:], fit.params[49:, 0], rtol=1e-3, atol=1e-6)
    truth = exact(lx, ly, 50, True)["hedge_ratio"]
    ours = np.abs(got["hedge_ratio"][49:] - truth).max()
    theirs = np.abs(fit.params[49:, 1] - truth).max()
    assert ours < 1e-12 < theirs


def test_correlations_match_pandas_rolling() -> None:
    x, y = btc_eth(5_000, seed=3)
    got = rolling_pair_metrics(x, y, 40)
    returns_x, returns_y = pd.Series(np.log(x)).diff(), pd.Series(np.log(y)).diff()
    want = returns_x.rolling(39).corr(returns_y).to_numpy()
    np.testing.assert_allclose(got["correlation"][39:], want[39:], rtol=1e-9, atol=1e-12)
    levels = pd.Series(np.log(x)).rolling(40).corr(pd.Series(np.log(y))).to_numpy()
    np.testing.assert_allclose(got["price_correlation"][39:], levels[39:], rtol=1e-9)


def test_metrics_are_nan_until_the_window_is_full() -> None:
    x, y = btc_eth(30, seed=4)
    got = rolling_pair_metrics(x, y, 10)
    for name in METRICS:
        assert np.isnan(got[name][:9]).all(), name
        if name != "half_life":  # NaN by definition when the window does not mean-revert
            assert np.isfinite(got[name][9:]).all(), name


def test_a_flat_window_gives_nan_never_inf() -> None:
    x = np.full(20, 60_000.0)
    y = np.linspace(3_000, 3_010, 20)
    got = rolling_pair_metrics(x, y, 10)
    for name in METRICS:
        assert not np.isinf(got[name]).any(), name
    assert np.isnan(got["hedge_ratio"][9:]).all()
    assert np.isnan(got["correlation"][9:]).all()


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 40),
    st.lists(st.integers(1, 50), min_size=1, max_size=8),
    st.booleans(),
    st.integers(0, 2**31),
)
def test_incremental_updates_equal_the_batch_path_bit_for_bit(
    window: int, chunks: list[int], intercept: bool, seed: int
) -> None:
    x, y = btc_eth(sum(chunks) + window, seed=seed % 1000)
    batch = rolling_pair_metrics(x, y, window, intercept=intercept)
    pair = RollingPair(window, intercept=intercept)
    rows, start = [], 0
    for size in [*chunks, window]:
        rows.append(pair.update_many(x[start : start + size], y[start : start + size]))
        start += size
    live = np.vstack(rows)
    for k, name in enumerate(METRICS):
        np.testing.assert_array_equal(live[:, k], batch[name], err_msg=name)
    one = RollingPair(window, intercept=intercept)
    single = [one.update(float(a), float(b)) for a, b in zip(x[:5], y[:5], strict=True)]
    assert [s["hedge_ratio"] for s in single] == pytest.approx(
        batch["hedge_ratio"][:5], nan_ok=True
    )


def exact_half_life(x: np.ndarray, y: np.ndarray, window: int, intercept: bool) -> np.ndarray:
    """AR(1) half-life of each window's exact residuals (numpy least squares)."""
    out = []
    for end in range(window, len(x) + 1):
        xw, yw = x[end - window : end], y[end - window : end]
        design = np.column_stack([xw, np.ones(window)]) if intercept else xw[:, None]
        coef = np.linalg.lstsq(design, yw, rcond=None)[0]
        resid = yw - design @ coef
        lagged = np.column_stack([resid[:-1], np.ones(window - 1)])
        phi = np.linalg.lstsq(lagged, resid[1:], rcond=None)[0][0]
        out.append(-np.log(2) / np.log(phi) if 0 < phi < 1 else np.nan)
    return np.array(out)


@pytest.mark.parametrize("intercept", [True, False])
def test_half_life_matches_an_ar1_fit_of_each_window(intercept: bool) -> None:
    x, y = btc_eth(3_000, seed=9)
    got = rolling_pair_metrics(x, y, 80, intercept=intercept)["half_life"][79:]
    want = exact_half_life(np.log(x), np.log(y), 80, intercept)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    assert ok.mean() > 0.5
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-6)


def test_leaving_out_the_half_life_changes_no_other_metric() -> None:
    x, y = btc_eth(2_000, seed=10)
    full = rolling_pair_metrics(x, y, 50)
    lean = rolling_pair_metrics(x, y, 50, half_life=False)
    assert np.isnan(lean["half_life"]).all()
    for name in METRICS:
        if name != "half_life":
            np.testing.assert_array_equal(lean[name], full[name], err_msg=name)


def test_a_perfect_fit_has_no_spread_to_scale_by() -> None:
    x, _ = btc_eth(300, seed=11)
    got = rolling_pair_metrics(x, 0.05 * x + 3.0, 20, log_prices=False)
    assert (got["spread_std"][19:] == 0.0).all()
    assert np.isnan(got["zscore"][19:]).all()


def test_prices_that_are_not_finite_and_positive_are_refused() -> None:
    pair = RollingPair(10)
    for bad in (np.nan, np.inf, 0.0, -1.0):
        with pytest.raises(ValueError, match="finite and greater than zero"):
            pair.update_many(np.array([1.0, bad]), np.array([1.0, 1.0]))


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 30), st.booleans(), st.booleans(), st.integers(0, 2**31))
def test_the_live_bank_equals_the_batch_path_bit_for_bit_in_every_setting(
    window: int, intercept: bool, log_prices: bool, seed: int
) -> None:
    n = 2 * RESYNC_WINDOWS * window + 7  # through two exact recomputations
    x, y = btc_eth(n, seed=seed % 1000)
    batch = rolling_pair_metrics(x, y, window, intercept=intercept, log_prices=log_prices)
    bank = PairBank(1, window, intercept=intercept, log_prices=log_prices)
    row = np.zeros(1, dtype=np.int64)
    live = np.vstack([bank.update(row, x[i : i + 1], y[i : i + 1])[0] for i in range(n)])
    for k, name in enumerate(METRICS):
        np.testing.assert_array_equal(live[:, k], batch[name], err_msg=name)


@pytest.mark.parametrize("log_prices", [True, False])
def test_a_long_batch_equals_the_same_bars_fed_in_uneven_pieces(log_prices: bool) -> None:
    x, y = btc_eth(20_000, seed=12)  # longer than the chunks the batch path takes logs in
    batch = rolling_pair_metrics(x, y, 70, log_prices=log_prices)
    pair = RollingPair(70, log_prices=log_prices)
    cuts = [0, 1, 4_095, 4_097, 9_000, 17_000, 20_000]
    pieces = [pair.update_many(x[a:b], y[a:b]) for a, b in pairwise(cuts)]
    live = np.vstack(pieces)
    for k, name in enumerate(METRICS):
        np.testing.assert_array_equal(live[:, k], batch[name], err_msg=name)


def test_a_window_gone_flat_after_moving_gives_nan_not_a_fit_to_rounding_noise() -> None:
    # Regression: with the reference point set by earlier, moving prices, the centred sum
    # of squares of a now-constant window cancels to a few ulps rather than to 0, and once
    # gave β = 0 with a finite z-score. Random windows, both transforms, with and without
    # an intercept.
    rng = np.random.default_rng(2)
    for k in range(300):
        window = int(rng.integers(3, 30))
        before = int(rng.integers(1, 5 * window))
        flat = round(float(rng.uniform(0.001, 70_000)), int(rng.integers(0, 8)))
        x = np.r_[flat * np.exp(np.cumsum(rng.normal(0, 0.01, before))), np.full(window + 2, flat)]
        y = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, before + window + 2)))
        m = rolling_pair_metrics(x, y, window, log_prices=bool(k % 2), intercept=bool(k % 3))
        for name in ("hedge_ratio", "intercept", "spread", "spread_std", "zscore"):
            assert np.isnan(m[name][-1]), (name, window, before, flat)
        assert np.isnan(m["price_correlation"][-1])
