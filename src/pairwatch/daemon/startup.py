"""What the daemon continues from at start: the restart point in the store, the warm-up.

The restart point is what the last run left: the last trade id of each symbol, the newest
bar of each symbol × timeframe, the closed bars and Kalman states the analytics continue
from. Reading it also finalises the open bars that ended while the daemon was down.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from pairwatch.analytics import engine as pair_engine
from pairwatch.analytics.engine import KalmanState
from pairwatch.analytics.resample_kernel import warm_up
from pairwatch.config.settings import Settings
from pairwatch.daemon import store, store_reads
from pairwatch.daemon.alert_service import AlertRuntime
from pairwatch.daemon.analytics import AnalyticsStage
from pairwatch.events import Bar

if TYPE_CHECKING:
    from pairwatch.daemon.sources.simulator import SimulatorOptions

logger = logging.getLogger(__name__)


def feed_label(settings: Settings) -> str:
    """Return the feed's name in ``symbol_state``: its ids are only comparable within it."""
    feed = settings.feed
    return feed.market if feed.source == "binance" else f"{feed.source}-{feed.market}"


def builtin_simulator(settings: Settings, now_ms: int) -> SimulatorOptions:
    """Return the options of the in-process simulator of ``feed.source = "simulator"``.

    Its ids start from the wall clock (ten per millisecond), so a later run always
    continues above the ids an earlier run stored and is not taken for duplicates.
    """
    from pairwatch.daemon.sources.simulator import SimulatorOptions

    feed = settings.feed
    options = SimulatorOptions(market=feed.market, stream=feed.stream, symbols=tuple(feed.symbols))
    model = options.market_model()
    offset = now_ms * 10
    specs = tuple(
        dataclasses.replace(
            spec,
            first_trade_id=spec.first_trade_id + offset,
            first_agg_id=spec.first_agg_id + offset,
        )
        for spec in model.symbols
    )
    return dataclasses.replace(options, model=dataclasses.replace(model, symbols=specs))


@dataclasses.dataclass(frozen=True, slots=True)
class RestartPoint:
    """What the last run left in the store for this one to continue from."""

    last_ids: dict[str, tuple[int, int]]
    """Symbol → (last trade id, its ts) stored for this feed and stream."""
    latest: dict[tuple[str, str], Bar]
    """(symbol, timeframe) → its newest stored bar."""
    history: list[Bar]
    """The stored closed bars the analytics continue from, but those of ``finalized``."""
    finalized: list[Bar]
    """The bars left open by the last run and closed at this start: never handed on yet."""
    kalman: list[KalmanState]
    """The saved Kalman filter states."""


def load_restart_point(
    settings: Settings,
    ended_by: int,
    analytics: AnalyticsStage | None,
    alerts: AlertRuntime,
) -> RestartPoint:
    """Open and migrate the store, finalise open bars that have ended, read the rest.

    Also loads the rules and alert states into ``alerts`` (a ``ConfigError`` for an
    invalid rules file stops the start here).
    """
    feed = settings.feed
    timeframes = [label for label, _ in settings.bars.timeframe_lengths]
    conn = store.open_store(settings.db_path)
    try:
        # Open bars that ended while we were down, of any symbol (even one no longer
        # configured), are final now: nothing will ever add to them.
        closed_now = set(store.finalize_open_bars(conn, ended_by))
        history = [] if analytics is None else analytics.load_history(conn)
        alerts.load(conn)
        return RestartPoint(
            last_ids=store_reads.load_symbol_state(conn, feed_label(settings), feed.stream),
            latest=store_reads.load_latest_bars(conn, feed.symbols, timeframes),
            history=[b for b in history if (b.symbol, b.timeframe, b.ts) not in closed_now],
            finalized=[b for b in history if (b.symbol, b.timeframe, b.ts) in closed_now],
            kalman=[] if analytics is None else store_reads.load_kalman_states(conn),
        )
    finally:
        conn.close()


def warm_up_analytics(analytics: AnalyticsStage | None, restart: RestartPoint) -> None:
    """Compile (or load) every kernel and continue the analytics from stored bars."""
    started = time.perf_counter()
    warm_up()
    if analytics is None:
        return
    pair_engine.warm_up()
    count = analytics.warm_up(restart.history, restart.kalman)
    logger.info(
        "analytics: %d pair × timeframe tracks, warmed up from %d stored bars and %d saved "
        "Kalman states in %.2f s",
        len(analytics.engine.specs),
        count,
        len(restart.kalman),
        time.perf_counter() - started,
    )


def resumable(
    bars: dict[tuple[str, str], Bar], lengths: dict[str, int], now: int, grace: int
) -> list[Bar]:
    """Return the stored newest bars to resume: those not yet ended (plus grace) by ``now``.

    An open bar continues; a closed one keeps later trades from rewriting it. Older ones
    are left alone (open ones were finalised at start-up); intervals while the daemon was
    down get no bars, and a gap row records the ids missed.
    """
    return [
        bar
        for (_, timeframe), bar in bars.items()
        if timeframe in lengths and bar.ts + lengths[timeframe] + grace > now
    ]
