"""``pairwatch demo``: the built-in simulator and the daemon together, offline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from pairwatch.config.load import load_settings
from pairwatch.config.settings import Settings
from pairwatch.daemon.service import Daemon
from pairwatch.daemon.sources.simulator import Simulator, SimulatorOptions

logger = logging.getLogger(__name__)


def demo_settings(settings: Settings, data_dir: Path, simulator_url: str) -> Settings:
    """Return ``settings`` pointed at a local simulator, with data under ``data_dir``."""
    base = simulator_url + ("/market" if settings.feed.market == "usdm" else "")
    feed = settings.feed.model_copy(update={"source": "simulator", "base_url": base})
    return settings.model_copy(update={"data_dir": data_dir.resolve(), "feed": feed})


async def run_demo(
    stop: asyncio.Event,
    *,
    config: Path | None = None,
    data_dir: Path = Path("pairwatch-demo"),
    duration: float | None = None,
) -> None:
    """Serve simulated trades for the configured symbols and run the daemon on them."""
    settings = load_settings(config)
    options = SimulatorOptions(
        market=settings.feed.market,
        stream=settings.feed.stream,
        symbols=tuple(settings.feed.symbols),
    )
    async with Simulator(options) as simulator:
        settings = demo_settings(settings, data_dir, simulator.url)
        daemon = Daemon(settings)
        print(f"pairwatch demo: simulator at {simulator.url}", flush=True)
        print(f"pairwatch demo: bars in {settings.db_path}", flush=True)
        query = "select * from bars where timeframe='1m' order by ts desc limit 5"
        print(f'pairwatch demo: try  sqlite3 -readonly {settings.db_path} "{query}"', flush=True)
        timer = None
        if duration is not None:
            timer = asyncio.get_running_loop().call_later(duration, stop.set)
        try:
            await daemon.run(stop)
        finally:
            if timer is not None:
                timer.cancel()
        with contextlib.suppress(Exception):
            print(
                f"pairwatch demo: {daemon.health.accepted:,} trades, "
                f"{daemon.health.bars_closed:,} bars closed",
                flush=True,
            )
