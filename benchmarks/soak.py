"""Soak: the daemon under a steady high load for a long time; fails if it leaks.

Runs ``pairwatch run`` (a real subprocess, web page on) against the simulator (a child
process, real time) with ``--symbols`` symbols (default 20) paired two by two
(``--symbols`` / 2 pairs, window 30) on three timeframes (1s, 1m, 5m), ``--trades`` trades
per second (default 5,000), and one alert rule per pair (``zscore`` crossing ±2, routed to
the log). Every ``--sample`` seconds it records, per process (the daemon and its page
process): resident memory (VmRSS) and open file descriptors; and from the daemon's
``/metrics``: trades accepted, the writer's queue, the event loop's lag (max over the last
minute) and the database file's size (with its WAL).

After ``--warmup`` minutes (caches, numba, SQLite's page cache and the analytics windows
fill up) the first sample is the baseline. The run fails (exit 1) if, at the end, the
daemon's RSS (median of the last five samples) is more than ``--rss-growth`` MB above the
baseline, or its open fds more than ``--fd-growth`` above it; or if the writer's queue
keeps growing; or if the daemon logged an error (its log is kept apart: alerts go to it).
The page process is reported, not judged (nobody opens the page here).

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--warmup 3] [--symbols 20]
        [--trades 5000] [--sample 10] [--rss-growth 64] [--fd-growth 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, serve_simulator
from pairwatch.web.server import free_port

TIMEFRAMES = ("1s", "1m", "5m")


def symbols(count: int) -> list[str]:
    return [f"S{i:02d}USDT" for i in range(count)]


def config_text(tmp: Path, sim_url: str, names: list[str], port: int) -> str:
    pairs = "".join(
        f'\n[[pairs]]\ny = "{names[i + 1]}"\nx = "{names[i]}"\nwindows = [30]\n'
        for i in range(0, len(names) - 1, 2)
    )
    return f"""
data_dir = "{tmp / "data"}"
log_level = "WARNING"

[feed]
source = "simulator"
base_url = "{sim_url}"
symbols = {names!r}

[bars]
timeframes = {list(TIMEFRAMES)!r}

[alerts]
rules_file = "{tmp / "rules.yaml"}"

[web]
port = {port}
{pairs}"""


RULES = """
rules:
  - name: z-wide
    pair: "*"
    timeframe: 1s
    window: 30
    when: abs(zscore) >= 2
    clear: abs(zscore) < 1
    notify: [log]
"""


@contextlib.contextmanager
def process(args: list[str], **kwargs: object) -> subprocess.Popen[str]:  # type: ignore[misc]
    child = subprocess.Popen(args, text=True, **kwargs)  # type: ignore[call-overload]
    try:
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


@dataclass
class Sample:
    t: float
    """Minutes since the start."""
    rss: float
    fds: int
    page_rss: float
    page_fds: int
    trades: float
    queue: float
    loop_max_ms: float
    db_mb: float


async def scrape(client: httpx.AsyncClient) -> dict[str, float]:
    text = (await client.get("metrics")).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "pairwatch_trades_accepted_total":
                values["trades"] = s.value
            elif s.name == "pairwatch_queue_depth" and s.labels.get("queue") == "writer":
                values["queue"] = s.value
            elif s.name == "pairwatch_event_loop_lag_seconds" and s.labels["quantile"] == "1":
                values["loop"] = s.value * 1000
    return values


def db_size_mb(data: Path) -> float:
    return sum(p.stat().st_size for p in data.glob("pairwatch.sqlite3*")) / 1e6


async def soak(args: argparse.Namespace, tmp: Path) -> int:
    names = symbols(args.symbols)
    port = free_port("127.0.0.1")
    sim = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, __file__, "--serve", ",".join(names), "--trades", str(args.trades)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert sim.stdout is not None
    line = await asyncio.to_thread(sim.stdout.readline)
    assert line.startswith("READY "), line
    config = tmp / "pairwatch.toml"
    config.write_text(config_text(tmp, line.split()[1], names, port))
    (tmp / "rules.yaml").write_text(RULES)
    samples: list[Sample] = []
    started = time.monotonic()
    daemon_cmd = [sys.executable, "-m", "pairwatch", "run", "--config", str(config)]
    log = tmp / "daemon.log"
    try:
        with log.open("w") as log_file, process(daemon_cmd, stderr=log_file) as daemon:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/") as client:
                await until_up(client)
                end = started + args.minutes * 60
                while time.monotonic() < end:
                    page = children(daemon.pid)
                    got = await scrape(client)
                    samples.append(Sample(
                        t=(time.monotonic() - started) / 60,
                        rss=rss_mb(daemon.pid), fds=fds(daemon.pid),
                        page_rss=rss_mb(page[0]) if page else float("nan"),
                        page_fds=fds(page[0]) if page else 0,
                        trades=got.get("trades", 0.0), queue=got.get("queue", 0.0),
                        loop_max_ms=got.get("loop", float("nan")),
                        db_mb=db_size_mb(tmp / "data"),
                    ))  # fmt: skip
                    print(describe(samples[-1]), flush=True)
                    await asyncio.sleep(args.sample)
            code = daemon.poll()
            if code is not None:
                print(f"the daemon ended early: exit {code}")
                return 1
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(30)
    lines = log.read_text(errors="replace").splitlines()
    bad = [line for line in lines if " ERROR " in line or "Traceback" in line]
    print(f"daemon log: {len(lines):,} lines, {len(bad)} errors or tracebacks")
    for line in bad[:10]:
        print(f"  {line}")
    return judge(samples, args) or (1 if bad else 0)


async def until_up(client: httpx.AsyncClient) -> None:
    """Wait until the daemon's page process answers (it starts a few seconds after)."""
    async with asyncio.timeout(120):
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("healthz")).status_code in (200, 503):
                    return
            await asyncio.sleep(0.5)


