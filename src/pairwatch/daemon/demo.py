"""``pairwatch demo``: the built-in simulator and the daemon together, offline."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pairwatch.config.load import load_settings
from pairwatch.config.settings import Settings
from pairwatch.daemon.service import Daemon


def demo_settings(settings: Settings, data_dir: Path) -> Settings:
    """Return ``settings`` fed by the in-process simulator, with data under ``data_dir``."""
    feed = settings.feed.model_copy(update={"source": "simulator", "base_url": None})
    return settings.model_copy(update={"data_dir": data_dir.resolve(), "feed": feed})


async def run_demo(
    stop: asyncio.Event,
    *,
    config: Path | None = None,
    data_dir: Path = Path("pairwatch-demo"),
    duration: float | None = None,
) -> None:
    """Run the daemon on simulated trades of the configured symbols until stopped."""
    settings = demo_settings(load_settings(config), data_dir)
    daemon = Daemon(settings)
    query = "select * from bars where timeframe='1m' order by ts desc limit 5"
    print(f"pairwatch demo: bars go to {settings.db_path}", flush=True)
    print(f'pairwatch demo: look:  sqlite3 -readonly {settings.db_path} "{query}"', flush=True)
    print("pairwatch demo: stop with Ctrl-C", flush=True)
    timer = None
    if duration is not None:
        timer = asyncio.get_running_loop().call_later(duration, stop.set)
    try:
        await daemon.run(stop)
    finally:
        if timer is not None:
            timer.cancel()
    health = daemon.health
    print(
        f"pairwatch demo: {health.accepted:,} trades, {health.bars_closed:,} bars closed, "
        f"{sum(health.rejected.values()):,} rejected, {health.gaps} gaps",
        flush=True,
    )
