"""Live analytics cost: µs per pair-update (all pair metrics but ADF) for 1, 100, 1,000 pairs.

A ``PairBank`` of P pairs (window 100: rolling β/α/spread/std/z/correlations/half-life
plus the Kalman filter) receives one closed bar for every pair per call, as the daemon
does when a timeframe's bars close. Reports the median over many calls of the call's time
divided by P.

    .venv/bin/python benchmarks/analytics_live.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from common import machine
from pairwatch.analytics.pair_bank import PairBank

WINDOW = 100


def measure(pairs: int, calls: int) -> float:
    rng = np.random.default_rng(pairs)
    bank = PairBank(pairs, WINDOW)
    rows = np.arange(pairs, dtype=np.int64)
    x = 60_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, (WINDOW + calls, pairs)), axis=0))
    y = 3_000 * np.exp(0.8 * np.log(x / 60_000) + rng.normal(0, 1e-3, (WINDOW + calls, pairs)))
    for t in range(WINDOW):  # fill the windows
        bank.update(rows, x[t], y[t])
    times = []
    for t in range(WINDOW, WINDOW + calls):
        xt, yt = x[t], y[t]
        start = time.perf_counter_ns()
        bank.update(rows, xt, yt)
        times.append((time.perf_counter_ns() - start) / pairs / 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    measure(1, 10)  # compile or load the cache
    print(f"machine: {machine()}")
    for pairs in (1, 100, 1000):
        cost = measure(pairs, args.calls)
        share = cost * pairs / 1e6 * 100  # % of a core for one 1 s bar of every pair
        print(
            f"{pairs:5d} pairs: {cost:7.3f} µs per pair-update ({share:.3f}% of a core on 1 s bars)"
        )


if __name__ == "__main__":
    main()
