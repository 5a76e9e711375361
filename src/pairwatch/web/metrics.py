"""Prometheus metrics and the /healthz decision, read from a running daemon at request time.

Nothing here is on the hot path: the stages keep plain counters, and a scrape reads them
on the daemon's event loop (attribute and dict reads; the lag percentiles take the 4,096
samples of the window) — the page process asks for it (``answers.Answers``).
The outbox's undelivered rows are the one value kept only in SQLite: ``Metrics.render``
counts them in a worker thread before it formats the page.

The /healthz decision is in ``web/health.py``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from pairwatch import __version__
from pairwatch.daemon.alert_rows import pending_counts
from pairwatch.daemon.health import LagWindow
from pairwatch.daemon.store import open_store
from pairwatch.errors import StoreError

if TYPE_CHECKING:
    from pairwatch.daemon.service import Daemon

logger = logging.getLogger(__name__)


LAG_QUANTILES = (("0.5", 0), ("0.99", 1), ("1", 2))
"""``quantile`` label → index in ``LagWindow.percentiles()`` (p50, p99, max)."""

WRITER_TABLES = {
    "bars": "bars_written",
    "ticks": "ticks_written",
    "gaps": "gaps_written",
    "symbol_state": "states_written",
    "feed_stats": "feed_stats_written",
    "analytics": "analytics_written",
    "symbol_analytics": "symbol_analytics_written",
    "kalman_state": "kalman_states_written",
    "alert_events": "alert_events_written",
    "outbox": "outbox_written",
    "alert_state": "alert_states_written",
}
"""``table`` label → the writer's counter of rows written there."""

MQTT_COUNTERS = {
    "connects": "pairwatch_mqtt_connects_total",
    "connect_failures": "pairwatch_mqtt_connect_failures_total",
    "connections_lost": "pairwatch_mqtt_connections_lost_total",
    "published": "pairwatch_mqtt_published_total",
    "coalesced": "pairwatch_mqtt_coalesced_total",
    "dropped": "pairwatch_mqtt_dropped_total",
}
"""The MQTT link's and publisher's counters → metric names."""


Row = tuple[str, str, float]
"""(metric name, help text, value)."""


def _counters(rows: Iterable[Row]) -> Iterator[Metric]:
    for name, doc, value in rows:
        yield CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float, unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value, unit=unit)


