"""Batch pair analytics on 1M aligned bars, window 100: pairwatch vs statsmodels and pandas.

Same synthetic BTC/ETH-scale log prices for all three, in the same run:
- pairwatch ``rolling_pair_metrics``: β, α, spread, spread std, z-score, return and price
  correlations (one numba pass; the half-life, which neither of the others has, is off);
- statsmodels ``RollingOLS``: β and α only;
- pandas rolling: β = cov/var, α, spread, spread std, z-score, return correlation.
Reports seconds (median of --runs; RollingOLS once) and each one's largest error in β and z
against an exact two-pass per-window computation.

    .venv/bin/python benchmarks/analytics_batch.py [--bars 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.regression.rolling import RollingOLS

from common import machine, median_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pairwatch.analytics.rolling_ols import rolling_pair_metrics
from unit.analytics.test_rolling_ols import btc_eth, exact

W = 100


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
    return {"hedge_ratio": beta.to_numpy(), "zscore": (spread / std).to_numpy(), "corr": corr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    x, y = btc_eth(args.bars)
    rolling_pair_metrics(x[:1000], y[:1000], W)  # compile / load the cache

    ours: dict[str, np.ndarray] = {}
    theirs: dict[str, np.ndarray] = {}

    def run_ours() -> float:
        nonlocal ours
        start = time.perf_counter()
        ours = rolling_pair_metrics(x, y, W, half_life=False)
        return time.perf_counter() - start

    def run_pandas() -> float:
        nonlocal theirs
        start = time.perf_counter()
        theirs = with_pandas(x, y)
        return time.perf_counter() - start

    t_ours, _ = median_of(args.runs, run_ours)
    t_pandas, _ = median_of(args.runs, run_pandas)
    start = time.perf_counter()
    lx, ly = np.log(x), np.log(y)
    fit = RollingOLS(ly, np.column_stack([np.ones_like(lx), lx]), window=W).fit(params_only=True)
    t_sm = time.perf_counter() - start
    truth = exact(lx, ly, W, True)

    def error(values: np.ndarray, name: str) -> float:
        want = truth[name]
        return float(np.nanmax(np.abs(values[W - 1 :] - want) / np.maximum(1, np.abs(want))))

    print(f"machine: {machine()}")
    print(f"{args.bars:,} bars, window {W}")
    ours_beta, ours_z = error(ours["hedge_ratio"], "hedge_ratio"), error(ours["zscore"], "zscore")
    pd_beta, pd_z = error(theirs["hedge_ratio"], "hedge_ratio"), error(theirs["zscore"], "zscore")
    print(
        f"pairwatch  {t_ours:7.3f} s  7 metrics      max error beta {ours_beta:.1e}  z {ours_z:.1e}"
    )
    print(
        f"pandas     {t_pandas:7.3f} s  ({t_pandas / t_ours:.1f}x slower)  "
        f"max error beta {pd_beta:.1e}  z {pd_z:.1e}"
    )
    print(
        f"RollingOLS {t_sm:7.3f} s  ({t_sm / t_ours:.0f}x slower)  beta only      max error beta "
        f"{error(fit.params[:, 1], 'hedge_ratio'):.1e}"
    )


if __name__ == "__main__":
    main()
