"""``pairwatch demo``: the built-in simulator and the daemon together, offline."""

from __future__ import annotations

import asyncio
import logging
import shutil
from datetime import timedelta
from importlib import resources
from pathlib import Path

from pairwatch.config.load import load_settings
from pairwatch.config.pairs import PairSettings
from pairwatch.config.rules import ALL, RulesFile
from pairwatch.config.settings import Settings
from pairwatch.daemon.service import Daemon
from pairwatch.errors import ConfigError

logger = logging.getLogger(__name__)

EXAMPLE_RULES = "config/rules.example.yaml"
"""The commented example rules file (``config/rules.example.yaml``), shipped in the package."""


def load_demo_settings(config: Path | None, data_dir: Path) -> Settings:
    """Return the demo's settings: ``config`` and the environment, the simulator, its rules.

    Notifiers configured there (``PAIRWATCH_TELEGRAM__TOKEN`` …) stay on: the example rules
    route to ``all`` of them.
    """
    return with_demo_rules(demo_settings(load_settings(config), data_dir), data_dir)


def demo_settings(settings: Settings, data_dir: Path) -> Settings:
    """Return ``settings`` fed by the in-process simulator, with data under ``data_dir``.

    Without configured pairs, every other symbol is paired with the first one (e.g.
    ETHUSDT/BTCUSDT) with short windows, so analytics show up within a minute.
    """
    feed = settings.feed.model_copy(update={"source": "simulator", "base_url": None})
    update: dict[str, object] = {"data_dir": data_dir.resolve(), "feed": feed}
    if not settings.pairs and len(feed.symbols) > 1:
        x = feed.symbols[0]
        update["pairs"] = tuple(
            PairSettings(
                y=y, x=x, windows=(30, 100), adf_lookback=120, adf_refresh=timedelta(seconds=15)
            )
            for y in feed.symbols[1:]
        )
    return settings.model_copy(update=update)


def with_free_web_port(settings: Settings) -> Settings:
    """Return ``settings`` with a free web port when the configured one is taken (say, by
    the installed service): the demo still shows its page, and says where."""
    web = settings.web
    if not web.enabled or web.port == 0:
        return settings
    from pairwatch.web.server import check_port

    try:
        check_port(web.host, web.port)
    except OSError:
        print(
            f"pairwatch demo: port {web.port} is taken (another pairwatch?): the page gets a "
            "free port instead",
            flush=True,
        )
        return settings.model_copy(update={"web": web.model_copy(update={"port": 0})})
    return settings


def with_demo_rules(settings: Settings, data_dir: Path) -> Settings:
    """Return ``settings`` with the demo's own rules file, unless one is configured."""
    if settings.alerts.rules_file is not None:
        return settings
    rules = demo_rules(settings, data_dir)
    if rules is None:
        return settings
    alerts = settings.alerts.model_copy(update={"rules_file": rules})
    return settings.model_copy(update={"alerts": alerts})


def demo_rules(settings: Settings, data_dir: Path) -> Path | None:
    """Return the demo's own copy of the example rules (made on first use), if it fits.

    The copy is the user's to edit: the running demo reloads it on save, and a later
    version never overwrites it. When it does not fit the settings (other symbols or pairs),
    the demo runs without rules.
    """
    from pairwatch.config.rules_load import load_rules

    path = data_dir.resolve() / "rules.yaml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with resources.as_file(resources.files("pairwatch") / EXAMPLE_RULES) as example:
            shutil.copyfile(example, path)
    try:
        rules = load_rules(path, settings)
    except ConfigError as exc:
        logger.warning(
            "demo: %s does not fit these settings, running without rules: %s",
            path, "; ".join(exc.problems[:3]),
        )  # fmt: skip
        return None
    unrouted = _unrouted(rules, settings)
    if unrouted:
        logger.warning(
            "demo: no rule of %s routes to the configured notifiers %s: write "
            "'notify: [all]' under its defaults (as the packaged example does) or delete the "
            "file for a fresh copy",
            path, ", ".join(unrouted),
        )  # fmt: skip
    return path


def _unrouted(rules: RulesFile, settings: Settings) -> list[str]:
    """Return the configured notifiers (besides the log) no rule routes to."""
    configured = [
        name
        for name, section in (
            ("telegram", settings.telegram),
            ("mqtt", settings.mqtt),
            ("webhook", settings.webhook),
        )
        if section.enabled
    ]
    routed = {route.notifier for rule in rules.rules for route in rule.notify}
    if not rules.rules or ALL in routed:
        return []
    return [name for name in configured if name not in routed]


async def run_demo(
    stop: asyncio.Event,
    *,
    config: Path | None = None,
    data_dir: Path = Path("pairwatch-demo"),
    duration: float | None = None,
) -> None:
    """Run the daemon on simulated trades of the configured symbols until stopped."""
    settings = with_free_web_port(load_demo_settings(config, data_dir))
    daemon = Daemon(settings)
    query = "select * from bars where timeframe='1m' order by ts desc limit 5"
    print(f"pairwatch demo: bars go to {settings.db_path}", flush=True)
    print(f'pairwatch demo: look:  sqlite3 -readonly {settings.db_path} "{query}"', flush=True)
    if settings.pairs:
        pair = settings.pairs[0]
        timeframe = (pair.timeframes or [t for t, _ in settings.bars.timeframe_lengths])[0]
        window = pair.windows[0]
        where = f"y='{pair.y}' and x='{pair.x}' and timeframe='{timeframe}' and window={window}"
        columns = "ts, hedge_ratio, zscore, correlation, kalman_beta, coint_pvalue"
        z = f"select {columns} from analytics where {where} order by ts desc limit 5"  # noqa: S608
        print(f'pairwatch demo: z-scores: sqlite3 -readonly {settings.db_path} "{z}"', flush=True)
    if settings.alerts.rules_file is not None:
        print(
            f"pairwatch demo: alert rules {settings.alerts.rules_file} (edit and save: reloaded); "
            "alerts appear in this log as ALERT lines",
            flush=True,
        )
    print("pairwatch demo: stop with Ctrl-C", flush=True)
    timer = None
    if duration is not None:
        timer = asyncio.get_running_loop().call_later(duration, stop.set)

    async def say_where() -> None:
        await daemon.ready.wait()
        if daemon.web is not None:
            print(f"pairwatch demo: charts and exports: open {daemon.web.url}", flush=True)

    announce = asyncio.create_task(say_where())
    try:
        await daemon.run(stop)
    finally:
        announce.cancel()
        if timer is not None:
            timer.cancel()
    health = daemon.health
    print(
        f"pairwatch demo: {health.accepted:,} trades, {health.bars_closed:,} bars closed, "
        f"{sum(health.rejected.values()):,} rejected, {health.gaps} gaps",
        flush=True,
    )
    if daemon.analytics is not None:
        counters = daemon.analytics.counters()
        print(
            f"pairwatch demo: {counters['pair_snapshots']:,} pair snapshots, "
            f"{counters['adf_refreshes']:,} ADF refreshes",
            flush=True,
        )
