"""Web page: time to first complete render for 86,400 and 1M bars, and the loop's stall meanwhile.

Uses the database of ``benchmarks/export.py`` (one series of ``--rows`` 1 s snapshots,
ETHUSDT/BTCUSDT window 100, both legs' bars; built on first use, kept with ``--db``). The
page is served by ``serve_web`` on this process's loop — as the daemon serves it — with a
1 ms event-loop lag probe running on the same loop. Headless Chromium (Debian's, driven by
Playwright, in its own process) opens ``?range=24 h`` (the last 86,400 bars) and
``?range=all`` (every bar), a new page each time in one browser (its cache warm after the
first load, as for a user who comes back).

**First complete render** = from ``page.goto`` to the page saying it drew the series with
the expected bar count (``.pw-shown[data-rows=N]``, set in the same document update as the
chart data), plus two animation frames in the browser (the canvases painted).
**Loop stall** = the longest lateness of the 1 ms probe while the page loads, and its p99.

    .venv/bin/python benchmarks/web.py [--rows 1000000] [--runs 5] [--db PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import loop_lag, machine
from export import build
from pairwatch.config.web_settings import WebSettings
from pairwatch.web.server import serve_web
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


async def bench(db: Path, rows: int, runs: int) -> None:
    async with serve_web(WebSettings(port=0), db, timeframes={"1s": 1_000}) as server:
        async with chromium() as browser:
            await one_load(browser, f"{server.url}?range=15 min", 900)  # warm the cache
            for label, count in RANGES.items():
                expected = rows if count is None else min(count, rows)
                url = f"{server.url}?pair=ETHUSDT/BTCUSDT&timeframe=1s&window=100&range={label}"
                times, stalls, p99s = [], [], []
                for _ in range(runs):
                    lags: list[float] = []
                    done = asyncio.Event()
                    probe = asyncio.create_task(loop_lag(lags, done))
                    times.append(await one_load(browser, url, expected))
                    done.set()
                    await probe
                    stalls.append(max(lags))
                    p99s.append(float(np.percentile(lags, 99)))
                shown = ", ".join(f"{t:.2f}" for t in times)
                print(
                    f"range {label!r} ({expected:,} bars): first complete render median "
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
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "bench.sqlite3"
        build(db, args.rows)
        asyncio.run(bench(db, args.rows, args.runs))


if __name__ == "__main__":
    main()
