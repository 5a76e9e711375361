"""The daemon's periodic upkeep: the retention sweep, the ADF refreshes, the feed stats,
and when the periodic checkpoint is due.

The sweep and the refreshes run on an APScheduler ``AsyncIOScheduler`` on the daemon's
loop; the ADF tests themselves run in a worker (one thread: one refresh at a time).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from pairwatch.config.settings import RetentionSettings, Settings
from pairwatch.daemon.analytics import AnalyticsStage, adf_schedule
from pairwatch.daemon.health import Health
from pairwatch.daemon.writer import FeedStatsRow, Writer

HALF_SECOND_MS = 500


def checkpoint_delay(now: int, every_s: float) -> float:
    """Return the seconds from ``now`` (epoch ms) to the next periodic checkpoint.

    Checkpoints come ``every_s`` apart, each moved to the nearest half past a whole second
    (within half a second) when ``every_s`` is a second or more: bars end on whole seconds,
    and the alerts of a bar close are written right then. A checkpoint (every open bar,
    every symbol's last trade id, the Kalman and alert states) is the largest periodic
    write; at a bar close it would hold up that bar's alerts behind it.
    """
    if every_s < 1:
        return every_s
    earliest = now + every_s * 1000 - HALF_SECOND_MS
    mark = math.ceil((earliest - HALF_SECOND_MS) / 1000) * 1000 + HALF_SECOND_MS
    return (mark - now) / 1000


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


def sweep_retention(writer: Writer, retention: RetentionSettings, now: int) -> None:
    """Purge the rows older than their retention at ``now`` (epoch ms)."""
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


def schedule_upkeep(
    scheduler: AsyncIOScheduler,
    settings: Settings,
    writer: Writer,
    analytics: AnalyticsStage | None,
    clock: Callable[[], int],
    adf_worker: Executor,
) -> None:
    """Schedule the retention sweep (and sweep once now) and the ADF refreshes."""
    retention = settings.storage.retention

    def sweep() -> None:
        sweep_retention(writer, retention, clock())

    scheduler.add_job(
        sweep, "interval", seconds=retention.sweep_interval.total_seconds(), id="retention"
    )
    sweep()
    if analytics is None:
        return
    first = datetime.now(UTC)
    for every_ms, tracks in adf_schedule(analytics.engine.specs).items():
        scheduler.add_job(
            analytics.refresh_adf,
            "interval",
            args=(tracks, clock, adf_worker),
            seconds=every_ms / 1000,
            next_run_time=first,  # at once: the warm-up may have filled the lookback
            id=f"adf-{every_ms}ms",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )


def stop_scheduler(scheduler: AsyncIOScheduler) -> None:
    """Stop ``scheduler`` without waiting for running jobs; never raise (nor if not started)."""
    with contextlib.suppress(Exception):
        scheduler.shutdown(wait=False)


def feed_stats_row(health: Health, source: str, ts: int) -> FeedStatsRow:
    """Return the ``feed_stats`` row of the counters in ``health`` at ``ts``."""
    p50, _, lag_max = health.lag.percentiles()
    return FeedStatsRow(
        ts=ts,
        source=source,
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
