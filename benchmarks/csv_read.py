"""Dump reading speed alone: a 5M-row spot aggTrades dump, plain and zipped, read and validated.

.venv/bin/python benchmarks/csv_read.py [--rows 5000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median_of, pin_to_one_core
from pairwatch.daemon.sources.csvdump import read_dump
from replay_throughput import write_dump


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cpu = pin_to_one_core()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "BTCUSDT-aggTrades-2024-08-08.csv"
        write_dump(path, args.rows, 61_000.0, 7)
        zipped = path.with_suffix(".zip")
        with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(path, path.name)
        print(f"machine: {machine()}; pinned to cpu {cpu}")
        for dump in (path, zipped):

            def measure(dump: Path = dump) -> float:
                start = time.perf_counter()
                rows = sum(len(b) for b in read_dump(dump))
                assert rows == args.rows
                return rows / (time.perf_counter() - start)

            median, values = median_of(args.runs, measure)
            print(
                f"{dump.name}: median {median / 1e6:.2f}M rows/s "
                f"({', '.join(f'{v / 1e6:.2f}' for v in values)})"
            )


if __name__ == "__main__":
    main()
