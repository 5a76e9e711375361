"""Shared helpers of the benchmark scripts: machine description and medians."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import signal
import statistics
from collections.abc import Callable

PACKAGES = ("numpy", "numba", "pyarrow", "msgspec", "websockets", "pandas")


def machine() -> str:
    """Describe the machine and the versions that matter, in one line."""
    cpu = "unknown cpu"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, " + ", ".join(
        versions
    )


def median_of(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    """Call ``measure`` ``runs`` times; return the median and all values."""
    values = [measure() for _ in range(runs)]
    return statistics.median(values), values


def pin_to_one_core() -> int:
    """Restrict this process (and its threads) to one CPU; return which."""
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


async def loop_lag(samples: list[float], done: asyncio.Event) -> None:
    """Sleep 1 ms at a time and record how late (ms) each wake-up is: the loop's lag."""
    loop = asyncio.get_running_loop()
    while not done.is_set():
        start = loop.time()
        await asyncio.sleep(0.001)
        samples.append((loop.time() - start - 0.001) * 1000)


FILLS_MEAN = 1.4
"""Trades per taker order in the simulator's default model."""


async def serve_simulator(symbols: list[str], trades: float) -> None:
    """Child process: the simulator in real time at ``trades`` per second over ``symbols``;
    prints ``READY <url>``, stops on SIGTERM."""
    from pairwatch.daemon.sources.simulator import Simulator, SimulatorOptions

    options = SimulatorOptions(
        symbols=tuple(symbols), rate=trades / FILLS_MEAN, speed=1.0, record_ids=False,
        retention=10_000,
    )  # fmt: skip
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Simulator(options) as sim:
        print(f"READY {sim.url}", flush=True)
        await stop.wait()
