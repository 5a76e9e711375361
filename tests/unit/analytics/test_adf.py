"""ADF and Engle-Granger tests against statsmodels' adfuller and coint."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.adfvalues import mackinnonp
from statsmodels.tsa.stattools import adfuller
from statsmodels.tsa.stattools import coint as sm_coint

from pairwatch.analytics.adf import AdfResult, adf, coint, default_maxlag, mackinnon_pvalue

REAL = Path(__file__).resolve().parents[2] / "data" / "real"
RTOL = 1e-8


def random_walk(n: int, seed: int, level: float = 100.0) -> np.ndarray:
    return level + np.cumsum(np.random.default_rng(seed).normal(size=n))


def ar1(n: int, seed: int, phi: float = 0.7) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=n)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + noise[i]
    return x


def ar2_walk(n: int, seed: int) -> np.ndarray:
    """Integrate an AR(2) so AIC has a lag > 0 to find."""
    noise = np.random.default_rng(seed).normal(size=n)
    d = np.zeros(n)
    for i in range(2, n):
        d[i] = 0.5 * d[i - 1] - 0.3 * d[i - 2] + noise[i]
    return 50.0 + np.cumsum(d)


@cache
def last_prices(symbol: str) -> pd.Series:
    """Return 1 s last trade prices of one day of Binance spot trades."""
    times, prices = [], []
    with gzip.open(REAL / f"hftbacktest_spot_{symbol}_20240808_trades.gz", "rt") as lines:
        for line in lines:
            data = json.loads(line.split(" ", 1)[1])["data"]
            times.append(data["T"])
            prices.append(float(data["p"]))
    series = pd.Series(prices, index=pd.to_datetime(times, unit="ms"))
    return series.resample("1s").last().ffill().dropna()


def real_series() -> dict[str, np.ndarray]:
    btc, eth = last_prices("btcusdt"), last_prices("ethusdt")
    both = pd.concat([btc, eth], axis=1, join="inner").dropna()
    lb, le = np.log(both.iloc[:, 0].to_numpy()), np.log(both.iloc[:, 1].to_numpy())
    return {
        "btc": btc.to_numpy(),
        "eth": eth.to_numpy(),
        "log_btc": np.log(btc.to_numpy()),
        "spread": le - lb,
        "log_btc_aligned": lb,
        "log_eth_aligned": le,
    }


def assert_matches_adfuller(x: np.ndarray, maxlag: int | None, regression: str) -> AdfResult:
    want = adfuller(x, maxlag=maxlag, regression=regression, autolag="AIC", result_object=True)
    got = adf(x, maxlag=maxlag, regression=regression)
    assert got.lag == want.lags
    assert got.nobs == want.nobs
    assert got.stat == pytest.approx(want.statistic, rel=RTOL)
    assert got.pvalue == pytest.approx(want.pvalue, rel=RTOL, abs=1e-300)
    return got


@pytest.mark.parametrize("regression", ["c", "ct", "n"])
@pytest.mark.parametrize("maxlag", [None, 0, 5])
@pytest.mark.parametrize("n", [200, 1000, 5000])
@pytest.mark.parametrize("make", [random_walk, ar1, ar2_walk])
def test_adf_matches_adfuller_on_synthetic_series(
    make: Callable[[int, int], np.ndarray], n: int, maxlag: int | None, regression: str
) -> None:
    for seed in range(3):
        assert_matches_adfuller(make(n, seed), maxlag, regression)


def test_aic_picks_a_positive_lag_for_an_integrated_ar2() -> None:
    got = assert_matches_adfuller(ar2_walk(1000, 0), None, "c")
    assert got.lag >= 2


def test_a_random_walk_is_not_rejected_and_an_ar1_is() -> None:
    assert assert_matches_adfuller(random_walk(1000, 7), None, "c").pvalue > 0.05
    assert assert_matches_adfuller(ar1(1000, 7), None, "c").pvalue < 1e-6


def test_btc_scale_prices_lose_no_accuracy() -> None:
    x = random_walk(1000, 3, level=60_000.0) * 0.01 + 60_000.0
    assert_matches_adfuller(x, None, "c")


@pytest.mark.parametrize("name", ["btc", "eth", "log_btc", "spread"])
@pytest.mark.parametrize("regression", ["c", "ct"])
@pytest.mark.parametrize("maxlag", [None, 3])
def test_adf_matches_adfuller_on_real_one_second_prices(
    name: str, regression: str, maxlag: int | None
) -> None:
    x = real_series()[name]
    assert len(x) > 300  # about six minutes of trades
    assert_matches_adfuller(x, maxlag, regression)


def test_coint_matches_statsmodels_on_real_log_prices() -> None:
    series = real_series()
    y, x = series["log_eth_aligned"], series["log_btc_aligned"]
    want = sm_coint(y, x, trend="c", autolag="aic")
    got = coint(y, x)
    assert got.stat == pytest.approx(want[0], rel=RTOL)
    assert got.pvalue == pytest.approx(want[1], rel=RTOL)


@pytest.mark.parametrize("n", [200, 1000, 5000])
@pytest.mark.parametrize("maxlag", [None, 4])
def test_coint_matches_statsmodels_on_cointegrated_pairs(n: int, maxlag: int | None) -> None:
    rng = np.random.default_rng(n)
    factor = np.cumsum(rng.normal(0, 1e-3, n))
    y, x = np.log(3_000) + 0.8 * factor + ar1(n, n, 0.9) * 4e-4, np.log(60_000) + factor
    want = sm_coint(y, x, trend="c", autolag="aic", maxlag=maxlag)
    got = coint(y, x, maxlag=maxlag)
    assert got.stat == pytest.approx(want[0], rel=RTOL)
    assert got.pvalue == pytest.approx(want[1], rel=RTOL)
    assert got.pvalue < 0.05


def test_coint_of_collinear_series_reports_minus_infinity() -> None:
    x = random_walk(500, 1)
    got = coint(2.0 * x + 1.0, x)
    assert got.stat == -math.inf
    assert got.pvalue == 0.0


@pytest.mark.parametrize("regression", ["n", "c", "ct"])
@pytest.mark.parametrize("n_series", [1, 2])
def test_mackinnon_pvalue_equals_statsmodels(regression: str, n_series: int) -> None:
    for stat in np.linspace(-25.0, 4.0, 291):
        want = mackinnonp(float(stat), regression=regression, N=n_series)
        got = mackinnon_pvalue(float(stat), regression, n_series)
        assert got == pytest.approx(want, rel=RTOL, abs=1e-300)


def test_default_maxlag_follows_schwert() -> None:
    assert default_maxlag(1000) == 22
    assert default_maxlag(100) == 12
    assert default_maxlag(20) == 8


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (np.ones(100), {}, "constant"),
        (np.arange(100.0), {"maxlag": 49}, "maxlag"),
        (np.arange(100.0), {"regression": "ctt"}, "regression"),
        (np.ones((10, 2)), {}, "one-dimensional"),
        (np.r_[np.arange(99.0), np.nan], {}, "NaN"),
    ],
)
def test_bad_input_is_refused(x: np.ndarray, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        adf(x, **kwargs)  # type: ignore[arg-type]
