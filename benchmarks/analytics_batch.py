"""Batch pair analytics on 1M aligned bars, window 100: pairwatch vs pandas and statsmodels.

The same synthetic BTC/ETH-scale closes for all, in the same run; each side starts from the
raw closes (and takes its own logs) and computes:
- pairwatch ``rolling_pair_metrics(half_life=False)``: β, α, spread, spread std, z-score,
  return correlation and price correlation (one numba pass; the half-life, which neither
  other has, is off here and timed on its own line for reference);
- pandas rolling: β = cov/var, α, spread, spread std, z-score, return correlation;
- statsmodels ``RollingOLS``: β and α only.
pairwatch and pandas take turns, --runs rounds of each, and the speed-up is the median of
the per-round ratios (on a shared, noisy machine a slow spell then hits both sides of a
round, not one side's whole series); RollingOLS runs once. Accuracy: each one's largest
error in β, z-score and return correlation against exact two-pass per-window arithmetic.

    .venv/bin/python benchmarks/analytics_batch.py [--bars 1000000] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from statsmodels.regression.rolling import RollingOLS

from common import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pairwatch.analytics.rolling_ols import rolling_pair_metrics
from unit.analytics.test_rolling_ols import btc_eth, exact

W = 100
OURS = "beta, alpha, spread, spread std, z, return corr, price corr"
PANDAS = "beta, alpha, spread, spread std, z, return corr"


def with_pandas(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    lx, ly = pd.Series(np.log(x)), pd.Series(np.log(y))
    rx, ry = lx.rolling(W), ly.rolling(W)
    cov = rx.cov(ly)
    var_x, var_y = rx.var(), ry.var()
    beta = cov / var_x
    alpha = ry.mean() - beta * rx.mean()
    spread = ly - alpha - beta * lx
    std = np.sqrt(var_y - beta * cov)
    corr = lx.diff().rolling(W - 1).corr(ly.diff())
    return {
        "hedge_ratio": beta.to_numpy(),
        "intercept": alpha.to_numpy(),
        "spread": spread.to_numpy(),
        "spread_std": std.to_numpy(),
        "zscore": (spread / std).to_numpy(),
        "correlation": corr.to_numpy(),
    }


def exact_return_correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two-pass Pearson correlation of each window's W − 1 log returns (from bar W − 1 on)."""
    rx, ry = (
        sliding_window_view(np.diff(np.log(x)), W - 1),
        sliding_window_view(np.diff(np.log(y)), W - 1),
    )
    parts = []
    for start in range(0, len(rx), 50_000):
        a, b = rx[start : start + 50_000], ry[start : start + 50_000]
        da, db = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
        parts.append((da * db).sum(1) / np.sqrt((da * da).sum(1) * (db * db).sum(1)))
    return np.concatenate(parts)


def timed(run: Callable[[], dict[str, np.ndarray]]) -> tuple[float, dict[str, np.ndarray]]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    x, y = btc_eth(args.bars)
    rolling_pair_metrics(x[:1000], y[:1000], W)  # compile / load the cache

    def ours() -> dict[str, np.ndarray]:
        return rolling_pair_metrics(x, y, W, half_life=False)

    def ours_all() -> dict[str, np.ndarray]:
        return rolling_pair_metrics(x, y, W)

    def pandas() -> dict[str, np.ndarray]:
        return with_pandas(x, y)

    t_ours, t_pandas, t_all = [], [], []
    for _ in range(args.runs):  # take turns, so a slow spell hits both sides of a round
        t, got = timed(ours)
        t_ours.append(t)
        t, theirs = timed(pandas)
        t_pandas.append(t)
        t, _ = timed(ours_all)
        t_all.append(t)
    ratios = [p / o for p, o in zip(t_pandas, t_ours, strict=True)]
    ratios_all = [p / o for p, o in zip(t_pandas, t_all, strict=True)]
    start = time.perf_counter()
    lx, ly = np.log(x), np.log(y)
    fit = RollingOLS(ly, np.column_stack([np.ones_like(lx), lx]), window=W).fit(params_only=True)
    t_sm = time.perf_counter() - start
    truth = exact(lx, ly, W, True) | {"correlation": exact_return_correlation(x, y)}

    def error(values: np.ndarray, name: str) -> float:
        want = truth[name]
        return float(np.nanmax(np.abs(values[W - 1 :] - want) / np.maximum(1, np.abs(want))))

    def errors(result: dict[str, np.ndarray]) -> str:
        names = {"hedge_ratio": "beta", "zscore": "z", "correlation": "corr"}
        return "  ".join(f"{short} {error(result[n], n):.1e}" for n, short in names.items())

    def listing(values: list[float]) -> str:
        return " ".join(f"{v:.2f}" for v in values)

    t_o, t_p, t_a = (statistics.median(t) for t in (t_ours, t_pandas, t_all))
    print(f"machine: {machine()}")
    print(f"{args.bars:,} bars, window {W}, {args.runs} alternating rounds (median seconds)")
    print(f"pairwatch   {t_o:7.3f} s  computes {OURS}")
    print(f"pandas      {t_p:7.3f} s  computes {PANDAS}")
    print(f"RollingOLS  {t_sm:7.3f} s  computes beta, alpha (run once)")
    print(f"pairwatch + half-life {t_a:.3f} s  computes all 8 metrics")
    print(
        f"pandas / pairwatch: {statistics.median(ratios):.2f}x median of rounds [{listing(ratios)}]"
    )
    print(f"RollingOLS / pairwatch: {t_sm / t_o:.0f}x")
    print(
        f"pandas / (pairwatch + half-life): {statistics.median(ratios_all):.2f}x "
        f"[{listing(ratios_all)}]"
    )
    print("largest error vs exact two-pass arithmetic (relative, or absolute below 1):")
    print(f"  pairwatch   {errors(got)}")
    print(f"  pandas      {errors(theirs)}")
    print(f"  RollingOLS  beta {error(fit.params[:, 1], 'hedge_ratio'):.1e}")


if __name__ == "__main__":
    main()
