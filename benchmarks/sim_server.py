"""Run the simulator in its own process for the live benchmarks, logging send times.

Prints ``READY <base url>`` once listening. On SIGTERM it writes the send log (one line per
sent batch: cumulative frames on the first connection, send time in ns) to ``--sendlog``.

    python benchmarks/sim_server.py --rate 5000 --speed 1 --sendlog /tmp/sends.txt
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from pairwatch.daemon.sources.simulator import Simulator, SimulatorOptions


async def serve(args: argparse.Namespace) -> None:
    sends: list[tuple[int, int]] = []
    options = SimulatorOptions(
        port=args.port,
        rate=args.rate,
        speed=None if args.speed == "max" else float(args.speed),
        record_ids=False,
        retention=10_000,
        seed=args.seed,
        on_send=(lambda count, t_ns: sends.append((count, t_ns))) if args.sendlog else None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with Simulator(options) as sim:
        print(f"READY {sim.url}", flush=True)
        await stop.wait()
    if args.sendlog:
        text = "".join(f"{c} {t}\n" for c, t in sends)
        await asyncio.to_thread(Path(args.sendlog).write_text, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--speed", default="max")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sendlog")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
