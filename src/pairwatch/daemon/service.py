"""The daemon's lifecycle: startup → run until stopped → graceful shutdown.

Startup opens (and migrates) the store, restores the restart point (last ids, open
bars), starts the writer thread, the feed connections, the bar clock and the retention
scheduler. Shutdown stops the feeds first, checkpoints open bars and last ids, then
flushes and closes the writer: every trade received before the signal is in SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from pairwatch import __version__
from pairwatch.analytics import engine as pair_engine
from pairwatch.analytics.engine import KalmanState
from pairwatch.analytics.resample_kernel import warm_up
from pairwatch.config.settings import Settings
from pairwatch.daemon import store, store_reads
from pairwatch.daemon.alert_service import AlertRuntime
from pairwatch.daemon.analytics import AnalyticsStage, adf_schedule, pair_specs
from pairwatch.daemon.bot_backend import DaemonBackend
from pairwatch.daemon.health import Health
from pairwatch.daemon.mqtt_service import MqttRuntime, announced
from pairwatch.daemon.notifier_setup import build_notifiers, start_notifiers, stop_notifiers
from pairwatch.daemon.pipeline import Pipeline
from pairwatch.daemon.sources.binance import BinanceFeed, FeedOptions, stream_names, stream_urls
from pairwatch.daemon.writer import FeedStatsRow, Writer
from pairwatch.errors import PairwatchError
from pairwatch.events import Bar

if TYPE_CHECKING:
    from pairwatch.daemon.sources.simulator import SimulatorOptions

logger = logging.getLogger(__name__)

Clock = Callable[[], int]
"""Returns the wall clock in epoch ms; tests inject their own."""

TICK_SECONDS = 0.25
FEED_STATS_SECONDS = 60.0
ALERT_CLOCK_SECONDS = 1.0
"""Rules on health values and stale targets are evaluated this often."""


def wall_clock_ms() -> int:
    """Return the wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


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


def _on_sighup(alerts: AlertRuntime) -> bool:
    """Reload the rules on SIGHUP (main thread only); return whether the handler is set."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, alerts.request_reload)
    except (RuntimeError, NotImplementedError, ValueError):
        return False  # not the main thread (or no signals here): reload by file watch only
    return True


def _off_sighup(installed: bool) -> None:
    if installed:
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)


def feed_label(settings: Settings) -> str:
    """Return the feed's name in ``symbol_state``: its ids are only comparable within it."""
    feed = settings.feed
    return feed.market if feed.source == "binance" else f"{feed.source}-{feed.market}"


