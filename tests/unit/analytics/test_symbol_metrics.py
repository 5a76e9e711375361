"""Symbol metrics against pandas rolling computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairwatch.analytics.symbol_metrics import (
    SYMBOL_METRICS,
    RollingSymbol,
    SymbolBank,
    symbol_metrics,
)


def bars(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    close = 60_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    volume = rng.exponential(2.0, n)
    volume[rng.random(n) < 0.1] = 0.0  # quiet bars
    quote = volume * close * (1 + rng.normal(0, 1e-4, n))
    trades = rng.poisson(30, n).astype(float)
    return close, volume, quote, trades


def test_metrics_match_pandas_rolling() -> None:
    close, volume, quote, trades = bars(20_000)
    got = symbol_metrics(close, volume, quote, trades, window=60, bar_ms=60_000)
    returns = np.log(pd.Series(close)).diff()
    # ln(a/b) here, ln a − ln b in pandas: equal to ~1e-15 absolute.
    np.testing.assert_allclose(got["log_return"], returns, rtol=0, atol=1e-14, equal_nan=True)
    annual = math.sqrt(365 * 1440)
    want_vol = returns.rolling(60).std() * annual
    np.testing.assert_allclose(got["volatility"], want_vol, rtol=1e-9, equal_nan=True)
    want_vwap = pd.Series(quote).rolling(60).sum() / pd.Series(volume).rolling(60).sum()
    np.testing.assert_allclose(got["vwap"], want_vwap, rtol=1e-9, equal_nan=True)
    for name, series in (("volume_zscore", volume), ("trades_zscore", trades)):
        s = pd.Series(series)
        want = (s - s.rolling(60).mean()) / s.rolling(60).std()
        np.testing.assert_allclose(got[name], want, rtol=1e-8, atol=1e-9, equal_nan=True)


def test_warm_up_and_flat_windows_give_nan() -> None:
    close = np.full(30, 100.0)
    zeros = np.zeros(30)
    got = symbol_metrics(close, zeros, zeros, zeros, window=10, bar_ms=1_000)
    assert np.isnan(got["log_return"][0])
    assert (got["log_return"][1:] == 0.0).all()
    assert np.isnan(got["volatility"][:10]).all()
    assert (got["volatility"][10:] == 0.0).all()
    for name in ("vwap", "volume_zscore", "trades_zscore"):
        assert np.isnan(got[name]).all(), name
        assert not np.isinf(got[name]).any(), name


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=6), st.integers(2, 20), st.integers(0, 99))
def test_incremental_updates_equal_the_batch_path(
    chunks: list[int], window: int, seed: int
) -> None:
    data = bars(sum(chunks), seed=seed)
    batch = symbol_metrics(*data, window=window, bar_ms=1_000)
    state = RollingSymbol(window, 1_000)
    rows, start = [], 0
    for size in chunks:
        rows.append(state.update_many(*(a[start : start + size] for a in data)))
        start += size
    live = np.vstack(rows)
    for k, name in enumerate(SYMBOL_METRICS):
        np.testing.assert_array_equal(live[:, k], batch[name], err_msg=name)


def test_constant_and_large_volumes_are_handled_exactly() -> None:
    n = 200
    close = np.full(n, 100.0)
    flat = np.full(n, 12.345)
    got = symbol_metrics(close, flat, flat * 100, flat, window=20, bar_ms=1_000)
    assert np.isnan(got["volume_zscore"]).all()  # a flat window has no z-score
    rng = np.random.default_rng(3)
    big = 1e6 + rng.normal(0, 0.01, n)
    got = symbol_metrics(close, big, big * 100, big, window=20, bar_ms=1_000)
    s = pd.Series(big)
    exact = [
        (big[i] - big[i - 19 : i + 1].mean()) / big[i - 19 : i + 1].std(ddof=1)
        for i in range(19, n)
    ]
    np.testing.assert_allclose(got["volume_zscore"][19:], exact, rtol=1e-6, atol=1e-6)
    assert s.size == n


def test_bad_closes_and_volumes_are_refused() -> None:
    one = np.ones(3)
    with pytest.raises(ValueError, match="finite and greater than zero"):
        symbol_metrics(np.array([1.0, 0.0, 1.0]), one, one, one, window=2, bar_ms=1_000)
    with pytest.raises(ValueError, match="volume must be finite"):
        symbol_metrics(one, np.array([1.0, np.nan, 1.0]), one, one, window=2, bar_ms=1_000)


def test_each_series_of_a_bank_equals_its_own_batch_to_the_bit() -> None:
    n_series, n_bars, window = 4, 200, 25
    data = [bars(n_bars, seed=s) for s in range(n_series)]
    bank = SymbolBank(n_series, window, 60_000)
    rng = np.random.default_rng(2)
    got: list[list[np.ndarray]] = [[] for _ in range(n_series)]
    cursor = [0] * n_series
    # Random subsets per call, a series sometimes twice in one call (bars closing together).
    while any(c < n_bars for c in cursor):
        picked = []
        for r in rng.integers(0, n_series, size=rng.integers(1, 7)).tolist():
            if cursor[r] < n_bars:
                picked.append((r, cursor[r]))
                cursor[r] += 1
        if not picked:
            continue
        columns = [[data[r][k][t] for r, t in picked] for k in range(4)]  # close … trades
        out = bank.update(np.array([r for r, _ in picked]), *columns)
        for (r, _), row in zip(picked, out, strict=True):
            got[r].append(row)
    for s in range(n_series):
        expected = symbol_metrics(*data[s], window=window, bar_ms=60_000)
        for k, name in enumerate(SYMBOL_METRICS):
            np.testing.assert_array_equal(np.array(got[s])[:, k], expected[name], name)


def test_a_bank_refuses_rows_and_bars_it_cannot_trust() -> None:
    bank = SymbolBank(2, 5, 1000)
    one = [1.0]
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        bank.update(np.array([2]), one, one, one, one)
    with pytest.raises(ValueError, match="same length"):
        bank.update(np.array([0, 1]), one, one, one, one)
    with pytest.raises(ValueError, match="volume must be finite"):
        bank.update(np.array([0]), one, [-1.0], one, one)


def test_a_constant_window_after_other_values_gives_nan_z_scores() -> None:
    # Regression: the flatness test was relative to the reference value only, so a
    # constant window measured against a reference of 0 (or far off) gave ~1e-8, not NaN.
    rng = np.random.default_rng(1)
    window = 10
    for k in range(300):
        first = rng.uniform(0, 10) if k % 2 else 0.0
        value = round(float(rng.uniform(0.01, 100)), int(rng.integers(1, 6)))
        volume = np.r_[first, np.full(window + 3, value)]
        close = np.linspace(100, 101, window + 4)
        trades = np.r_[0.0, np.full(window + 3, 3.0)]
        out = symbol_metrics(close, volume, volume * close, trades, window=window, bar_ms=1000)
        assert np.isnan(out["volume_zscore"][-1]), (first, value)
        assert np.isnan(out["trades_zscore"][-1])