def _by(
    kind: type[CounterMetricFamily | GaugeMetricFamily],
    name: str,
    doc: str,
    label: str,
    values: Mapping[str, float],
) -> Metric:
    """Return one family with a sample per ``label`` value (in sorted order)."""
    family = kind(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _quantiles(name: str, doc: str, window: LagWindow, per_second: float) -> Metric:
    """A gauge of ``window``'s p50, p99 and max in seconds (no sample while it is empty)."""
    family = GaugeMetricFamily(name, doc, labels=["quantile"], unit="seconds")
    percentiles = window.percentiles()
    if not math.isnan(percentiles[0]):
        for label, i in LAG_QUANTILES:
            family.add_metric([label], percentiles[i] / per_second)
    return family


class Collector:
    """Read a daemon's counters as Prometheus metric families, at scrape time.

    Call ``collect`` on the event loop (the stages' dicts are only changed there). A stage
    the daemon has not built yet (before start-up, or disabled) yields nothing.
    """

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self.outbox_pending: Mapping[str, int] | None = None
        """Undelivered outbox rows per notifier, as last read from the store (None: not
        read, or the read failed)."""

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family of the daemon."""
        yield from self._process()
        yield from self._feed()
        yield from self._writer()
        yield from self._analytics()
        yield from self._alerts()
        yield from self._notifiers()
        yield from self._mqtt()

    def _process(self) -> Iterator[Metric]:
        daemon = self._daemon
        feed = daemon.settings.feed
        yield InfoMetricFamily("pairwatch_build", "The running version.", {"version": __version__})
        yield _gauge("pairwatch_start_time_seconds", "When the daemon started (Unix time).",
                     daemon.health.started_at, "seconds")  # fmt: skip
        yield _gauge("pairwatch_ready", "1 once start-up finished.", float(daemon.ready.is_set()))
        yield InfoMetricFamily("pairwatch_feed", "Where trades come from.",
            {"source": feed.source, "market": feed.market, "stream": feed.stream})  # fmt: skip

    def _feed(self) -> Iterator[Metric]:
        daemon = self._daemon
        h = daemon.health
        yield from _counters((
            ("pairwatch_frames_received_total", "Frames received (any kind).", h.frames),
            ("pairwatch_trades_accepted_total", "Trades validated, deduplicated and binned.",
             h.accepted),
            ("pairwatch_feed_connects_total", "Connections opened.", h.connects),
            ("pairwatch_feed_reconnects_total",
             "Connections replaced (after a drop, or a planned rotation).", h.reconnects),
            ("pairwatch_feed_gaps_total", "Gaps detected in trade ids.", h.gaps),
            ("pairwatch_feed_missed_ids_total", "Trade ids missing in those gaps.", h.missed_ids),
            ("pairwatch_bars_closed_total", "Bars closed (all timeframes).", h.bars_closed),
        ))  # fmt: skip
        yield _by(CounterMetricFamily, "pairwatch_rejects_total",
                  "Frames and trades rejected, by reason.", "reason", h.rejected)  # fmt: skip
        yield _gauge("pairwatch_feed_connections_open", "Connections open now.", h.connections_open)
        yield _by(
            GaugeMetricFamily, "pairwatch_feed_connection_up",
            "1 while the connection (by index) is open.", "connection",
            {str(i): float(f.connected.is_set()) for i, f in enumerate(daemon.feeds)},
        )  # fmt: skip
        yield _quantiles(
            "pairwatch_feed_lag_seconds",
            "Receive time minus exchange time over the last 4,096 accepted trades "
            "(quantile 1 is the maximum).",
            h.lag,
            per_second=1_000,  # ms; no trade yet: no samples
        )
        yield _quantiles(
            "pairwatch_event_loop_lag_seconds",
            "How late the daemon's event loop wakes from a 50 ms sleep, over the last minute "
            "(quantile 1 is the maximum).",
            h.loop_lag,
            per_second=1_000_000,  # µs; not measured yet: no samples
        )
        yield _by(
            GaugeMetricFamily, "pairwatch_last_trade_timestamp_seconds",
            "When the symbol's last accepted trade was received (Unix time).", "symbol",
            {s: t.ts_recv / 1000 for s, t in h.last_trade.items()},
        )  # fmt: skip
        yield _by(
            GaugeMetricFamily, "pairwatch_queue_depth", "Items waiting in each queue "
            "(writer: rows not yet committed; mqtt: topics not yet published).", "queue",
            {name: depth() for name, depth in h.queue_depths.items()},
        )  # fmt: skip

    def _writer(self) -> Iterator[Metric]:
        w = self._daemon.writer
        if w is None:
            return
        yield _gauge("pairwatch_writer_healthy",
                     "1 while the store writer runs and its last write succeeded.",
                     float(w.healthy))  # fmt: skip
        yield _by(
            CounterMetricFamily, "pairwatch_writer_rows_written_total",
            "Rows written to SQLite, by table (bars: closed and checkpointed open bars).",
            "table", {table: getattr(w, attr) for table, attr in WRITER_TABLES.items()},
        )  # fmt: skip
        yield from _counters((
            ("pairwatch_writer_rows_purged_total", "Rows deleted by retention.", w.rows_purged),
            ("pairwatch_writer_transactions_total", "Transactions committed.", w.transactions),
            ("pairwatch_writer_delivery_outcomes_total",
             "Delivery outcomes recorded on outbox rows.", w.deliveries_written),
            ("pairwatch_writer_errors_total",
             "Write attempts that failed and are retried (disk full, locked…).", w.errors),
            ("pairwatch_writer_rows_dropped_total",
             "Rows of batches that failed with an error a retry cannot fix.", w.rows_dropped),
            ("pairwatch_writer_ticks_dropped_total",
             "Raw trades refused because the tick queue was full.", w.ticks_dropped),
        ))  # fmt: skip
        if w.last_commit_at is not None:
            yield _gauge("pairwatch_writer_last_commit_timestamp_seconds",
                         "When the writer last committed (Unix time).",
                         w.last_commit_at / 1000, "seconds")  # fmt: skip

    def _analytics(self) -> Iterator[Metric]:
        a = self._daemon.analytics
        if a is None:
            return
        counts = a.engine.counters()
        yield _by(CounterMetricFamily, "pairwatch_analytics_snapshots_total",
                  "Analytics updates: snapshots computed, by kind.", "kind",
                  {"pair": a.pair_snapshots, "symbol": a.symbol_snapshots})  # fmt: skip
        yield _by(CounterMetricFamily, "pairwatch_analytics_bars_total",
                  "Closed bars taken per pair and timeframe, by outcome (unaligned: dropped).",
                  "outcome", {k: counts[k] for k in ("aligned", "thin", "unaligned")})  # fmt: skip
        yield from _counters((
            ("pairwatch_analytics_adf_refreshes_total", "Engle-Granger tests recomputed.",
             a.adf_refreshes),
            ("pairwatch_analytics_adf_failures_total", "Engle-Granger refreshes that failed.",
             a.adf_failures),
            ("pairwatch_analytics_errors_total",
             "Analytics failures (bars skipped, listeners failed).", a.errors),
        ))  # fmt: skip

    def _alerts(self) -> Iterator[Metric]:
        alerts = self._daemon.alerts
        if alerts is None:
            return
        stage = alerts.stage
        c = stage.counters()
        phases = Counter({"inactive": 0, "pending": 0, "firing": 0})
        phases.update(s.phase for s in stage.engine.states.values())
        yield _gauge("pairwatch_alert_rules", "Rules loaded.", c["rules"])
        yield _by(GaugeMetricFamily, "pairwatch_alerts", "Alerts (rule × target) by state.",
                  "state", phases)  # fmt: skip
        yield from _counters((
            ("pairwatch_alert_evaluations_total", "Rule evaluations.", c["evaluations"]),
            ("pairwatch_alert_events_total", "Alert events (state changes, repeats).",
             c["events"]),
            ("pairwatch_alert_notifications_total", "Notifications written to the outbox.",
             c["notifications"]),
            ("pairwatch_alert_events_silenced_total", "Events held by a silence.", c["silenced"]),
            ("pairwatch_rules_reloads_total", "Rules files reloaded.", c["reloads"]),
            ("pairwatch_rules_reload_failures_total",
             "Reloads refused (invalid file: the previous rules kept running).",
             c["reload_failures"]),
            ("pairwatch_alert_errors_total", "Failures in the alert stage.", c["errors"]),
        ))  # fmt: skip

    def _notifiers(self) -> Iterator[Metric]:
        alerts = self._daemon.alerts
        if alerts is None:
            return
        counters = alerts.dispatcher.counters()
        for attr, name, doc in (
            ("delivered", "pairwatch_notifier_deliveries_total", "Notifications delivered."),
            ("retried", "pairwatch_notifier_retries_total", "Failed attempts to be retried."),
            ("failed", "pairwatch_notifier_failures_total",
             "Notifications given up (refused for good, or unreadable)."),
            ("backlog", "pairwatch_notifier_backlog",
             "Rows the delivery worker holds and has not finished."),
        ):  # fmt: skip
            kind = GaugeMetricFamily if attr == "backlog" else CounterMetricFamily
            values = {n: float(getattr(c, attr)) for n, c in counters.items()}
            yield _by(kind, name, doc, "notifier", values)
        pending = self.outbox_pending
        if pending is not None:
            yield _by(
                GaugeMetricFamily, "pairwatch_outbox_pending",
                "Outbox rows not yet delivered nor given up (read from the store).",
                "notifier", {**dict.fromkeys(counters, 0), **pending},
            )  # fmt: skip

    def _mqtt(self) -> Iterator[Metric]:
        mqtt = self._daemon.mqtt
        if mqtt is None:
            return
        values = {**mqtt.link.counters(), **mqtt.publisher.counters()}
        yield _gauge("pairwatch_mqtt_connected", "1 while connected to the broker.",
                     values["connected"])  # fmt: skip
        yield from _counters(
            (name, f"MQTT: {key.replace('_', ' ')}.", values[key])
            for key, name in MQTT_COUNTERS.items()
        )


class Metrics:
    """The daemon's ``/metrics`` page, on a registry of its own (never the global one)."""

    def __init__(self, daemon: Daemon, *, process: bool = True) -> None:
        self.collector = Collector(daemon)
        self.registry = CollectorRegistry()
        self.registry.register(self.collector)
        if process:  # process_* (CPU, memory, open files) of this process, where supported
            ProcessCollector(registry=self.registry)
        self._daemon = daemon
        self._read_error: str | None = None

    async def render(self) -> bytes:
        """Read the outbox's pending rows in a worker, then return the page (text format).

        Call on the daemon's loop."""
        self.collector.outbox_pending = await asyncio.to_thread(self._read_pending)
        text: bytes = generate_latest(self.registry)
        return text

    def _read_pending(self) -> dict[str, int] | None:
        db = self._daemon.settings.db_path
        try:
            conn = open_store(db, readonly=True, busy_timeout_ms=1000)
            try:
                counts = pending_counts(conn)
            finally:
                conn.close()
        except (StoreError, sqlite3.Error) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if error != self._read_error:  # once per distinct error, not once per scrape
                logger.warning("metrics: cannot count the pending outbox rows: %s", error)
            self._read_error = error
            return None
        self._read_error = None
        return counts
