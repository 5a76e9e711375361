"""Pair metrics from the engine on real Binance data, against statsmodels, pandas and numpy.

Two data sets: BTCUSDT and ETHUSDT spot trades (hftbacktest recordings, 2024-08-08/09,
about 11 minutes) resampled to 1 s bars by the pandas oracle, and Lean 1 m bars of BTC spot
(BTCBUSD) and the BTC perpetual for 2022-12-13. Bars go through ``PairEngine`` as they would
live; the oracles work on the aligned closes taken independently with pandas.

Tolerances. statsmodels' RollingOLS and pandas' rolling moments are the *less* accurate
side (they update raw moments of log prices ~11 whose window variance is ~1e-7 of their
square), so their error scales with κ = mean(x²) / var(x) of each window: a rounding of
x² (ε·x²) is a relative error of ε·κ in var(x). Comparisons with them use per-window
bounds of a few ε·κ (κ is 1e5…2e9 here; the margins are stated where used). The exact
two-pass numpy computation is the reference for our own accuracy: 1e-9 · max(1, |exact|).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from statsmodels.regression.linear_model import OLS
from statsmodels.regression.rolling import RollingOLS
from statsmodels.tools import add_constant
from statsmodels.tsa.stattools import adfuller
from statsmodels.tsa.stattools import coint as sm_coint

from pairwatch.analytics.engine import PairEngine, PairSpec, engle_granger
from pairwatch.analytics.kalman import KALMAN_METRICS, kalman_metrics
from pairwatch.analytics.rolling_ols import METRICS, rolling_pair_metrics
from pairwatch.events import Bar, PairSnapshot
from support.oracle import read_frames_with_json, resample_oracle

REAL = Path(__file__).resolve().parents[2] / "data" / "real"
EPS = float(np.finfo(np.float64).eps)
LEAN_DAY_MS = 1_670_889_600_000  # 2022-12-13 00:00 UTC
LEAN_COLUMNS = ["ms", "open", "high", "low", "close", "volume"]


@dataclass(frozen=True)
class Run:
    """One data set through the engine: aligned closes and the snapshots' metrics."""

    name: str
    ts: np.ndarray
    x: np.ndarray
    y: np.ndarray
    window: int
    metrics: dict[str, np.ndarray]
    snapshot_ts: np.ndarray
    counters: dict[str, int]
    adf_inputs: tuple[np.ndarray, np.ndarray]

    @property
    def lx(self) -> np.ndarray:
        return np.log(self.x)

    @property
    def ly(self) -> np.ndarray:
        return np.log(self.y)

    def full(self, name: str) -> np.ndarray:
        """Return a metric from the first full window on."""
        return self.metrics[name][self.window - 1 :]


def bars_of(symbol: str, timeframe: str, frame: pd.DataFrame) -> list[Bar]:
    """Return bars from a frame with ts, open, high, low, close, volume (and maybe more)."""
    rows = frame.to_dict("records")
    return [
        Bar(
            symbol,
            timeframe,
            int(r["ts"]),
            float(r["open"]),
            float(r["high"]),
            float(r["low"]),
            float(r["close"]),
            float(r["volume"]),
            float(r.get("quote_volume", 0.0)),
            float(r.get("vwap", math.nan)),
            int(r.get("trades", 1)),
            0.0,
            bool(r.get("filled", False)),
        )
        for r in rows
    ]


