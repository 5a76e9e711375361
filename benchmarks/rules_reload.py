"""Reloading a 1,000-rule file in the daemon: the work off the loop, the swap on it, save → applied.

- Reload: ``AlertStage.reload`` of the 1,000 rules of ``benchmarks/rules.py`` (100 pairs ×
  10 rules) with every alert holding state: load and index in a worker thread, then the
  swap on the event loop (state carried over for every alert). Reported: the whole reload
  and the part that runs on the loop (the longest the loop is blocked by it).
- Save → applied: ``AlertRuntime`` with the default ``alerts.watch_interval`` (1 s) and a
  real store; the time from writing the file to the new rules running, several saves.

    .venv/bin/python benchmarks/rules_reload.py [--reloads 9] [--saves 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from common import machine
from pairwatch.config.rules_load import load_rules
from pairwatch.config.settings import Settings
from pairwatch.daemon.alert_service import AlertRuntime
from pairwatch.daemon.alerts import AlertStage
from pairwatch.daemon.health import Health
from pairwatch.daemon.writer import Writer
from pairwatch.events import PairSnapshot
from rules import PAIRS, rules_yaml


class NullWriter:
    def put_alerts(self, *args: object, **kwargs: object) -> None:
        pass


def settings_for(tmp: Path, rules_file: Path | None = None) -> Settings:
    symbols = ["XUSDT", *(f"Y{i}USDT" for i in range(PAIRS))]
    pairs = [f"Y{i}USDT/XUSDT" for i in range(PAIRS)]
    return Settings(
        data_dir=tmp,
        feed={"symbols": symbols},
        bars={"timeframes": ["1m"]},
        pairs=pairs,
        alerts={"rules_file": rules_file},
    )


async def reloads(path: Path, settings: Settings, n: int) -> tuple[list[float], list[float]]:
    stage = AlertStage(
        NullWriter(),
        Health(),
        pairs=[p.name for p in settings.pairs],
        symbols=settings.feed.symbols,
        clock=lambda: 0,
    )
    stage.install(load_rules(path, settings))
    snapshots = [
        PairSnapshot(f"Y{i}USDT", "XUSDT", "1m", 100, 0, {"zscore": 2.5, "correlation": 0.8})
        for i in range(PAIRS)
    ]
    stage.on_snapshots(snapshots)  # every alert has state to carry
    totals, swaps = [], []
    original = stage.replace

    def timed_replace(*args: object, **kwargs: object) -> None:
        start = time.perf_counter()
        original(*args, **kwargs)  # type: ignore[arg-type]
        swaps.append(time.perf_counter() - start)

    stage.replace = timed_replace  # type: ignore[method-assign]
    for _ in range(n):
        start = time.perf_counter()
        assert await stage.reload(lambda: load_rules(path, settings), "benchmark")
        totals.append(time.perf_counter() - start)
    return totals, swaps


async def saves(tmp: Path, path: Path, n: int) -> list[float]:
    settings = settings_for(tmp, path)
    writer = Writer(settings.db_path)
    writer.start()
    runtime = AlertRuntime(settings, writer, Health(), clock=lambda: time.time_ns() // 1_000_000)
    from pairwatch.daemon.store import open_store

    conn = open_store(settings.db_path)
    runtime.load(conn)
    conn.close()
    task = asyncio.create_task(runtime.run())
    text = path.read_text()  # noqa: ASYNC240 -- a small local file, as an editor would
    latencies = []
    try:
        for i in range(n):
            await asyncio.sleep(0.37 * (i % 3))  # saves at different phases of the poll
            runtime.reloaded.clear()
            start = time.perf_counter()
            path.write_text(text + f"# save {i}\n")  # noqa: ASYNC240
            await asyncio.wait_for(runtime.reloaded.wait(), 10)
            latencies.append(time.perf_counter() - start)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        writer.close(10)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reloads", type=int, default=9)
    parser.add_argument("--saves", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "rules.yaml"
        pairs = [f"Y{i}USDT/XUSDT" for i in range(PAIRS)]
        path.write_text(rules_yaml(pairs))
        totals, swaps = asyncio.run(reloads(path, settings_for(tmp), args.reloads))
        latencies = asyncio.run(saves(tmp, path, args.saves))
    print(machine())
    print(
        f"reload of 1,000 rules: median {statistics.median(totals) * 1e3:.1f} ms "
        f"(range {min(totals) * 1e3:.1f}-{max(totals) * 1e3:.1f}); on the loop (swap, state "
        f"carried): median {statistics.median(swaps) * 1e3:.2f} ms, max {max(swaps) * 1e3:.2f} ms"
    )
    print(
        f"save -> new rules running (watch_interval 1 s): median "
        f"{statistics.median(latencies):.2f} s, max {max(latencies):.2f} s (target <= 2 s)"
    )


if __name__ == "__main__":
    main()
