"""MQTT in the running daemon: the link, the analytics publisher, the retained-topic ledger.

One ``MqttLink`` (connection, reconnects, status and last will) serves both the ``mqtt``
notifier (alerts from the outbox) and the ``MqttPublisher`` (retained analytics snapshots,
bars, Home Assistant discovery).

A retained message outlives pairwatch: the broker keeps it until an empty retained payload
clears it. So every retained topic pairwatch may publish is kept in ``meta`` as a JSON list:
the Home Assistant config topics under ``mqtt_discovery``, the status and snapshot topics
under ``mqtt_retained``. At start, before anything retained is published, each row becomes
old ∪ new (write-ahead); then the topics of the old set that are not in the new one are
cleared, and only once the broker acknowledged every clearing does the row become the new
set. A stop at any point leaves the rows a superset of what this and earlier runs left on
the broker, so a topic is never forgotten: the next start clears what is still stale.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Final

from pairwatch.config.settings import Settings
from pairwatch.daemon.health import Health
from pairwatch.daemon.store import open_store
from pairwatch.errors import StoreError
from pairwatch.notifiers.mqtt import MqttLink
from pairwatch.notifiers.mqtt_format import (
    Series,
    configured_series,
    discovery_topics,
    snapshot_topics,
    status_topic,
)
from pairwatch.notifiers.mqtt_publish import MqttPublisher

logger = logging.getLogger(__name__)

DISCOVERY_KEY: Final = "mqtt_discovery"
"""``meta`` key of the Home Assistant config topics announced (a JSON list of topics)."""

RETAINED_KEY: Final = "mqtt_retained"
"""``meta`` key of the status and snapshot topics published retained (a JSON list)."""

Ledger = Mapping[str, Collection[str]]
"""``meta`` key → retained topics."""


def planned(settings: Settings) -> tuple[list[Series], dict[str, frozenset[str]]]:
    """Return the series announced to Home Assistant and the retained topics of this run."""
    mqtt = settings.mqtt
    timeframes = [t for t, _ in settings.bars.timeframe_lengths]
    every = configured_series(settings.pairs, timeframes)
    announced_now = configured_series(settings.pairs, timeframes, mqtt.pairs)
    announced_now = announced_now if mqtt.ha_discovery else []
    retained = {status_topic(mqtt.topic_prefix)}
    if mqtt.publish_analytics:
        retained |= snapshot_topics(mqtt.topic_prefix, every, mqtt.pairs)
    configs = discovery_topics(mqtt.discovery_prefix, announced_now)
    return announced_now, {DISCOVERY_KEY: frozenset(configs), RETAINED_KEY: frozenset(retained)}


def recorded(conn: sqlite3.Connection, key: str, discovery_prefix: str) -> set[str]:
    """Return the retained topics kept under ``key`` (none, with a warning, if unreadable).

    An ``mqtt_discovery`` row written before topics were kept holds series
    (``[y, x, timeframe, window]``): their config topics under ``discovery_prefix``.
    """
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if row is None:
        return set()
    try:
        items = json.loads(row[0])
        if not isinstance(items, list):
            raise TypeError(f"a list was expected, got {type(items).__name__}")
        topics = {item for item in items if isinstance(item, str)}
        old = [Series.from_json(item) for item in items if not isinstance(item, str)]
        return topics | discovery_topics(discovery_prefix, old)
    except (ValueError, TypeError) as exc:
        logger.warning("meta %s is unreadable (%s): its retained topics are not cleared", key, exc)
        return set()


def record_ahead(db: Path, wanted: Ledger, discovery_prefix: str) -> dict[str, set[str]]:
    """Keep old ∪ ``wanted`` under each key, in one transaction; return the old topics."""
    conn = open_store(db)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            old = {key: recorded(conn, key, discovery_prefix) for key in wanted}
            for key, topics in wanted.items():
                _put(conn, key, old[key].union(topics))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return old
    finally:
        conn.close()


def record(db: Path, topics: Ledger) -> None:
    """Keep exactly ``topics`` under each key (once every stale topic was cleared)."""
    conn = open_store(db)
    try:
        with conn:
            for key, value in topics.items():
                _put(conn, key, value)
    finally:
        conn.close()


def _put(conn: sqlite3.Connection, key: str, topics: Collection[str]) -> None:
    value = json.dumps(sorted(topics))
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


class MqttRuntime:
    """The daemon's MQTT publishing; ``link`` is also the ``mqtt`` notifier's connection.

    The link is started and closed by the ``mqtt`` notifier; ``run()`` records the retained
    topics (see the module docstring), announces the Home Assistant sensors, clears what is
    stale and publishes until cancelled.
    """

    def __init__(self, settings: Settings, health: Health) -> None:
        self.settings = settings
        self.link = MqttLink(settings.mqtt)
        self.publisher = MqttPublisher(self.link)
        self.recorded = asyncio.Event()
        """Set once this run's topics are kept in ``meta``: retained values may go out."""
        self.settled = asyncio.Event()
        """Set once nothing stale is left: ``meta`` holds exactly this run's topics."""
        health.stages["mqtt"] = lambda: {**self.link.counters(), **self.publisher.counters()}
        health.queue_depths["mqtt"] = lambda: self.publisher.pending

    async def run(self) -> None:
        """Record the retained topics, announce and clear, then publish until cancelled."""
        settings = self.settings
        series, wanted = planned(settings)
        prefix = settings.mqtt.discovery_prefix
        try:
            old = await asyncio.to_thread(record_ahead, settings.db_path, wanted, prefix)
        except (sqlite3.Error, StoreError) as exc:
            logger.error(
                "cannot keep the MQTT retained topics in %s (%s): stale ones are not cleared "
                "and this run's are not remembered",
                settings.db_path, exc,
            )  # fmt: skip
            old = None
        self.recorded.set()
        stale_configs = (old or {}).get(DISCOVERY_KEY, set()) - wanted[DISCOVERY_KEY]
        stale = (old or {}).get(RETAINED_KEY, set()) - wanted[RETAINED_KEY]
        if series or stale_configs:
            self.publisher.announce(series, clear=sorted(stale_configs))
        if stale:
            self.publisher.clear(sorted(stale))
        settle = None
        if old is not None and (stale_configs or stale):
            settle = asyncio.create_task(self._settle(wanted), name="mqtt-ledger")
        else:
            self.settled.set()
        try:
            await self.publisher.run()
        finally:
            if settle is not None:
                settle.cancel()

    async def flush(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        """Send what is pending (at shutdown, after the feeds stopped)."""
        if self.recorded.is_set():  # else a retained topic could go out unrecorded
            await self.publisher.flush(timeout)

    async def _settle(self, wanted: Ledger) -> None:
        await self.publisher.discovery_sent.wait()  # every stale topic cleared and acknowledged
        await asyncio.to_thread(record, self.settings.db_path, wanted)
        self.settled.set()