def run_engine(name: str, spec: PairSpec, y_frame: pd.DataFrame, x_frame: pd.DataFrame) -> Run:
    """Feed both legs' bars through the engine in time order; align the closes with pandas."""
    bars = bars_of(spec.y, spec.timeframe, y_frame) + bars_of(spec.x, spec.timeframe, x_frame)
    bars.sort(key=lambda b: b.ts)  # stable: each symbol keeps its order
    engine = PairEngine([spec])
    snapshots: list[PairSnapshot] = []
    for start in range(0, len(bars), 64):  # in batches, as the pipeline delivers them
        snapshots.extend(engine.on_bars(bars[start : start + 64])[0])
    snapshots.sort(key=lambda s: s.ts)
    aligned = pd.merge(x_frame, y_frame, on="ts", suffixes=("_x", "_y"))
    [(_, adf_x, adf_y)] = engine.adf_inputs()
    return Run(
        name=name,
        ts=aligned["ts"].to_numpy(),
        x=aligned["close_x"].to_numpy(),
        y=aligned["close_y"].to_numpy(),
        window=spec.windows[0],
        metrics={n: np.array([s.metrics[n] for s in snapshots]) for n in METRICS + KALMAN_METRICS},
        snapshot_ts=np.array([s.ts for s in snapshots]),
        counters=engine.counters(),
        adf_inputs=(adf_x, adf_y),
    )


@cache
def spot_run() -> Run:
    """ETHUSDT on BTCUSDT, 1 s bars of both spot day files, window 100, lookback 500."""
    frames = {}
    for symbol in ("btcusdt", "ethusdt"):
        trades = pd.concat(
            read_frames_with_json(REAL / f"hftbacktest_spot_{symbol}_{day}_trades.gz")
            for day in ("20240808", "20240809")
        ).sort_values("id")
        frames[symbol] = resample_oracle(trades, 1_000)
    spec = PairSpec("ETHUSDT", "BTCUSDT", "1s", 1_000, (100,), adf_lookback=500)
    return run_engine("spot", spec, frames["ethusdt"], frames["btcusdt"])


def lean_frame(name: str) -> pd.DataFrame:
    frame = pd.read_csv(REAL / name, names=LEAN_COLUMNS)
    frame["ts"] = LEAN_DAY_MS + frame["ms"]
    return frame


@cache
def lean_run() -> Run:
    """The BTC perpetual on BTC spot, 1 m bars of 2022-12-13, window 60, the whole day's ADF."""
    spot = lean_frame("lean_binance_spot_20221213_btcbusd_minute_trade.csv")
    perp = lean_frame("lean_binance_futures_20221213_btcusd_minute_trade_perp.csv")
    spec = PairSpec("BTCUSD_PERP", "BTCBUSD", "1m", 60_000, (60,), adf_lookback=1_439)
    return run_engine("lean", spec, perp, spot)


@pytest.fixture(params=["spot", "lean"])
def run(request: pytest.FixtureRequest) -> Run:
    return spot_run() if request.param == "spot" else lean_run()


def kappa(run: Run) -> np.ndarray:
    """Per full window: mean(x²) / var(x) of the log x leg, the conditioning of raw moments."""
    windows = sliding_window_view(run.lx, run.window)
    return (windows**2).mean(axis=1) / windows.var(axis=1, ddof=1)


def exact(run: Run) -> dict[str, np.ndarray]:
    """Two-pass, centred, per-window float64 computation of every rolling metric."""
    xw, yw = sliding_window_view(run.lx, run.window), sliding_window_view(run.ly, run.window)
    dx = xw - xw.mean(axis=1, keepdims=True)
    dy = yw - yw.mean(axis=1, keepdims=True)
    beta = (dx * dy).sum(axis=1) / (dx * dx).sum(axis=1)
    alpha = yw.mean(axis=1) - beta * xw.mean(axis=1)
    resid = yw - alpha[:, None] - beta[:, None] * xw
    std = resid.std(axis=1, ddof=1)
    rx = np.diff(xw, axis=1)  # one-bar log returns inside each window
    ry = np.diff(yw, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    return {
        "hedge_ratio": beta,
        "intercept": alpha,
        "spread": resid[:, -1],
        "spread_std": std,
        "zscore": (resid[:, -1] - resid.mean(axis=1)) / std,
        "correlation": (rx * ry).sum(axis=1)
        / np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1)),
        "price_correlation": (dx * dy).sum(axis=1)
        / np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1)),
        "residuals": resid,
    }


# --- the data and the engine ------------------------------------------------------------------


