"""The daemon's lifecycle: startup → run until stopped → graceful shutdown.

Startup opens (and migrates) the store, restores the restart point (last ids, open
bars), starts the writer thread, the feed connections, the bar clock and the retention
scheduler. Shutdown stops the feeds first, checkpoints open bars and last ids, then
flushes and closes the writer: every trade received before the signal is in SQLite.

Each resource is released by the ``AsyncExitStack`` of the run in the reverse order of
its acquisition, so a start that fails part-way (an invalid rules file, a store that
cannot be opened) still closes the notifiers, the writer and the workers it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from pairwatch import __version__
from pairwatch.config.settings import Settings
from pairwatch.daemon.alert_service import AlertRuntime
from pairwatch.daemon.analytics import AnalyticsStage, pair_specs
from pairwatch.daemon.bot_backend import DaemonBackend
from pairwatch.daemon.hangup import HangupReload
from pairwatch.daemon.health import Health
from pairwatch.daemon.loop_monitor import watch_loop
from pairwatch.daemon.maintenance import (
    checkpoint_delay,
    feed_stats_row,
    schedule_upkeep,
    stop_scheduler,
)
from pairwatch.daemon.mqtt_service import MqttRuntime
from pairwatch.daemon.notifier_setup import open_notifiers, start_notifiers
from pairwatch.daemon.pipeline import Pipeline
from pairwatch.daemon.sdnotify import Systemd, status_line
from pairwatch.daemon.sources.binance import BinanceFeed, FeedOptions, stream_names, stream_urls
from pairwatch.daemon.startup import (
    builtin_simulator,
    feed_label,
    load_restart_point,
    resumable,
    warm_up_analytics,
)
from pairwatch.daemon.web_setup import WebProcess, open_web
from pairwatch.daemon.writer import Writer
from pairwatch.errors import PairwatchError

logger = logging.getLogger(__name__)

Clock = Callable[[], int]
"""Returns the wall clock in epoch ms; tests inject their own."""

TICK_SECONDS = 0.25
FEED_STATS_SECONDS = 60.0
ALERT_CLOCK_SECONDS = 1.0
"""Rules on health values and stale targets are evaluated this often."""
SWITCH_INTERVAL_S = 0.001
"""The GIL switch interval while the daemon runs (Python's default is 5 ms).

The event loop and the store writer thread share the GIL: the writer gives it up around
every SQLite statement and waits to get it back, and at a bar close the loop is busy, so
each statement of an alert's transaction waited up to one interval. At 1 ms the bar close
→ MQTT publish p99 of ``benchmarks/fanout.py`` went from 32.6 to 27.5 ms and from 36.2 to
29.7 ms (two A/B series of 3 runs each).
"""


def wall_clock_ms() -> int:
    """Return the wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


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
        self.web: WebProcess | None = None
        """The web page's process, where it listens (None when ``web.enabled`` is false)."""
        self.ready = asyncio.Event()
        self.base_url = settings.feed.stream_url_base
        self.systemd = Systemd.from_environ()
        """READY/STATUS/WATCHDOG/STOPPING to systemd (a no-op without ``$NOTIFY_SOCKET``)."""

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
        async with contextlib.AsyncExitStack() as stack:
            # Each release is pushed as its resource is acquired; they run in reverse order,
            # after a failed start as at shutdown: what is pushed first is released last.
            stack.callback(sys.setswitchinterval, sys.getswitchinterval())
            sys.setswitchinterval(SWITCH_INTERVAL_S)
            writer = self.writer = Writer(
                settings.db_path,
                batch_max_rows=settings.storage.batch_max_rows,
                max_size=settings.storage.max_size,
            )
            hangup = HangupReload(self.systemd)
            stack.callback(hangup.remove)  # last: SIGHUP's default action would end the process
            stack.callback(self.systemd.close)
            stack.push_async_callback(self._close_writer, writer)
            stack.callback(self._final_checkpoint)  # a no-op unless the pipeline was built
            adf_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adf")
            stack.callback(adf_worker.shutdown, wait=False, cancel_futures=True)
            scheduler = AsyncIOScheduler(timezone="UTC")
            stack.callback(stop_scheduler, scheduler)
            specs = pair_specs(settings)
            analytics = self.analytics = AnalyticsStage(specs, writer) if specs else None
            backend = self.backend = DaemonBackend(self, self.clock)
            stack.callback(backend.close)  # after the notifiers: the bot's commands read it
            mqtt = self.mqtt = MqttRuntime(settings, self.health) if settings.mqtt.enabled else None
            notifiers = await stack.enter_async_context(
                open_notifiers(settings, backend, mqtt.link if mqtt else None)
            )  # stopped after delivery stopped
            alerts = self.alerts = AlertRuntime(
                settings, writer, self.health, clock=self.clock, notifiers=notifiers
            )
            pipeline = await self._start_pipeline(writer, analytics, alerts, mqtt)
            schedule_upkeep(scheduler, settings, writer, analytics, self.clock, adf_worker)
            tasks: list[asyncio.Task[Any]] = []
            stack.push_async_callback(self._stop_tasks, tasks)
            tasks.extend(
                asyncio.create_task(f.run(), name=f"feed-{i}")
                for i, f in enumerate(self._feeds(pipeline))
            )
            grace = _ms(settings.bars.grace)
            tasks.append(asyncio.create_task(self._clock_loop(pipeline, grace), name="bar-clock"))
            await start_notifiers(notifiers)
            self.web = await stack.enter_async_context(open_web(self))
            tasks.append(asyncio.create_task(alerts.run(), name="alerts"))
            if mqtt is not None:
                tasks.append(asyncio.create_task(mqtt.run(), name="mqtt-publish"))
            hangup.install(alerts.request_reload, alerts.reloaded if alerts.path else None)
            scheduler.start()
            logger.info(
                "pairwatch %s running: %d symbols, timeframes %s, db %s",
                __version__,
                len(settings.feed.symbols),
                ",".join(label for label, _ in settings.bars.timeframe_lengths),
                settings.db_path,
            )
            # What start-up made (settings, rules, warm-up history, imports) lives as long
            # as the daemon: out of the collector's sight, a full collection no longer
            # walks it (it stalled the loop ~90 ms at a time, delaying alerts).
            gc.freeze()
            self.ready.set()
            tasks.extend(self.systemd.ready(self._status_line, self._unhealthy))
            tasks.append(asyncio.create_task(watch_loop(self.health.loop_lag), name="loop-lag"))
            await self._until_stopped(stop, tasks)
        unwritten = writer.queue_depth + writer.rows_dropped
        if unwritten:
            raise PairwatchError(
                f"{unwritten} rows could not be written to {settings.db_path}: see the log above"
            )

    async def _start_pipeline(
        self,
        writer: Writer,
        analytics: AnalyticsStage | None,
        alerts: AlertRuntime,
        mqtt: MqttRuntime | None,
    ) -> Pipeline:
        """Continue from the restart point: warm up, start the writer, build the pipeline."""
        settings = self.settings
        feed = settings.feed
        lengths = dict(settings.bars.timeframe_lengths)
        grace = _ms(settings.bars.grace)
        now = self.clock()
        restart = await asyncio.to_thread(
            load_restart_point, settings, now - grace, analytics, alerts
        )
        await asyncio.to_thread(warm_up_analytics, analytics, restart)
        writer.start()
        if analytics is not None:
            analytics.add_listener(alerts.stage.on_snapshots)
            if mqtt is not None:
                analytics.add_listener(mqtt.publisher.on_snapshots)
        if analytics is not None and restart.finalized:
            # Bars left open at the last stop and closed at this start were never handed on:
            # their snapshots are computed (and stored) now, after the warm-up's bars.
            analytics.on_bars(restart.finalized)
        self.health.queue_depths["writer"] = lambda: writer.queue_depth
        pipeline = self.pipeline = Pipeline(
            symbols=feed.symbols,
            timeframes=settings.bars.timeframe_lengths,
            market=feed_label(settings),
            stream=feed.stream,
            writer=writer,
            health=self.health,
            fill=settings.bars.fill,
            max_fill_ms=settings.bars.max_fill_ms,
            max_skew_ms=_ms(feed.max_clock_skew),
            store_ticks=settings.storage.store_ticks,
            last_ids=restart.last_ids,
        )
        pipeline.resume(resumable(restart.latest, lengths, now, grace))
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
        return pipeline

    @staticmethod
    async def _until_stopped(stop: asyncio.Event, tasks: list[asyncio.Task[Any]]) -> None:
        """Wait for ``stop``; raise the error of a task that ended before it."""
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({stopped, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        for task in done:
            if task is not stopped and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _stop_tasks(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Stop the feeds first (nothing new after this), send the last snapshots, end the rest."""
        logger.info("shutting down")
        self.systemd.stopping()
        if self.backend is not None:
            self.backend.closing = True  # bot commands that write are refused from now
        for task in tasks[: len(self.feeds)]:
            task.cancel()
        if self.mqtt is not None:
            await self.mqtt.flush(2.0)  # the last snapshots out while the link is up
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _final_checkpoint(self) -> None:
        """Write this run's final counters and checkpoint every stage, once the pipeline ran."""
        if self.pipeline is None:
            return  # the start failed before: nothing ran, nothing to keep
        self._write_feed_stats()
        self.pipeline.checkpoint()
        if self.analytics is not None:
            self.analytics.checkpoint()
        if self.alerts is not None:
            self.alerts.stage.checkpoint(final=True)

    async def _close_writer(self, writer: Writer) -> None:
        """Write what is queued and close the store (give up after 30 s)."""
        await asyncio.to_thread(writer.close, 30.0)
        logger.info(
            "stopped: %d trades accepted, %d bars closed, %d bar rows written",
            self.health.accepted,
            self.health.bars_closed,
            writer.bars_written,
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
        next_checkpoint = time.monotonic() + checkpoint_delay(self.clock(), checkpoint_every)
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
                next_checkpoint = now + checkpoint_delay(self.clock(), checkpoint_every)
            if now >= next_stats:
                self._write_feed_stats()
                next_stats = now + FEED_STATS_SECONDS

    def _status_line(self) -> str:
        firing = self.alerts.stage.counters()["firing"] if self.alerts is not None else 0
        return status_line(self.health, len(self.feeds), firing)

    def _unhealthy(self) -> str | None:
        """Return why systemd's watchdog must not be pinged: the store writer's thread died."""
        writer = self.writer
        # A write failing and being retried (disk full) keeps pinging: the daemon rides it
        # out. Only a stopped thread is fatal.
        if writer is None or not writer.alive:
            return "the store writer thread has stopped"
        return None

    def _write_feed_stats(self) -> None:
        assert self.writer is not None
        row = feed_stats_row(self.health, feed_label(self.settings), self.clock())
        self.writer.put_feed_stats(row)
