"""Export speed: one pair series of 1M analytics rows (with both legs' bars) to Parquet and CSV.

Builds a pairwatch database with ``--rows`` 1-second snapshots of ETHUSDT/BTCUSDT, window
100 (every metric column, a warm-up of NULLs, ADF values refreshed every 300 bars) and both
legs' bars at the same times, written directly with ``executemany``. Then, ``--runs`` times
each, on a fresh read-only connection: the whole series through ``export_rows`` alone (the
read: SQLite, the row tuples and their conversion to Arrow), and ``write_file`` to Parquet
and to CSV (read + encode + write, through ``.part``). Reports medians and every run.

    .venv/bin/python benchmarks/export.py [--rows 1000000] [--runs 5] [--db PATH]

``--db`` keeps the database (and reuses it when it already holds the rows).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median_of
from pairwatch.daemon.metrics_schema import metric_columns, upsert_sql
from pairwatch.daemon.store import open_store
from pairwatch.web import export

Y, X, TF, WINDOW = "ETHUSDT", "BTCUSDT", "1s", 100
START = 1_722_470_400_000  # 2024-08-01T00:00:00Z
BAR_SQL = (
    "INSERT INTO bars (symbol, timeframe, ts, open, high, low, close, volume, quote_volume, "
    "vwap, trades, taker_buy_volume, filled, closed, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 1, 0)"
)


def bar_rows(symbol: str, price: float, rows: int, rng: np.random.Generator) -> Iterator[tuple]:
    close = price * np.exp(np.cumsum(rng.normal(0, 2e-4, rows)))
    spread = np.abs(rng.normal(0, 1e-4, rows)) * close
    volume = rng.exponential(3.0, rows)
    trades = rng.integers(1, 400, rows)
    ts = START + 1000 * np.arange(rows, dtype=np.int64)
    for i in range(rows):
        c, v = float(close[i]), float(volume[i])
        yield (symbol, TF, int(ts[i]), c, c + spread[i], c - spread[i], c, v, v * c, c,
               int(trades[i]), v / 2)  # fmt: skip


def analytics_rows(rows: int, metrics: tuple[str, ...], rng: np.random.Generator) -> Iterator:
    values = rng.normal(size=(rows, len(metrics)))
    values[:WINDOW] = np.nan  # warm-up
    adf = [i for i, m in enumerate(metrics) if m.startswith(("adf_", "coint_"))]
    refresh = np.arange(rows) // 300 * 300
    values[:, adf] = values[refresh][:, adf]  # constant between ADF refreshes
    values[: 5 * 300, adf] = np.nan
    ts = START + 1000 * np.arange(rows, dtype=np.int64)
    for i, row in enumerate(values.tolist()):
        adf_at = None if i < 5 * 300 else int(ts[refresh[i]])
        metric = [None if v != v else v for v in row]
        yield (Y, X, TF, WINDOW, int(ts[i]), *metric, adf_at, 0, 0)


def build(db: Path, rows: int) -> None:
    with closing(open_store(db)):
        pass  # creates the schema
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        if conn.execute("SELECT count(*) FROM analytics").fetchone()[0] == rows:
            return
        conn.execute("PRAGMA synchronous = OFF")
        rng = np.random.default_rng(6)
        metrics = metric_columns()["analytics"]
        conn.execute("BEGIN")
        conn.execute("DELETE FROM bars")
        conn.execute("DELETE FROM analytics")
        conn.executemany(BAR_SQL, bar_rows(Y, 2_600.0, rows, rng))
        conn.executemany(BAR_SQL, bar_rows(X, 61_000.0, rows, rng))
        conn.executemany(upsert_sql("analytics", metrics), analytics_rows(rows, metrics, rng))
        conn.execute("COMMIT")


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", type=Path, help="keep (and reuse) the database here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "export.sqlite3"
        began = time.perf_counter()
        build(db, args.rows)
        print(f"machine: {machine()}")
        print(f"database: {db} ({db.stat().st_size / 1e6:,.0f} MB, "
              f"{args.rows:,} analytics rows + 2 x {args.rows:,} bars, ready in "
              f"{time.perf_counter() - began:.1f} s)")  # fmt: skip
        with closing(open_store(db, readonly=True)) as conn:
            columns = len(export.export_schema(conn))

        def read_only() -> float:
            with closing(open_store(db, readonly=True)) as conn:
                batches = export.export_rows(conn, Y, X, TF, WINDOW)
                return timed(lambda: sum(b.num_rows for b in batches))

        def to_file(fmt: export.Format) -> float:
            out = Path(tmp) / f"out.{fmt}"
            with closing(open_store(db, readonly=True)) as conn:
                batches = export.export_rows(conn, Y, X, TF, WINDOW)
                seconds = timed(lambda: export.write_file(batches, out, fmt))
            sizes[fmt] = out.stat().st_size
            out.unlink()
            return seconds

        sizes: dict[str, int] = {}
        print(f"{args.rows:,} rows x {columns} columns, median of {args.runs} runs:")
        for label, fmt in (
            ("read (export_rows only)", None),
            ("to Parquet (zstd)", "parquet"),
            ("to CSV", "csv"),
        ):
            median, runs = median_of(
                args.runs, read_only if fmt is None else lambda f=fmt: to_file(f)
            )
            size = "" if fmt is None else f", {sizes[fmt] / 1e6:,.0f} MB"
            print(f"  {label:<24} {median:6.2f} s  ({args.rows / median:,.0f} rows/s{size}; "
                  f"runs: {', '.join(f'{r:.2f}' for r in runs)})")  # fmt: skip


if __name__ == "__main__":
    main()