def test_spot_seconds_all_align() -> None:
    run = spot_run()
    # 23:54:16 … 00:05:06 exist on both legs (carried seconds included): 651 bars.
    assert len(run.ts) == 651
    assert np.array_equal(np.diff(run.ts), np.full(650, 1_000))
    np.testing.assert_array_equal(run.snapshot_ts, run.ts)
    assert run.counters == {"aligned": 651, "thin": 0, "unaligned": 0}


def test_lean_minutes_align_but_the_missing_perp_minute() -> None:
    run = lean_run()
    assert len(run.ts) == 1_439
    missing = sorted(set(LEAN_DAY_MS + np.arange(1_440) * 60_000) - set(run.ts.tolist()))
    assert missing == [LEAN_DAY_MS + (4 * 60 + 29) * 60_000]  # 04:29 UTC
    np.testing.assert_array_equal(run.snapshot_ts, run.ts)
    # The spot bar of 04:29 waited for a perp bar that never came: dropped and counted.
    assert run.counters == {"aligned": 1_439, "thin": 0, "unaligned": 1}


def test_engine_snapshots_equal_the_batch_kernels(run: Run) -> None:
    want = rolling_pair_metrics(run.x, run.y, run.window) | kalman_metrics(run.x, run.y)
    for name in want:
        np.testing.assert_array_equal(run.metrics[name], want[name], err_msg=name)


# --- against the exact computation ----------------------------------------------------------


def test_metrics_are_within_1e9_of_an_exact_two_pass_computation(run: Run) -> None:
    want = exact(run)
    for name in (
        "hedge_ratio", "intercept", "spread", "spread_std", "zscore", "price_correlation",
    ):  # fmt: skip
        error = np.abs(run.full(name) - want[name]) / np.maximum(1.0, np.abs(want[name]))
        assert error.max() < 1e-9, (name, error.max())
    # The W − 1 returns between the window's W bars: defined from the first full window.
    got = run.metrics["correlation"]
    assert np.isnan(got[: run.window - 1]).all()
    error = np.abs(got[run.window - 1 :] - want["correlation"])
    assert error.max() < 1e-9


# --- against statsmodels and pandas ---------------------------------------------------------


def test_hedge_ratio_and_intercept_match_statsmodels_rolling_ols(run: Run) -> None:
    fit = RollingOLS(run.ly, add_constant(run.lx), window=run.window).fit()
    sm_alpha, sm_beta = fit.params[run.window - 1 :, 0], fit.params[run.window - 1 :, 1]
    beta, alpha = run.full("hedge_ratio"), run.full("intercept")
    k = kappa(run)
    # RollingOLS adds and removes raw cross-products of log prices (≈ 11 and 9.8) without
    # re-centring, so each update costs ~ε·κ of β and the errors drift over the series:
    # measured up to 27·ε·κ (spot) and 16·ε·κ (lean); 256·ε·κ leaves a margin of ~10.
    tol = 256 * EPS * k
    assert (np.abs(beta - sm_beta) <= tol * np.abs(beta)).all()
    # α = ȳ − β·x̄ carries β's error times x̄ (plus x̄'s own rounding).
    x_mean = sliding_window_view(run.lx, run.window).mean(axis=1)
    assert (np.abs(alpha - sm_alpha) <= tol * np.abs(beta) * x_mean + 1e-12).all()
    # And the exact computation sides with us, by orders of magnitude.
    truth = exact(run)["hedge_ratio"]
    assert np.abs(beta - truth).max() * 1e3 < np.abs(sm_beta - truth).max()


