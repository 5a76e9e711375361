"""Web page: time to first complete render for 86,400 and 1M bars, and the loop's stall meanwhile.

Uses the database of ``benchmarks/export.py`` (one series of ``--rows`` 1 s snapshots,
ETHUSDT/BTCUSDT window 100, both legs' bars; built on first use, kept with ``--db``). A 1 ms
event-loop lag probe runs on this process's main loop, standing for the daemon's (which
ingests trades), while the page is served

- ``child``: as the daemon serves it — by a page process of its own (``WebProcess``,
  ``python -m pairwatch.web.child``), whose questions (the feed-health strip pushed each
  second) are answered on this loop by ``Answers`` of a daemon built on the same settings;
- ``thread``: by ``serve_web`` in this process, on a loop of its own in a thread (how the
  daemon served it before: for comparison in the same run).

Headless Chromium (Debian's), driven by Playwright from a child process (so the driver's own
work is not on the probed loop), opens ``?range=24 h`` (the last 86,400 bars) and
``?range=all`` (every bar), a new page each time in one browser (its cache warm after the
first load, as for a user who comes back). The browser and its driver run with
``--browser-nice`` (default 10): they stand for the user's own machine, and on these two
shared cores they would otherwise take CPU from the probed loop in either mode.

**First complete render** = from ``page.goto`` to the page saying it drew the series with
the expected bar count (``.pw-shown[data-rows=N]``, set in the same document update as the
chart data), plus two animation frames in the browser (the canvases painted).
**Loop stall** = the longest lateness of the 1 ms probe while the page loads, and its p99.

    .venv/bin/python benchmarks/web.py [--rows 1000000] [--runs 5] [--db PATH]
        [--mode child|thread|both] [--browser-nice 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import loop_lag, machine
from export import build
from pairwatch.config.settings import Settings
from pairwatch.config.web_settings import WebSettings
from pairwatch.daemon.service import Daemon
from pairwatch.daemon.web_setup import WebProcess
from pairwatch.web.answers import Answers
from pairwatch.web.child import ChildConfig
from pairwatch.web.server import free_port, serve_web
from support.browser import chromium

RANGES = {"24 h": 86_400, "all": None}


async def one_load(browser: object, url: str, rows: int) -> float:
    page = await browser.new_page(viewport={"width": 1600, "height": 1800})  # type: ignore[attr-defined]
    try:
        started = time.perf_counter()
        await page.goto(url)
        await page.locator(f".pw-shown[data-rows='{rows}']").wait_for(timeout=120_000)
        await page.evaluate(
            "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
        )
        return time.perf_counter() - started
    finally:
        await page.close()


async def drive(loads: list[tuple[str, int]]) -> None:
    """Child: load each (url, rows) in a new page; print each time after a line ``GO``."""
    async with chromium() as browser:
        for url, rows in loads:
            await asyncio.to_thread(sys.stdin.readline)  # the parent's probe is running
            print(f"TIME {await one_load(browser, url, rows):.4f}", flush=True)


@contextlib.asynccontextmanager
async def served(mode: str, db: Path, tmp: Path) -> AsyncIterator[str]:
    """Serve the page as ``mode`` says; yield its URL."""
    if mode == "thread":
        async with serve_web(WebSettings(port=0), db, timeframes={"1s": 1_000}) as server:
            yield server.url
        return
    daemon = Daemon(Settings(data_dir=tmp, feed={"symbols": ["BTCUSDT", "ETHUSDT"]}))
    config = ChildConfig(
        web=WebSettings(port=free_port("127.0.0.1")),
        db_path=db,
        timeframes={"1s": 1_000},
        cookie_secret=secrets.token_urlsafe(32),
        log_level="WARNING",
    )
    web = WebProcess(config, Answers(daemon))
    web.start()
    try:
        await web.wait_ready()
        yield web.url
    finally:
        await web.stop()


async def bench(db: Path, rows: int, runs: int, mode: str, tmp: Path, browser_nice: int) -> None:
    async with served(mode, db, tmp) as url:
        plan = [(f"{url}?range=15 min", 900, "warm-up")]  # the browser's cache
        for label, count in RANGES.items():
            expected = rows if count is None else min(count, rows)
            query = f"?pair=ETHUSDT/BTCUSDT&timeframe=1s&window=100&range={label}"
            plan += [(url + query, expected, label)] * runs
        child = await asyncio.create_subprocess_exec(
            "nice", "-n", str(browser_nice),
            sys.executable, __file__, "--drive", json.dumps([(u, n) for u, n, _ in plan]),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert child.stdin is not None
        assert child.stdout is not None
        results: dict[str, list[tuple[float, float, float]]] = {}
        for n, (_, _, label) in enumerate(plan):
            if n == 1:
                gc.freeze()  # as the daemon does once started (after the first page's imports)
            lags: list[float] = []
            done = asyncio.Event()
            probe = asyncio.create_task(loop_lag(lags, done))
            child.stdin.write(b"GO\n")
            await child.stdin.drain()
            line = (await child.stdout.readline()).decode()
            done.set()
            await probe
            assert line.startswith("TIME "), line
            sample = (float(line.split()[1]), max(lags), float(np.percentile(lags, 99)))
            results.setdefault(label, []).append(sample)
        await child.wait()
        for label, count in RANGES.items():
            expected = rows if count is None else min(count, rows)
            times = [t for t, _, _ in results[label]]
            stalls = [m for _, m, _ in results[label]]
            p99s = [p for _, _, p in results[label]]
            shown = ", ".join(f"{t:.2f}" for t in times)
            print(
                f"{mode}: range {label!r} ({expected:,} bars): first complete render median "
                f"{statistics.median(times):.2f} s (runs: {shown}); loop stall max median "
                f"{statistics.median(stalls):.1f} ms (runs: "
                f"{', '.join(f'{s:.1f}' for s in stalls)}), p99 median "
                f"{statistics.median(p99s):.2f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", type=Path, help="keep (and reuse) the database here")
    parser.add_argument("--mode", choices=("child", "thread", "both"), default="both")
    parser.add_argument(
        "--browser-nice", type=int, default=10,
        help="nice value of the browser and its driver (they stand for a user's machine)",
    )  # fmt: skip
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        asyncio.run(drive([(url, n) for url, n in json.loads(args.drive)]))
        return
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "bench.sqlite3"
        build(db, args.rows)
        for mode in ("child", "thread") if args.mode == "both" else (args.mode,):
            asyncio.run(bench(db, args.rows, args.runs, mode, Path(tmp), args.browser_nice))


if __name__ == "__main__":
    main()
