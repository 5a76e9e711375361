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
from pairwatch.analytics.engine import PairEngine, PairSpec
from pairwatch.analytics.pair_bank import PairBank
from pairwatch.events import Bar

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


def measure_engine(pairs: int, calls: int) -> float:
    """Return µs per pair-update through ``PairEngine.on_bars``: the daemon's whole stage.

    Everything the live path does per closed bar: alignment of both legs, the banked
    kernels, the window metric, a ``PairSnapshot`` per pair and the symbol metrics of
    every leg (pairs Yi/X share the x leg, so P pairs have P + 1 symbols).
    """
    rng = np.random.default_rng(pairs)
    engine = PairEngine([PairSpec(f"Y{i}", "XX", "1s", 1000, (WINDOW,)) for i in range(pairs)])
    n = WINDOW + calls
    x = 60_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    y = 3_000 * np.exp(0.8 * np.log(x / 60_000)[:, None] + rng.normal(0, 1e-3, (n, pairs)))

    def bars(t: int) -> list[Bar]:
        out = [Bar("XX", "1s", t * 1000, x[t], x[t], x[t], x[t], 1.0, x[t], x[t], 3, 0.5)]
        for i in range(pairs):
            p = float(y[t, i])
            out.append(Bar(f"Y{i}", "1s", t * 1000, p, p, p, p, 2.0, 2 * p, p, 4, 1.0))
        return out

    for t in range(WINDOW):
        engine.on_bars(bars(t))
    times = []
    for t in range(WINDOW, n):
        batch = bars(t)
        start = time.perf_counter_ns()
        engine.on_bars(batch)
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
    print("the whole stage (PairEngine.on_bars: alignment, kernels, snapshots, symbol metrics):")
    measure_engine(1, 10)
    for pairs in (1, 100, 1000):
        cost = measure_engine(pairs, max(args.calls // 10, 50))
        share = cost * pairs / 1e6 * 100
        print(
            f"{pairs:5d} pairs: {cost:7.3f} µs per pair-update ({share:.3f}% of a core on 1 s bars)"
        )


if __name__ == "__main__":
    main()