def test_spread_zscore_and_correlations_match_pandas_rolling(run: Run) -> None:
    w = run.window
    lx, ly = pd.Series(run.lx), pd.Series(run.ly)
    cov = lx.rolling(w).cov(ly).to_numpy()[w - 1 :]
    var_x = lx.rolling(w).var().to_numpy()[w - 1 :]
    var_y = ly.rolling(w).var().to_numpy()[w - 1 :]
    beta = cov / var_x
    alpha = (
        ly.rolling(w).mean().to_numpy()[w - 1 :] - beta * lx.rolling(w).mean().to_numpy()[w - 1 :]
    )
    spread = run.ly[w - 1 :] - alpha - beta * run.lx[w - 1 :]
    # Residual variance with ddof 1: Σe²/(W − 1) = var(y) − β·cov(x, y).
    std = np.sqrt(var_y - beta * cov)
    # pandas keeps running moments (Welford-style), far better than RollingOLS but still
    # ~ε·κ relative in var(x) and cov: measured ≤ 0.06·ε·κ on β; bound ε·κ.
    k = kappa(run)
    assert (np.abs(run.full("hedge_ratio") - beta) <= EPS * k * np.abs(beta)).all()
    # The residual variance var(y) − β·cov cancels: its rounding is ~ε·mean(y²), so the
    # spread std, spread and z carry ε·κₑ with κₑ = mean(y²) / spread_std² (up to 1.3e10
    # for the perp/spot basis): measured ≤ 0.04·ε·κₑ; bound ε·κₑ. z is compared where the
    # spread std is not tiny, i.e. where pandas keeps four digits of it (ε·κₑ < 1e-4).
    ke = (sliding_window_view(run.ly, w) ** 2).mean(axis=1) / run.full("spread_std") ** 2
    tol = EPS * ke
    not_tiny = tol < 1e-4
    assert not_tiny.all()  # true of both data sets: no window's spread is rounding noise
    z = spread / std
    assert (np.abs(run.full("spread_std") - std) <= tol * std).all()
    assert (np.abs(run.full("spread") - spread) <= tol * std).all()
    assert (np.abs(run.full("zscore") - z) <= tol * (1 + np.abs(z)))[not_tiny].all()
    # Correlations: pandas' and ours agree to rounding (no cancellation in returns).
    returns = lx.diff().rolling(w - 1).corr(ly.diff()).to_numpy()
    np.testing.assert_allclose(
        run.metrics["correlation"], returns, rtol=1e-9, atol=1e-12, equal_nan=True
    )
    levels = lx.rolling(w).corr(ly).to_numpy()[w - 1 :]
    np.testing.assert_allclose(run.full("price_correlation"), levels, rtol=1e-9, atol=1e-12)


# --- Kalman and half-life -------------------------------------------------------------------


def plain_kalman(x: np.ndarray, y: np.ndarray, delta: float, obs_var: float) -> np.ndarray:
    """The textbook filter: state [β, α], random walk δ·I, observation variance R."""
    theta = np.zeros(2)
    cov = np.eye(2)
    rows = []
    for xt, yt in zip(x, y, strict=True):
        prior = cov + delta * np.eye(2)
        h = np.array([xt, 1.0])
        innovation = yt - h @ theta
        s = h @ prior @ h + obs_var
        gain = prior @ h / s
        theta = theta + gain * innovation
        cov = (np.eye(2) - np.outer(gain, h)) @ prior
        rows.append([theta[0], theta[1], innovation, innovation / math.sqrt(s)])
    return np.array(rows)


@pytest.mark.parametrize(("delta", "obs_var"), [(1e-5, 1e-3), (1e-7, 1e-6)])
def test_kalman_matches_a_plain_numpy_filter(run: Run, delta: float, obs_var: float) -> None:
    want = plain_kalman(run.lx, run.ly, delta, obs_var)
    got = kalman_metrics(run.x, run.y, delta=delta, obs_var=obs_var)
    if (delta, obs_var) == (1e-5, 1e-3):  # the engine's defaults: its snapshots too
        for name in ("kalman_beta", "kalman_alpha", "kalman_spread", "kalman_zscore"):
            np.testing.assert_array_equal(run.metrics[name], got[name], err_msg=name)
    # Joseph form (ours) and the plain update (I − KH)P round differently, most with a small
    # R where the plain one cancels: measured 3e-9 relative on α, 1.4e-12 absolute on the
    # innovation (a difference of nearly equal log prices) and 2.5e-9 on z.
    for k, name in enumerate(("kalman_beta", "kalman_alpha")):
        np.testing.assert_allclose(got[name], want[:, k], rtol=1e-7, err_msg=name)
    np.testing.assert_allclose(got["kalman_spread"], want[:, 2], rtol=1e-6, atol=1e-11)
    np.testing.assert_allclose(got["kalman_zscore"], want[:, 3], rtol=1e-6, atol=1e-8)


