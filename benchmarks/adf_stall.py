"""The longest event-loop stall while the ADF / cointegration tests of 100 pairs refresh.

The daemon's analytics stage (``AnalyticsStage``) is built with 100 pairs of synthetic
cointegrated log prices and a full lookback (default 500 bars). On a running loop, a
probe wakes every millisecond and records how late it woke; the longest lateness is the
longest stall. The same probe runs first with nothing else going on (the baseline), then
while ``refresh_adf`` runs the 100 tests in its worker thread, several times.

    .venv/bin/python benchmarks/adf_stall.py [--pairs 100] [--lookback 500] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from common import machine
from pairwatch.analytics import engine as pair_engine
from pairwatch.analytics.engine import PairSpec
from pairwatch.daemon.analytics import AnalyticsStage
from pairwatch.events import Bar, PairSnapshot, SymbolSnapshot

PROBE_S = 0.001


class _Discard:
    def put_pair_snapshots(self, snapshots: Sequence[PairSnapshot]) -> None:
        pass

    def put_symbol_snapshots(self, snapshots: Sequence[SymbolSnapshot]) -> None:
        pass


def build(pairs: int, lookback: int) -> AnalyticsStage:
    rng = np.random.default_rng(7)
    specs = [
        PairSpec(f"Y{i}USDT", "XUSDT", "1s", 1000, (100,), adf_lookback=lookback)
        for i in range(pairs)
    ]
    stage = AnalyticsStage(specs, _Discard())
    n = lookback + 1
    x = 60_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    bars: list[Bar] = []
    closes = {"XUSDT": x}
    for i in range(pairs):
        closes[f"Y{i}USDT"] = 3_000 * (x / 60_000) ** 0.9 * np.exp(rng.normal(0, 4e-4, n))
    for t in range(n):
        for symbol, c in closes.items():
            p = float(c[t])
            bars.append(Bar(symbol, "1s", t * 1000, p, p, p, p, 1.0, p, p, 1, 0.0))
    stage.warm_up(bars)
    return stage


async def probe(stop: asyncio.Event) -> float:
    """Wake every millisecond until ``stop``; return the longest lateness in seconds."""
    worst = 0.0
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(PROBE_S)
        worst = max(worst, time.perf_counter() - before - PROBE_S)
    return worst


async def measure(stage: AnalyticsStage, pairs: int, refresh: bool) -> tuple[float, float]:
    """Return (longest stall, refresh wall time) of one refresh, or of 0.3 s idle."""
    stop = asyncio.Event()
    watcher = asyncio.create_task(probe(stop))
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    if refresh:
        with ThreadPoolExecutor(1) as worker:
            ran = await stage.refresh_adf(range(pairs), lambda: 0, worker)
        assert ran == pairs, ran
    else:
        await asyncio.sleep(0.3)
    took = time.perf_counter() - started
    await asyncio.sleep(0.02)
    stop.set()
    return await watcher, took


async def main_async(args: argparse.Namespace) -> None:
    stage = build(args.pairs, args.lookback)
    pair_engine.warm_up()
    await measure(stage, args.pairs, refresh=True)  # first use: imports, caches
    idle = [(await measure(stage, args.pairs, refresh=False))[0] for _ in range(args.runs)]
    busy = [await measure(stage, args.pairs, refresh=True) for _ in range(args.runs)]
    stalls = [s for s, _ in busy]
    print(machine())
    print(f"{args.pairs} pairs, lookback {args.lookback}, switch interval "
          f"{sys.getswitchinterval() * 1000:.1f} ms, {args.runs} runs")  # fmt: skip
    print(f"idle loop:   longest stall per run (ms): {[round(s * 1e3, 2) for s in idle]}")
    print(f"ADF refresh: longest stall per run (ms): {[round(s * 1e3, 2) for s in stalls]}")
    print(f"ADF refresh: wall time per run (ms):     {[round(t * 1e3, 1) for _, t in busy]}")
    print(
        f"median longest stall: idle {statistics.median(idle) * 1e3:.2f} ms, "
        f"refreshing {statistics.median(stalls) * 1e3:.2f} ms (max {max(stalls) * 1e3:.2f} ms); "
        f"refresh of {args.pairs} pairs {statistics.median(t for _, t in busy) * 1e3:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--lookback", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
