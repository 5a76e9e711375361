"""ADF and Engle-Granger tests on 1,000 points: pairwatch vs statsmodels, in the same run.

- pairwatch ``adf(x)`` vs ``adfuller(x, regression="c", autolag="AIC")`` on a random walk
  (default maxlag, 22 candidate lags);
- pairwatch ``coint(y, x)`` vs ``statsmodels.tsa.stattools.coint(y, x)`` on a cointegrated
  pair of log prices.
Each call is timed alone; the figures are medians of --runs calls (statsmodels and
pairwatch interleaved, so both see the same machine load), and the results are checked equal.

    .venv/bin/python benchmarks/adf.py [--points 1000] [--runs 300]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np
from statsmodels.tsa.stattools import adfuller
from statsmodels.tsa.stattools import coint as sm_coint

from common import machine
from pairwatch.analytics.adf import adf, coint, default_maxlag


def timed(call: Callable[[], object]) -> Callable[[], float]:
    def measure() -> float:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    return measure


def pair(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    factor = np.cumsum(rng.normal(0, 1e-3, n))
    noise = rng.normal(0, 4e-4, n)
    spread = np.zeros(n)
    for i in range(1, n):
        spread[i] = 0.9 * spread[i - 1] + noise[i]
    return np.log(3_000) + 0.8 * factor + spread, np.log(60_000) + factor


def compare(name: str, ours: Callable[[], object], theirs: Callable[[], object], runs: int) -> None:
    ours(), theirs()  # warm up: imports, caches
    t_ours: list[float] = []
    t_theirs: list[float] = []
    for _ in range(runs):
        t_theirs.append(timed(theirs)())
        t_ours.append(timed(ours)())
    m_ours, m_theirs = float(np.median(t_ours)), float(np.median(t_theirs))
    print(
        f"{name:6} pairwatch {m_ours * 1e3:7.3f} ms   statsmodels {m_theirs * 1e3:7.3f} ms   "
        f"ratio {m_theirs / m_ours:5.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = 100.0 + np.cumsum(rng.normal(size=args.points))
    ly, lx = pair(args.points)

    got = adf(x)
    want = adfuller(x, regression="c", autolag="AIC", result_object=True)
    assert got.lag == want.lags, (got, want)
    assert abs(got.stat / want.statistic - 1) < 1e-8, (got, want)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coint's FutureWarnings are not what we time
        c_want = sm_coint(ly, lx)
    c_got = coint(ly, lx)
    assert abs(c_got.stat / c_want[0] - 1) < 1e-8, (c_got, c_want)

    print(f"machine: {machine()}")
    print(f"{args.points:,} points, median of {args.runs} calls each")
    maxlag = default_maxlag(args.points)
    print(f"adf: lag {got.lag} of maxlag {maxlag}, stat {got.stat:.6f}, p {got.pvalue:.4f}")
    compare(
        "adf", lambda: adf(x), lambda: adfuller(x, autolag="AIC", result_object=True), args.runs
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compare("coint", lambda: coint(ly, lx), lambda: sm_coint(ly, lx), args.runs)


if __name__ == "__main__":
    main()
