"""Replay throughput: Binance aggTrades CSV → validated trades → bars (3 timeframes) → SQLite.

Generates two realistic spot aggTrades dumps (BTCUSDT, ETHUSDT; one day each, no header,
the layout of data.binance.vision) under benchmarks/out/, then replays them into a fresh
SQLite file, pinned to one core, end to end (until the writer has committed every bar).
Reports the median of several runs in trades/s. Also measures peak RSS of a replay in a
subprocess for two input lengths, to show memory stays flat.

    .venv/bin/python benchmarks/replay_throughput.py [--rows 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median_of, pin_to_one_core

OUT = Path(__file__).resolve().parent / "out"
DAY_MS = 86_400_000
START_MS = 1_723_075_200_000  # 2024-08-08T00:00:00Z


def dump_path(symbol: str, rows: int) -> Path:
    """Return where the generated dump of ``rows`` rows of ``symbol`` lives."""
    return OUT / str(rows) / f"{symbol}-aggTrades-2024-08-08.csv"


SYMBOLS = (("BTCUSDT", 61_000.0, 1), ("ETHUSDT", 2_600.0, 2))


def make_dumps(rows: int) -> list[Path]:
    """Generate (once) the dumps of every symbol with ``rows`` rows each."""
    paths = []
    for symbol, price0, seed in SYMBOLS:
        path = dump_path(symbol, rows)
        make_dump(path, rows, price0, seed)
        paths.append(path)
    return paths


def make_dump(path: Path, rows: int, price0: float, seed: int) -> None:
    """Generate ``path`` once (a ``.done`` marker says it is complete)."""
    done = path.with_suffix(".done")
    if not done.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_dump(path, rows, price0, seed)
        done.touch()


def write_dump(path: Path, rows: int, price0: float, seed: int) -> None:
    """Write a spot aggTrades dump: agg_id, price, qty, first_id, last_id, time, maker, best."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    price = np.round(price0 * np.exp(np.cumsum(rng.normal(0, 2e-5, rows))), 2)
    first = 3_000_000_000 + np.cumsum(rng.integers(1, 4, rows))
    table = pa.table(
        {
            "a": 1_000_000_000 + np.arange(rows, dtype=np.int64),
            "p": pa.array(np.char.mod("%.8f", price)),
            "q": pa.array(np.char.mod("%.8f", np.round(rng.exponential(0.05, rows) + 1e-5, 5))),
            "f": first,
            "l": first + rng.integers(0, 3, rows),
            "t": START_MS + np.sort(rng.integers(0, DAY_MS, rows)),
            "m": pa.array(np.where(rng.random(rows) < 0.5, "True", "False")),
            "b": pa.array(np.full(rows, "True")),
        }
    )
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    pacsv.write_csv(table, path, write_options=options)


def replay_once(files: list[Path], db: Path) -> dict[str, float]:
    from pairwatch.daemon.replay_cli import run_replay

    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    started = time.perf_counter()
    stats = run_replay(files, db=db, timeframes=["1s", "1m", "5m"])
    elapsed = time.perf_counter() - started
    return {"trades": stats.trades_read, "bars": stats.bars, "seconds": elapsed}


def child(rows: int) -> None:
    """Replay ``rows`` trades per symbol and print peak RSS (run in a subprocess)."""
    result = replay_once(make_dumps(rows), OUT / f"rss-{rows}.sqlite3")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per symbol")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    if args.child:
        child(args.child)
        return
    files = make_dumps(args.rows)
    cpu = pin_to_one_core()
    from pairwatch.analytics.resample_kernel import warm_up

    warm_up()
    results: list[dict[str, float]] = []

    def measure() -> float:
        result = replay_once(files, OUT / "replay.sqlite3")
        results.append(result)
        return result["trades"] / result["seconds"]

    median, values = median_of(args.runs, measure)
    print(f"machine: {machine()}; pinned to cpu {cpu}")
    print(
        f"replay: {results[0]['trades']:,.0f} trades -> {results[0]['bars']:,.0f} bars; "
        f"median {median:,.0f} trades/s over {args.runs} runs "
        f"({', '.join(f'{v:,.0f}' for v in values)})"
    )
    for rows in (args.rows // 4, args.rows):
        make_dumps(rows)
        line = (
            subprocess.run(
                [sys.executable, __file__, "--child", str(rows)],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        result = json.loads(line)
        print(f"peak RSS replaying {2 * rows:,} trades: {result['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