class Daemon:
    """One pairwatch process: feeds → pipeline → store, with health counters."""

    def __init__(self, settings: Settings, *, clock: Clock = wall_clock_ms) -> None:
        self.settings = settings
        self.clock = clock
        self.health = Health()
        self.feeds: list[BinanceFeed] = []
        self.pipeline: Pipeline | None = None
        self.writer: Writer | None = None
        self.analytics: AnalyticsStage | None = None
        self.alerts: AlertRuntime | None = None
        self.mqtt: MqttRuntime | None = None
        self.backend: DaemonBackend | None = None
        self.ready = asyncio.Event()
        self.base_url = settings.feed.stream_url_base

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down gracefully."""
        feed = self.settings.feed
        if feed.source == "simulator" and feed.base_url is None:
            from pairwatch.daemon.sources.simulator import Simulator

            async with Simulator(builtin_simulator(self.settings, self.clock())) as simulator:
                self.base_url = simulator.url + ("/market" if feed.market == "usdm" else "")
                logger.info("started the built-in simulator at %s", simulator.url)
                await self._run(stop)
        else:
            await self._run(stop)

    async def _run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        db_path = settings.db_path
        timeframes = settings.bars.timeframe_lengths
        lengths = dict(timeframes)
        grace = _ms(settings.bars.grace)
        feed = settings.feed
        now = self.clock()
        label = feed_label(settings)
        specs = pair_specs(settings)
        writer = self.writer = Writer(db_path, batch_max_rows=settings.storage.batch_max_rows)
        analytics = self.analytics = AnalyticsStage(specs, writer) if specs else None
        self.backend = DaemonBackend(self, self.clock)
        mqtt = self.mqtt = MqttRuntime(settings, self.health) if settings.mqtt.enabled else None
        notifiers = build_notifiers(settings, self.backend, mqtt.link if mqtt else None)
        alerts = self.alerts = AlertRuntime(
            settings, writer, self.health, clock=self.clock, notifiers=notifiers
        )
        last_ids, latest, history, finalized, kalman = await asyncio.to_thread(
            self._load_restart_point,
            label,
            feed.stream,
            feed.symbols,
            list(lengths),
            now - grace,
            analytics,
            alerts,
        )
        await asyncio.to_thread(self._warm_up, analytics, history, kalman)
        writer.start()
        if analytics is not None:
            analytics.add_listener(alerts.stage.on_snapshots)
            if mqtt is not None:
                analytics.add_listener(mqtt.publisher.on_snapshots)
        if analytics is not None and finalized:
            # Bars left open at the last stop and closed at this start were never handed on:
            # their snapshots are computed (and stored) now, after the warm-up's bars.
            analytics.on_bars(finalized)
        self.health.queue_depths["writer"] = lambda: writer.queue_depth
        pipeline = self.pipeline = Pipeline(
            symbols=feed.symbols,
            timeframes=timeframes,
            market=label,
            stream=feed.stream,
            writer=writer,
            health=self.health,
            fill=settings.bars.fill,
            max_fill_ms=settings.bars.max_fill_ms,
            max_skew_ms=_ms(feed.max_clock_skew),
            store_ticks=settings.storage.store_ticks,
            last_ids=last_ids,
        )
        pipeline.resume(resumable(latest, lengths, now, grace))
        if analytics is not None:
            pipeline.add_sink(analytics.on_bars)
            self.health.stages["analytics"] = analytics.counters
        if mqtt is not None and settings.mqtt.publish_bars:
            pipeline.add_sink(mqtt.publisher.on_bars)
        self.health.stages["alerts"] = alerts.stage.counters
        self.health.stages["delivery"] = lambda: {
            f"{name}_{key}": value
            for name, c in alerts.dispatcher.counters().items()
            for key, value in (("delivered", c.delivered), ("retried", c.retried),
                               ("failed", c.failed))
        }  # fmt: skip
        tasks: list[asyncio.Task[Any]] = []
        hangup = False
        adf_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adf")
        scheduler = self._scheduler(writer, analytics, adf_worker)
        try:
            tasks = [
                asyncio.create_task(f.run(), name=f"feed-{i}")
                for i, f in enumerate(self._feeds(pipeline))
            ]
            tasks.append(asyncio.create_task(self._clock_loop(pipeline, grace), name="bar-clock"))
            await start_notifiers(notifiers)
            tasks.append(asyncio.create_task(alerts.run(), name="alerts"))
            if mqtt is not None:
                tasks.append(asyncio.create_task(mqtt.run(), name="mqtt-publish"))
            hangup = _on_sighup(alerts)
            scheduler.start()
            logger.info(
                "pairwatch %s running: %d symbols, timeframes %s, db %s",
                __version__,
                len(feed.symbols),
                ",".join(label for label, _ in timeframes),
                db_path,
            )
            self.ready.set()
            stopped = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({stopped, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            for task in done:
                if task is not stopped and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            logger.info("shutting down")
            if self.backend is not None:
                self.backend.closing = True  # bot commands that write are refused from now
            for task in tasks[: len(self.feeds)]:
                task.cancel()  # the feeds first: nothing new after this
            if mqtt is not None:
                await mqtt.flush(2.0)  # the last snapshots out while the link is up
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await stop_notifiers(notifiers)  # after delivery stopped
            if self.backend is not None:
                self.backend.close()
            with contextlib.suppress(Exception):
                scheduler.shutdown(wait=False)
            adf_worker.shutdown(wait=False, cancel_futures=True)
            self._write_feed_stats()  # the final counters of this run
            pipeline.checkpoint()
            if analytics is not None:
                analytics.checkpoint()
            alerts.stage.checkpoint(final=True)
            await asyncio.to_thread(writer.close, 30.0)
            _off_sighup(hangup)  # not before: SIGHUP's default action would end the process
            unwritten = writer.queue_depth + writer.rows_dropped
            logger.info(
                "stopped: %d trades accepted, %d bars closed, %d bar rows written",
                self.health.accepted,
                self.health.bars_closed,
                writer.bars_written,
            )
        if unwritten:
            raise PairwatchError(
                f"{unwritten} rows could not be written to {db_path}: see the log above"
            )

    def _load_restart_point(
        self,
        market: str,
        stream: str,
        symbols: Sequence[str],
        timeframes: Sequence[str],
        ended_by: int,
        analytics: AnalyticsStage | None,
        alerts: AlertRuntime,
    ) -> tuple[
        dict[str, tuple[int, int]], dict[tuple[str, str], Bar], list[Bar], list[Bar],
        list[KalmanState],
    ]:  # fmt: skip
        """Open and migrate the store, finalise open bars that have ended, read the rest.

        Returns the last ids, the newest bar of each symbol × timeframe, the stored closed
        bars the analytics continue from, those of them closed just now, and the saved
        Kalman filter states.
        """
        conn = store.open_store(self.settings.db_path)
        try:
            # Open bars that ended while we were down, of any symbol (even one no longer
            # configured), are final now: nothing will ever add to them.
            closed_now = set(store.finalize_open_bars(conn, ended_by))
            history = [] if analytics is None else analytics.load_history(conn)
            alerts.load(conn)  # a ConfigError (invalid rules file) stops the start here
            if self.mqtt is not None:
                self.mqtt.previous = announced(conn)
            return (
                store_reads.load_symbol_state(conn, market, stream),
                store_reads.load_latest_bars(conn, symbols, timeframes),
                [b for b in history if (b.symbol, b.timeframe, b.ts) not in closed_now],
                [b for b in history if (b.symbol, b.timeframe, b.ts) in closed_now],
                [] if analytics is None else store_reads.load_kalman_states(conn),
            )
        finally:
            conn.close()

    @staticmethod
    def _warm_up(
        analytics: AnalyticsStage | None, history: list[Bar], kalman: list[KalmanState]
    ) -> None:
        """Compile (or load) every kernel and continue the analytics from stored bars."""
        started = time.perf_counter()
        warm_up()
        if analytics is None:
            return
        pair_engine.warm_up()
        count = analytics.warm_up(history, kalman)
        logger.info(
            "analytics: %d pair × timeframe tracks, warmed up from %d stored bars and %d saved "
            "Kalman states in %.2f s",
            len(analytics.engine.specs),
            count,
            len(kalman),
            time.perf_counter() - started,
        )

    def _feeds(self, pipeline: Pipeline) -> list[BinanceFeed]:
        feed = self.settings.feed
        options = FeedOptions(
            watchdog=feed.watchdog.total_seconds(),
            max_connection_age=feed.max_connection_age.total_seconds(),
            overlap=feed.overlap.total_seconds(),
            backoff_initial=feed.backoff_initial.total_seconds(),
            backoff_max=feed.backoff_max.total_seconds(),
            healthy_after=feed.healthy_after.total_seconds(),
        )
        urls = stream_urls(
            self.base_url,
            stream_names(feed.symbols, feed.stream),
            feed.effective_max_streams_per_connection,
        )
        self.feeds = [BinanceFeed(url, pipeline.on_frame, self.health, options) for url in urls]
        return self.feeds

    async def _clock_loop(self, pipeline: Pipeline, grace: int) -> None:
        """Close idle bars on the wall clock, checkpoint, and snapshot counters."""
        settings = self.settings
        checkpoint_every = settings.bars.checkpoint_interval.total_seconds()
        next_checkpoint = time.monotonic() + checkpoint_every
        next_stats = time.monotonic() + FEED_STATS_SECONDS
        next_alerts = time.monotonic() + ALERT_CLOCK_SECONDS
        while True:
            await asyncio.sleep(TICK_SECONDS)
            pipeline.advance(self.clock(), grace)
            now = time.monotonic()
            if self.alerts is not None and now >= next_alerts:
                self.alerts.stage.on_clock(self.clock())
                next_alerts = now + ALERT_CLOCK_SECONDS
            if now >= next_checkpoint:
                pipeline.checkpoint()
                if self.analytics is not None:
                    self.analytics.checkpoint()
                if self.alerts is not None:
                    self.alerts.stage.checkpoint()
                next_checkpoint = now + checkpoint_every
            if now >= next_stats:
                self._write_feed_stats()
                next_stats = now + FEED_STATS_SECONDS

    def _write_feed_stats(self) -> None:
        health = self.health
        p50, _, lag_max = health.lag.percentiles()
        assert self.writer is not None
        self.writer.put_feed_stats(
            FeedStatsRow(
                ts=self.clock(),
                source=feed_label(self.settings),
                received=health.frames,
                accepted=health.accepted,
                rejected=sum(health.rejected.values()),
                reconnects=health.reconnects,
                gaps=health.gaps,
                lag_ms_p50=None if math.isnan(p50) else p50,
                lag_ms_max=None if math.isnan(lag_max) else lag_max,
                detail={
                    "rejected": dict(health.rejected),
                    "missed_ids": health.missed_ids,
                    **{name: dict(counters()) for name, counters in health.stages.items()},
                },
            )
        )

    def _scheduler(
        self, writer: Writer, analytics: AnalyticsStage | None, adf_worker: Executor
    ) -> AsyncIOScheduler:
        """Schedule the retention sweep and the ADF refreshes (APScheduler, on this loop)."""
        retention = self.settings.storage.retention
        scheduler = AsyncIOScheduler(timezone="UTC")

        def sweep() -> None:
            now = self.clock()
            for table, keep in (
                ("ticks", retention.ticks),
                ("gaps", retention.gaps),
                ("feed_stats", retention.feed_stats),
                ("alert_events", retention.alerts),
                ("outbox", retention.alerts),
                ("silences", retention.alerts),
            ):
                if keep is not None:
                    writer.purge(table, now - _ms(keep))
            # Analytics rows live as long as the bars they were computed on.
            for timeframe, keep in retention.bars.items():
                if keep is not None:
                    for table in ("bars", "analytics", "symbol_analytics"):
                        writer.purge(table, now - _ms(keep), timeframe)

        scheduler.add_job(
            sweep, "interval", seconds=retention.sweep_interval.total_seconds(), id="retention"
        )
        sweep()
        if analytics is not None:
            first = datetime.now(UTC)
            for every_ms, tracks in adf_schedule(analytics.engine.specs).items():
                scheduler.add_job(
                    analytics.refresh_adf,
                    "interval",
                    args=(tracks, self.clock, adf_worker),
                    seconds=every_ms / 1000,
                    next_run_time=first,  # at once: the warm-up may have filled the lookback
                    id=f"adf-{every_ms}ms",
                    max_instances=1,
                    coalesce=True,
                    misfire_grace_time=None,
                )
        return scheduler
