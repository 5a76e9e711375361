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
The same probe runs meanwhile in a *reference* process that does nothing else: what it
sees is the machine's own stall (two shared virtual cores), which no design of the page
can remove; the page's cost to the daemon is the difference.

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
        # The reference: the same probe in a process of its own that does nothing else.
        # Its stalls are the machine's (two shared virtual cores), not the page's.
        reference = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--reference",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert reference.stdin is not None
        assert reference.stdout is not None
        results: dict[str, list[tuple[float, float, float, float, float]]] = {}
        for n, (_, _, label) in enumerate(plan):
            if n == 1:
                gc.freeze()  # as the daemon does once started (after the first page's imports)
            lags: list[float] = []
            done = asyncio.Event()
            probe = asyncio.create_task(loop_lag(lags, done))
            reference.stdin.write(b"GO\n")
            child.stdin.write(b"GO\n")
            await child.stdin.drain()
            line = (await child.stdout.readline()).decode()
            done.set()
            await probe
            reference.stdin.write(b"STOP\n")
            ref = json.loads(await reference.stdout.readline())
            assert line.startswith("TIME "), line
            sample = (float(line.split()[1]), max(lags), float(np.percentile(lags, 99)),
                      ref["max"], ref["p99"])  # fmt: skip
            results.setdefault(label, []).append(sample)
        await child.wait()
        reference.stdin.close()
        await reference.wait()
        for label, count in RANGES.items():
            expected = rows if count is None else min(count, rows)
            times, stalls, p99s, ref_max, ref_p99 = zip(*results[label], strict=True)
            print(
                f"{mode}: range {label!r} ({expected:,} bars): first complete render median "
                f"{statistics.median(times):.2f} s (runs: {listed(times, '.2f')}); "
                f"loop stall max median {statistics.median(stalls):.1f} ms (runs: "
                f"{listed(stalls)}), p99 median {statistics.median(p99s):.2f} ms; the "
                f"reference process meanwhile: max median {statistics.median(ref_max):.1f} ms "
                f"(runs: {listed(ref_max)}), p99 median {statistics.median(ref_p99):.2f} ms"
            )


def listed(values: tuple[float, ...], spec: str = ".1f") -> str:
    return ", ".join(format(v, spec) for v in values)


async def reference_probe() -> None:
    """Child: probe this idle process's loop between each ``GO`` and ``STOP`` on stdin; print
    each interval's max and p99 (ms) as a JSON line."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while (await reader.readline()).strip() == b"GO":
        lags: list[float] = []
        done = asyncio.Event()
        probe = asyncio.create_task(loop_lag(lags, done))
        await reader.readline()  # STOP
        done.set()
        await probe
        print(json.dumps({"max": max(lags), "p99": float(np.percentile(lags, 99))}), flush=True)


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
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        asyncio.run(reference_probe())
        return
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
