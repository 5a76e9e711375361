"""``pairwatch export``: one pair series (analytics with both legs' bars) to CSV or Parquet.

Reads the database read-only (the daemon may keep writing), chunk by chunk, and writes the
file through ``<out>.part``, renamed when complete (``docs/export.md``). Usage problems
(an unknown pair, timeframe or window, a bad time, an existing or impossible ``--out``)
raise ``ConfigError`` (exit 2); a failing read or write raises ``PairwatchError`` (exit 1).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pairwatch.daemon.store import open_store
from pairwatch.errors import ConfigError, PairwatchError, StoreError
from pairwatch.web import export

MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def add_export_args(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``export`` verb."""
    parser = verbs.add_parser(
        "export",
        help="export a pair series (analytics with both legs' bars) to CSV or Parquet",
        description="Export one pair series: every analytics row of the pair, timeframe and "
        "window in [--from, --to), with both legs' bars, to CSV or Parquet (docs/export.md).",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--db", type=Path, metavar="PATH", help="SQLite file to read (default: the settings')"
    )
    source.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="settings file (TOML) naming the database; default: $PAIRWATCH_CONFIG",
    )
    parser.add_argument("--pair", required=True, metavar="Y/X", help="e.g. ETHUSDT/BTCUSDT")
    parser.add_argument("--timeframe", required=True, metavar="TF", help="e.g. 1m")
    parser.add_argument(
        "--window", type=int, metavar="N", help="rolling window (default: the pair's only one)"
    )
    parser.add_argument(
        "--from",
        dest="from_",
        metavar="TIME",
        help="first bar open time, inclusive: ISO 8601 (UTC unless it has an offset) or epoch ms",
    )
    parser.add_argument("--to", metavar="TIME", help="end of the range, exclusive; like --from")
    parser.add_argument("--format", required=True, choices=export.FORMATS, help="file format")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE", help="file to write")
    parser.add_argument("--force", action="store_true", help="replace FILE if it exists")


def run_export(args: argparse.Namespace) -> str:
    """Run ``pairwatch export``; return the line to print."""
    y, x = parse_pair(args.pair)
    start = parse_time(args.from_, "--from")
    end = parse_time(args.to, "--to")
    if start is not None and end is not None and start > end:
        raise ConfigError([f"export: --from ({args.from_}) is after --to ({args.to})"])
    db = _database(args)
    out = _target(args.out, force=args.force, db=db)
    try:
        conn = open_store(db, readonly=True)
    except StoreError as exc:
        raise ConfigError([f"export: --db {db}: {exc}"]) from None
    began = time.perf_counter()
    try:
        try:
            window = export.resolve_window(conn, y, x, args.timeframe, args.window)
        except export.SeriesNotFound as exc:
            raise ConfigError([f"export: {exc} (in {db})"]) from None
        rows = _write(conn, (y, x, args.timeframe, window), start, end, args.format, out)
    except sqlite3.Error as exc:
        raise PairwatchError(f"export: cannot read {db}: {exc}") from None
    except OSError as exc:
        raise PairwatchError(f"export: cannot write {out}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        raise PairwatchError(f"export: interrupted; {out} not written") from None
    finally:
        conn.close()
    span = f"[{_when(start)}, {_when(end)})"
    seconds = time.perf_counter() - began
    return (
        f"exported {rows:,} rows of {y}/{x} {args.timeframe} window {window} {span} "
        f"to {out} ({out.stat().st_size:,} bytes) in {seconds:.2f} s"
    )


def _write(
    conn: sqlite3.Connection,
    series: export.Series,
    start: int | None,
    end: int | None,
    fmt: export.Format,
    out: Path,
) -> int:
    y, x, timeframe, window = series
    batches = export.export_rows(conn, y, x, timeframe, window, start, end)
    if not sys.stderr.isatty():
        return export.write_file(batches, out, fmt)
    from tqdm import tqdm

    total = export.count_rows(conn, y, x, timeframe, window, start, end)
    with tqdm(total=total, unit=" rows", unit_scale=True, desc=out.name, leave=False) as bar:
        return export.write_file(_counted(batches, bar), out, fmt)


def _counted(batches: Iterator[Any], bar: Any) -> Iterator[Any]:
    for batch in batches:
        yield batch
        bar.update(batch.num_rows)


def parse_pair(text: str) -> tuple[str, str]:
    """Return (y, x) of ``Y/X`` (upper-cased); raise ``ConfigError`` otherwise."""
    parts = [p.strip().upper() for p in text.split("/")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ConfigError([f"export: --pair {text!r}: expected Y/X, two different symbols"])
    return parts[0], parts[1]


def parse_time(text: str | None, option: str) -> int | None:
    """Return epoch ms of an ISO 8601 time (UTC unless it says otherwise) or of epoch ms."""
    if text is None:
        return None
    if text.isascii() and text.isdigit():
        value = int(text)
        if value > MAX_EPOCH_MS:
            raise ConfigError([f"export: {option} {text} is past the year 9999"])
        return value
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            [f"export: {option} {text!r} is not an ISO 8601 time (2026-12-05, "
             "2026-12-05T10:00, …Z, …+02:00) or epoch milliseconds"]
        ) from None  # fmt: skip
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _database(args: argparse.Namespace) -> Path:
    if args.db is not None:
        db: Path = args.db
    else:
        from pairwatch.config.load import load_settings

        db = load_settings(args.config).db_path
    if not db.is_file():
        raise ConfigError([f"export: {db}: no such database file"])
    return db


def _target(path: Path, *, force: bool, db: Path) -> Path:
    """Return ``--out`` with its directory resolved; refuse what it must not write.

    Only the directory is resolved: a symbolic link at ``FILE`` (or at ``FILE.part``) is
    never written through, so the export lands in ``FILE``'s directory and nowhere else.
    ``FILE`` as a link counts as existing (``--force`` replaces the link, not its target).
    """
    given = path.expanduser()
    if given.name in ("", ".", "..") or given.is_dir():
        raise ConfigError([f"export: --out {path} is a directory; name the file to write"])
    parent = given.absolute().parent.resolve()
    if not parent.is_dir():
        raise ConfigError([f"export: --out {path}: directory {parent} does not exist"])
    out = parent / given.name
    database = db.resolve()
    if database in (out, export.part_path(out)) or (out.is_symlink() and out.resolve() == database):
        raise ConfigError([f"export: --out {path} is the database itself"])
    if (out.exists() or out.is_symlink()) and not force:
        raise ConfigError([f"export: --out {path} exists; pass --force to replace it"])
    part = export.part_path(out)
    if part.is_symlink():
        raise ConfigError(
            [f"export: {part} is a symbolic link: not written through; remove it first"]
        )
    return out


def _when(ms: int | None) -> str:
    if ms is None:
        return "…"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