def describe(s: Sample) -> str:
    return (
        f"{s.t:6.1f} min: daemon RSS {s.rss:6.1f} MB, fds {s.fds:3d}; page RSS "
        f"{s.page_rss:6.1f} MB, fds {s.page_fds:3d}; trades {s.trades:>11,.0f}; writer queue "
        f"{s.queue:5.0f}; loop lag max {s.loop_max_ms:6.1f} ms; db {s.db_mb:7.1f} MB"
    )


def judge(samples: list[Sample], args: argparse.Namespace) -> int:
    after = [s for s in samples if s.t >= args.warmup]
    if len(after) < 6:
        print("too short to judge: run longer than the warm-up plus six samples")
        return 1
    base, last = after[0], after[-5:]
    rss_growth = statistics.median(s.rss for s in last) - base.rss
    fd_growth = max(s.fds for s in last) - base.fds
    queue_end = statistics.median(s.queue for s in last)
    minutes = after[-1].t - base.t
    rate = (after[-1].trades - base.trades) / (minutes * 60)
    print(f"machine: {machine()}")
    print(
        f"after {args.warmup} min warm-up, over {minutes:.1f} min: {rate:,.0f} trades/s; daemon "
        f"RSS {base.rss:.1f} → {statistics.median(s.rss for s in last):.1f} MB "
        f"({rss_growth:+.1f}, bound +{args.rss_growth}); fds {base.fds} → "
        f"{max(s.fds for s in last)} ({fd_growth:+d}, bound +{args.fd_growth}); page process "
        f"RSS {base.page_rss:.1f} → {after[-1].page_rss:.1f} MB, fds {base.page_fds} → "
        f"{after[-1].page_fds}; writer queue max {max(s.queue for s in after):.0f} (end "
        f"{queue_end:.0f}); loop lag max per minute: median "
        f"{statistics.median(s.loop_max_ms for s in after):.1f} ms, worst "
        f"{max(s.loop_max_ms for s in after):.1f} ms; db {base.db_mb:.0f} → "
        f"{after[-1].db_mb:.0f} MB"
    )
    failed = []
    if rss_growth > args.rss_growth:
        failed.append(f"RSS grew {rss_growth:.1f} MB")
    if fd_growth > args.fd_growth:
        failed.append(f"fds grew {fd_growth}")
    if queue_end > 10 * max(1.0, statistics.median(s.queue for s in after[:5])) + 1_000:
        failed.append(f"the writer's queue grew to {queue_end:.0f}")
    print("FAILED: " + "; ".join(failed) if failed else "PASSED")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--trades", type=float, default=5_000.0)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--rss-growth", type=float, default=64.0, help="MB allowed")
    parser.add_argument("--fd-growth", type=int, default=8)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_simulator(args.serve.split(","), args.trades))
        return
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(asyncio.run(soak(args, Path(tmp))))


if __name__ == "__main__":
    main()
