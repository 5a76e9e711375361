"""Live path benchmarks against the simulator running in its own process.

throughput: the simulator sends synthetic BTCUSDT + ETHUSDT trades on one combined-stream
connection at max speed. In the same run, alternately, (a) a bare loop receives and decodes
N frames with the same websockets client and msgspec into the same typed structs, and
(b) the daemon's path receives N frames: client → validation → dedup → bars for 1s/1m/5m
→ SQLite writer. Reports frames per CPU-second of the receiving process (all its threads,
the writer's included), which leaves out time spent waiting for the simulator and noise
from other tenants of the machine, for each (median of --runs) and the ratio.

latency: the simulator sends 5,000 trades/s in real time; for every bar closed by an
incoming trade, latency = time the closed bar is handed to the next stage − time the
simulator wrote the closing frame to its socket. Reports p50 and p99.

    .venv/bin/python benchmarks/live.py throughput [--frames 300000] [--runs 5]
    .venv/bin/python benchmarks/live.py latency [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import msgspec
import numpy as np
from websockets.asyncio.client import connect

from common import machine
from pairwatch.daemon import store
from pairwatch.daemon.health import Health
from pairwatch.daemon.pipeline import Pipeline
from pairwatch.daemon.sources.binance import BinanceFeed, FeedOptions
from pairwatch.daemon.sources.wire import Envelope
from pairwatch.daemon.writer import Writer
from pairwatch.events import Bar

HERE = Path(__file__).resolve().parent
SYMBOLS = ("BTCUSDT", "ETHUSDT")
TIMEFRAMES = [("1s", 1_000), ("1m", 60_000), ("5m", 300_000)]
STREAMS = "/stream?streams=btcusdt@trade/ethusdt@trade"


@contextlib.asynccontextmanager
async def simulator(rate: float, speed: str, sendlog: Path | None) -> AsyncIterator[str]:
    args = [sys.executable, str(HERE / "sim_server.py"), "--rate", str(rate), "--speed", speed]
    if sendlog is not None:
        args += ["--sendlog", str(sendlog)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    try:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        assert line.startswith("READY "), line
        yield line.split()[1]
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 30)


async def bare_loop(url: str, frames: int) -> float:
    decoder = msgspec.json.Decoder(Envelope, strict=False)
    async with connect(url, max_size=1 << 20, compression=None) as ws:
        await ws.recv()
        started = time.process_time()
        n = 0
        async for raw in ws:
            decoder.decode(raw)
            n += 1
            if n == frames:
                break
        return frames / (time.process_time() - started)


def daemon_stage(db: Path) -> tuple[Pipeline, Health, Writer]:
    """Return the daemon's live stage as ``pairwatch run`` builds it, writing to ``db``."""
    store.open_store(db).close()
    writer = Writer(db)
    writer.start()
    health = Health()
    pipeline = Pipeline(
        symbols=SYMBOLS, timeframes=TIMEFRAMES, market="spot", stream="trade",
        writer=writer, health=health, max_skew_ms=300_000,
    )  # fmt: skip
    return pipeline, health, writer


async def daemon_path(url: str, frames: int, db: Path) -> float:
    pipeline, health, writer = daemon_stage(db)
    done = asyncio.Event()
    marks: list[float] = []

    def on_frame(raw: str | bytes, ts_recv: int) -> bool:
        result = pipeline.on_frame(raw, ts_recv)
        n = health.frames
        if n == 1:
            marks.append(time.process_time())
        elif n == frames + 1:
            marks.append(time.process_time())
            done.set()
        return result

    feed = BinanceFeed(url, on_frame, health, FeedOptions())
    task = asyncio.create_task(feed.run())
    await done.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    pipeline.checkpoint()
    writer.close(30)
    assert health.accepted >= frames, health.snapshot()
    return frames / (marks[1] - marks[0])


async def throughput(frames: int, runs: int) -> None:
    bare: list[float] = []
    ours: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with simulator(1000.0, "max", None) as base:
            url = base + STREAMS
            for i in range(runs):
                bare.append(await bare_loop(url, frames))
                ours.append(await daemon_path(url, frames, Path(tmp) / f"live{i}.sqlite3"))
    b, d = float(np.median(bare)), float(np.median(ours))
    print(f"machine: {machine()}")
    print(f"bare loop  (recv + msgspec decode): median {b:,.0f} frames/cpu-s  {fmt(bare)}")
    print(f"daemon path (… + bars + SQLite):    median {d:,.0f} frames/cpu-s  {fmt(ours)}")
    ratios = [o / x for o, x in zip(ours, bare, strict=True)]
    print(f"ratio daemon / bare: {d / b:.2f} (per-run ratios {fmt(ratios, 2)})")


def fmt(values: Sequence[float], digits: int = 0) -> str:
    return "[" + ", ".join(f"{v:,.{digits}f}" for v in values) + "]"


async def latency(seconds: float, rate: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sendlog = Path(tmp) / "sends.txt"
        pipeline, health, writer = daemon_stage(Path(tmp) / "latency.sqlite3")
        handoffs: list[tuple[int, int]] = []

        def next_stage(bars: Sequence[Bar]) -> None:
            handoffs.append((health.frames, time.time_ns()))

        pipeline.add_sink(next_stage)
        async with simulator(rate, "1", sendlog) as base:
            feed = BinanceFeed(base + STREAMS, pipeline.on_frame, health, FeedOptions())
            task = asyncio.create_task(feed.run())
            await asyncio.sleep(seconds)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        writer.close(30)
        sends = [tuple(map(int, line.split())) for line in sendlog.read_text().splitlines()]
    counts = [c for c, _ in sends]
    samples = []
    for frame_no, t_handoff in handoffs:
        i = bisect.bisect_left(counts, frame_no)
        if i < len(sends):
            samples.append((t_handoff - sends[i][1]) / 1e6)
    lat = np.array(samples)
    p50, p99 = np.percentile(lat, [50, 99])
    print(f"machine: {machine()}")
    print(
        f"latency send → closed bar handed on, {rate:,.0f} trades/s for {seconds:.0f} s: "
        f"{len(lat)} hand-offs, p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {lat.max():.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--frames", type=int, default=300_000)
    t.add_argument("--runs", type=int, default=5)
    lat = sub.add_parser("latency")
    lat.add_argument("--seconds", type=float, default=60.0)
    lat.add_argument("--rate", type=float, default=5_000.0)
    args = parser.parse_args()
    if args.what == "throughput":
        asyncio.run(throughput(args.frames, args.runs))
    else:
        asyncio.run(latency(args.seconds, args.rate))


if __name__ == "__main__":
    main()
