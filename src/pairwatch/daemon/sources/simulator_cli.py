"""``pairwatch simulate``: command-line options of the simulator and how to run it."""

from __future__ import annotations

import argparse
import asyncio

from pairwatch.daemon.sources.simulator import SimulatorOptions, run_simulator
from pairwatch.errors import ConfigError


def _speed(text: str) -> float | None:
    if text.lower() in ("max", "inf"):
        return None
    value = float(text.lower().removesuffix("x"))
    if value <= 0:
        raise argparse.ArgumentTypeError("speed must be > 0, or 'max'")
    return value


def add_simulator_args(parser: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=9443, help="port (0: any free port)")
    parser.add_argument("--market", choices=["spot", "usdm"], default="spot")
    parser.add_argument(
        "--stream",
        choices=["trade", "aggTrade"],
        action="append",
        help="stream kind(s) to publish (repeatable; default trade)",
    )
    parser.add_argument(
        "--symbols", default="BTCUSDT,ETHUSDT", help="comma-separated symbols (synthetic)"
    )
    parser.add_argument(
        "--rate", type=float, default=20.0, help="synthetic trades per simulated second"
    )
    parser.add_argument(
        "--speed", type=_speed, default=1.0, help="time scale: 1, 10x, … or 'max' (default 1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (synthetic)")
    parser.add_argument(
        "--file",
        dest="files",
        action="append",
        default=[],
        metavar="FILE",
        help="recorded frame file to replay (repeatable); switches to recorded mode",
    )


def options_from_args(args: argparse.Namespace) -> SimulatorOptions:
    """Build ``SimulatorOptions`` from parsed arguments (``ConfigError`` if inconsistent)."""
    symbols = tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip())
    try:
        return SimulatorOptions(
            host=args.host,
            port=args.port,
            market=args.market,
            stream=tuple(args.stream) if args.stream else "trade",
            mode="recorded" if args.files else "synthetic",
            symbols=symbols,
            rate=args.rate,
            speed=args.speed,
            seed=args.seed,
            files=tuple(args.files),
            record_ids=False,
        )
    except ValueError as exc:
        raise ConfigError([f"simulate: {exc}"]) from None


async def run_from_args(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Serve the simulator described by ``args`` until ``stop`` is set."""
    options = options_from_args(args)
    path = "/market/stream" if options.market == "usdm" else "/stream"
    streams = "/".join(f"{s.lower()}@{k}" for s in options.symbols for k in options.kinds)

    def ready(url: str) -> None:
        print(f"pairwatch simulate: serving {url}{path}?streams={streams}", flush=True)

    await run_simulator(options, ready=ready, stop=stop)
