"""MQTT in the running daemon: the link, the analytics publisher, Home Assistant discovery.

One ``MqttLink`` (connection, reconnects, status and last will) serves both the ``mqtt``
notifier (alerts from the outbox) and the ``MqttPublisher`` (retained analytics snapshots,
bars). The series announced to Home Assistant are kept in ``meta`` (``mqtt_discovery``) so
the sensors of a pair removed from the settings are removed at the next start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path

from pairwatch.config.settings import Settings
from pairwatch.daemon.health import Health
from pairwatch.daemon.store import open_store
from pairwatch.notifiers.mqtt import MqttLink
from pairwatch.notifiers.mqtt_format import Series, configured_series
from pairwatch.notifiers.mqtt_publish import MqttPublisher

logger = logging.getLogger(__name__)

DISCOVERY_KEY = "mqtt_discovery"
"""``meta`` key of the series last announced to Home Assistant (a JSON list)."""


def announced(conn: sqlite3.Connection) -> list[Series]:
    """Return the series announced to Home Assistant by the last run (none if unreadable)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (DISCOVERY_KEY,)).fetchone()
    if row is None:
        return []
    try:
        return [Series.from_json(item) for item in json.loads(row[0])]
    except (ValueError, TypeError) as exc:
        logger.warning("meta %s is unreadable (%s): no sensors removed", DISCOVERY_KEY, exc)
        return []


class MqttRuntime:
    """The daemon's MQTT publishing; ``link`` is also the ``mqtt`` notifier's connection."""

    def __init__(self, settings: Settings, health: Health) -> None:
        self.settings = settings
        self.link = MqttLink(settings.mqtt)
        self.publisher = MqttPublisher(self.link)
        self.previous: list[Series] = []
        health.stages["mqtt"] = lambda: {**self.link.counters(), **self.publisher.counters()}
        health.queue_depths["mqtt"] = lambda: self.publisher.pending

    async def run(self) -> None:
        """Publish until cancelled; announce (or remove) Home Assistant sensors first."""
        settings = self.settings
        timeframes = [t for t, _ in settings.bars.timeframe_lengths]
        current = configured_series(settings.pairs, timeframes, settings.mqtt.pairs)
        current = current if settings.mqtt.ha_discovery else []
        remember = None
        if current or self.previous:
            self.publisher.announce(current, self.previous)
            remember = asyncio.create_task(self._remember(current), name="mqtt-discovery")
        try:
            await self.publisher.run()
        finally:
            if remember is not None:
                remember.cancel()

    async def flush(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        """Send what is pending (at shutdown, after the feeds stopped)."""
        await self.publisher.flush(timeout)

    async def _remember(self, current: list[Series]) -> None:
        await self.publisher.discovery_sent.wait()
        value = json.dumps([s.to_json() for s in current])
        await asyncio.to_thread(_put_meta, self.settings.db_path, DISCOVERY_KEY, value)


def _put_meta(db: Path, key: str, value: str) -> None:
    conn = open_store(db)
    try:
        with conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
    finally:
        conn.close()