def test_half_life_matches_an_ar1_fit_of_the_window_residuals(run: Run) -> None:
    residuals = exact(run)["residuals"]
    got = run.full("half_life")
    sampled = np.unique(np.linspace(0, len(got) - 1, 40).astype(int))
    finite = 0
    for i in sampled:
        e = residuals[i]
        design = np.column_stack([np.ones(run.window - 1), e[:-1]])
        phi = np.linalg.lstsq(design, e[1:], rcond=None)[0][1]
        if not 0 < phi < 1:
            assert math.isnan(got[i]), i
            continue
        finite += 1
        # −ln 2 / ln φ magnifies φ's error by 1 / (φ·|ln φ|) (~3,000 at a 2,000-bar
        # half-life); φ itself agrees to ~1e-13.
        assert got[i] == pytest.approx(-math.log(2) / math.log(phi), rel=1e-8), i
    assert finite > 20


# --- Engle–Granger -------------------------------------------------------------------------


def statsmodels_engle_granger(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int, float]:
    resid = OLS(y, add_constant(x)).fit().resid
    result = adfuller(resid, regression="c", autolag="AIC", result_object=True)
    coint_pvalue = sm_coint(y, x, trend="c", autolag="aic")[1]
    return result.statistic, result.pvalue, result.lags, coint_pvalue


def test_engle_granger_on_the_lookback_matches_statsmodels(run: Run) -> None:
    x, y = run.adf_inputs
    n = len(x)
    assert n == (500 if run.name == "spot" else 1_439)
    np.testing.assert_array_equal(x, [math.log(v) for v in run.x[-n:]])
    np.testing.assert_array_equal(y, [math.log(v) for v in run.y[-n:]])
    got = engle_granger(x, y)
    stat, pvalue, lag, coint_pvalue = statsmodels_engle_granger(
        np.log(run.x[-n:]), np.log(run.y[-n:])
    )
    assert got["adf_stat"] == pytest.approx(stat, rel=1e-8)
    assert got["adf_lag"] == lag
    # p-values follow the statistics (1e-8) through MacKinnon's surface, steep in the tail.
    assert got["adf_pvalue"] == pytest.approx(pvalue, rel=1e-6)
    assert got["coint_pvalue"] == pytest.approx(coint_pvalue, rel=1e-6)


def test_the_perp_spot_basis_is_cointegrated_with_a_hedge_ratio_near_one() -> None:
    run = lean_run()
    x, y = run.adf_inputs  # the whole day
    got = engle_granger(x, y)
    stat, pvalue, _, coint_pvalue = statsmodels_engle_granger(x, y)
    # statsmodels finds the day's basis stationary: ADF p ≈ 3e-4, Engle–Granger p ≈ 2e-3.
    assert pvalue < 1e-3
    assert coint_pvalue < 1e-2
    assert got["adf_pvalue"] == pytest.approx(pvalue, rel=1e-6)
    assert got["coint_pvalue"] == pytest.approx(coint_pvalue, rel=1e-6)
    assert got["adf_stat"] == pytest.approx(stat, rel=1e-8)
    # The hour-long hedge ratio of a perpetual on its spot: median ≈ 0.998 per RollingOLS.
    fit = RollingOLS(run.ly, add_constant(run.lx), window=60).fit()
    sm_median = float(np.median(fit.params[59:, 1]))
    ours = float(np.median(run.full("hedge_ratio")))
    assert ours == pytest.approx(sm_median, rel=1e-6)
    assert abs(ours - 1.0) < 0.01
