"""Analytics, bars and Home Assistant discovery on MQTT: latest value per topic, never a backlog.

The feed path calls ``on_snapshots`` and ``on_bars`` synchronously: they only store the
newest event per topic in a dict (O(1) per item) and wake the sender task, which
encodes and publishes what is there whenever the link is up. While the broker is down
the dict holds at most one value per topic; a value replaced before it was sent is
counted as coalesced, never sent.

Alerts go first: the sender starts once no new value came for ``settle`` seconds (at
most ``max_settle`` after the first). A bar close hands over the snapshots of its pairs
over some tens of milliseconds, and the alerts of those pairs are written and published
meanwhile on the same loop, GIL and connection; publishing ~200 retained snapshots in
that window delayed them (bar close → alert publish p99 25 ms with, 16 ms without, in
``benchmarks/fanout.py``). A retained latest value loses nothing by waiting 30 ms.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from pairwatch import __version__
from pairwatch.config.notifier_settings import MqttSettings
from pairwatch.events import Bar, PairSnapshot, SymbolSnapshot
from pairwatch.notifiers.mqtt import LinkEvent, MqttLink, MqttUnavailableError
from pairwatch.notifiers.mqtt_format import (
    Series,
    bar_payload,
    discovery_messages,
    pair_payload,
    selected_pairs,
    symbol_payload,
)

logger = logging.getLogger(__name__)

DISCOVERY_QOS: Final = 1
"""Home Assistant's retained configs and the clearing of stale retained topics are few and
matter: always acknowledged (the daemon forgets a cleared topic only once it was)."""

Latest = PairSnapshot | SymbolSnapshot | Bar

SETTLE_S: Final = 0.03
"""Quiet time after the newest value before sending (module docstring)."""
MAX_SETTLE_S: Final = 0.25
"""Longest wait for the values to settle: a stream without pauses is still sent."""


class MqttPublisher:
    """Publish retained analytics snapshots (and bars) over ``link``; see the module docstring.

    Topics: ``<prefix>/analytics/<Y>-<X>/<tf>/<window>`` and
    ``<prefix>/symbols/<SYMBOL>/<tf>/<window>`` (retained, when ``publish_analytics``),
    ``<prefix>/bars/<SYMBOL>/<tf>`` (not retained, when ``publish_bars``). With
    ``mqtt.pairs`` set, only those pairs and their legs are published.
    """

    def __init__(
        self,
        link: MqttLink,
        settings: MqttSettings | None = None,
        *,
        settle: float = SETTLE_S,
        max_settle: float = MAX_SETTLE_S,
    ) -> None:
        self._link = link
        self._settle_s = settle
        self._max_settle_s = max_settle
        settings = settings or link.settings
        self._settings = settings
        self._prefix = settings.topic_prefix
        self._qos = settings.analytics_qos
        self._analytics = settings.publish_analytics
        self._bars = settings.publish_bars
        self._pairs = selected_pairs(settings.pairs)
        self._legs = None if self._pairs is None else {s for p in self._pairs for s in p}
        self._pending: dict[str, Latest] = {}
        self._sending = 0
        self._wake = asyncio.Event()
        self._draining = asyncio.Lock()
        self._configs: dict[str, bytes] = {}
        self._removals: dict[str, None] = {}  # retained topics to clear once, in order
        self._discovery_due = False
        self._generation = 0
        self.discovery_sent = asyncio.Event()
        """Set once every discovery config given to ``announce`` and every retained topic
        to clear (``announce``'s removals, ``clear``) was sent and acknowledged."""
        self.published = 0
        self.coalesced = 0
        self.dropped = 0
        self.max_pending = 0
        link.add_listener(self._on_link)

    @property
    def pending(self) -> int:
        """Return how many topics wait to be sent (the queue depth: one per topic at most)."""
        return len(self._pending) + self._sending

    def counters(self) -> dict[str, int]:
        """Return the publisher's counters (for status and metrics)."""
        return {
            "published": self.published,
            "coalesced": self.coalesced,
            "dropped": self.dropped,
            "pending": self.pending,
            "max_pending": self.max_pending,
        }

    def on_snapshots(
        self, pairs: Sequence[PairSnapshot], symbols: Sequence[SymbolSnapshot]
    ) -> None:
        """Take a batch of snapshots (an analytics listener): keep the newest per topic."""
        if not self._analytics:
            return
        pending, prefix, chosen, legs = self._pending, self._prefix, self._pairs, self._legs
        before = len(pending)
        taken = 0
        for p in pairs:
            if p.thin or (chosen is not None and (p.y, p.x) not in chosen):
                continue  # a thin bar has no metrics: the retained value stays the last good one
            pending[f"{prefix}/analytics/{p.y}-{p.x}/{p.timeframe}/{p.window}"] = p
            taken += 1
        for s in symbols:
            if legs is not None and s.symbol not in legs:
                continue
            pending[f"{prefix}/symbols/{s.symbol}/{s.timeframe}/{s.window}"] = s
            taken += 1
        self._took(before, taken)

    def on_bars(self, bars: Sequence[Bar]) -> None:
        """Take a batch of closed bars (a pipeline sink): keep the newest per topic."""
        if not self._bars:
            return
        pending, prefix, legs = self._pending, self._prefix, self._legs
        before = len(pending)
        taken = 0
        for b in bars:
            if not b.closed or (legs is not None and b.symbol not in legs):
                continue
            pending[f"{prefix}/bars/{b.symbol}/{b.timeframe}"] = b
            taken += 1
        self._took(before, taken)

    def announce(
        self,
        current: Sequence[Series],
        previous: Sequence[Series] = (),
        *,
        clear: Iterable[str] = (),
    ) -> None:
        """Announce ``current`` to Home Assistant and remove the sensors of the rest.

        ``previous`` is what was announced last time; the sensors of a series in it and not
        in ``current`` get an empty retained config, which deletes them. ``clear`` names
        more config topics to delete (the daemon keeps the topics it announced). Configs are
        sent again after every reconnect (a broker without persistence forgets them);
        removals only until sent once.
        """
        configs, removals = discovery_messages(
            current,
            previous,
            prefix=self._prefix,
            discovery_prefix=self._settings.discovery_prefix,
            version=__version__,
        )
        self._configs = configs
        waiting = (*self._removals, *removals, *clear)
        self._removals = {topic: None for topic in waiting if topic not in configs}
        self._due()

    def clear(self, topics: Iterable[str]) -> None:
        """Clear retained ``topics`` once (an empty retained payload at QoS 1).

        For the topics of series no longer published: the broker would otherwise keep their
        last value forever. Never give a topic that is still published.
        """
        self._removals.update(dict.fromkeys(topics))
        self._due()

    def _due(self) -> None:
        self._generation += 1
        self.discovery_sent.clear()
        self._discovery_due = True
        self._wake.set()

    async def run(self) -> None:
        """Send what is pending whenever the link is up, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._link.connected:
                continue  # woken again by the link's next "connected"
            await self._settle()
            try:
                if self._discovery_due:
                    await self._send_discovery()
                await self._drain()
            except MqttUnavailableError as exc:
                logger.debug("MQTT publishing paused: %s", exc)
            except Exception:  # a bug: shown with its traceback; the next wake-up tries again
                logger.exception("MQTT publishing failed")

    async def flush(self, timeout: float = 2.0) -> bool:  # noqa: ASYNC109
        """Send what is pending now (e.g. before shutdown); return whether all was sent."""
        try:
            async with asyncio.timeout(timeout):
                await self._drain()
        except (TimeoutError, MqttUnavailableError):
            return False
        return not self._pending

    async def _settle(self) -> None:
        """Return once no value came for ``settle`` seconds, or ``max_settle`` passed.

        ``_wake`` is cleared as it is waited on: every value taken sets it again.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_settle_s
        while (left := deadline - loop.time()) > 0:
            self._wake.clear()
            try:
                async with asyncio.timeout(min(self._settle_s, left)):
                    await self._wake.wait()
            except TimeoutError:
                return

    def _took(self, before: int, taken: int) -> None:
        if taken:
            size = len(self._pending)
            self.coalesced += taken - (size - before)
            self.max_pending = max(self.max_pending, size + self._sending)
            self._wake.set()

    def _on_link(self, event: LinkEvent) -> None:
        if event.kind == "connected":
            if self._configs:  # a broker without persistence forgot them when it restarted
                self._discovery_due = True
                self.discovery_sent.clear()
            self._wake.set()

    async def _send_discovery(self) -> None:
        generation, configs, removals = self._generation, self._configs, list(self._removals)
        for topic in removals:
            await self._link.publish(topic, b"", qos=DISCOVERY_QOS, retain=True)
            self._removals.pop(topic, None)  # acknowledged: not again after a reconnect
        for topic, payload in configs.items():
            await self._link.publish(topic, payload, qos=DISCOVERY_QOS, retain=True)
        if generation == self._generation:  # nothing new from announce() or clear() meanwhile
            self._discovery_due = False
            self.discovery_sent.set()
        if configs:
            logger.info("announced %d Home Assistant sensors", len(configs))
        if removals:
            logger.info("cleared %d retained topics of series no longer published", len(removals))

    async def _drain(self) -> None:
        """Publish every pending value; on a lost link keep the unsent ones (unless newer came)."""
        async with self._draining:
            await self._drain_pending()

    async def _drain_pending(self) -> None:
        link, qos = self._link, self._qos
        while self._pending:
            batch, self._pending = self._pending, {}
            self._sending = len(batch)
            items = iter(batch.items())
            try:
                for topic, item in items:
                    payload, retain = _encode(item)
                    try:
                        await link.publish(topic, payload, qos=qos, retain=retain)
                    except MqttUnavailableError:
                        self._requeue(topic, item, items)
                        raise
                    except ValueError as exc:  # the client refused it (e.g. a bad topic)
                        self.dropped += 1
                        logger.warning("dropped an MQTT message to %s: %s", topic, exc)
                    else:
                        self.published += 1
                    self._sending -= 1
            finally:
                self._sending = 0

    def _requeue(self, topic: str, item: Latest, rest: Iterator[tuple[str, Latest]]) -> None:
        pending = self._pending
        for t, value in ((topic, item), *rest):
            if t in pending:
                self.coalesced += 1  # a newer value came while this one was being sent
            else:
                pending[t] = value


def _encode(item: Latest) -> tuple[bytes, bool]:
    """Return the payload of a pending value and whether it is retained."""
    if isinstance(item, PairSnapshot):
        return pair_payload(item), True
    if isinstance(item, SymbolSnapshot):
        return symbol_payload(item), True
    return bar_payload(item), False
