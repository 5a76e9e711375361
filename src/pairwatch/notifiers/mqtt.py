"""The MQTT connection: one client, kept connected, that the notifier and publisher share.

``MqttLink`` runs as a task on the daemon's loop: a reconnect loop around
``aiomqtt.Client`` with jittered, capped exponential backoff (reset after a connection
that held), the last will ``<prefix>/status`` = ``offline`` (retained), and a retained
``online`` on every connect and ``offline`` on a clean shutdown. A fresh client is made
for every connection so nothing half-sent is replayed behind the outbox's back: the
outbox (alerts) and the publisher's latest values (analytics) are the only retry queues.
Publishing while the link is down fails at once with ``MqttUnavailableError``.

``MqttNotifier`` delivers outbox rows (alerts, notices) over the link; the analytics
publisher is in ``mqtt_publish``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from pairwatch.config.notifier_settings import MqttSettings
from pairwatch.daemon.alert_rows import OutboxItem
from pairwatch.errors import PairwatchError
from pairwatch.notifiers.mqtt_format import (
    OFFLINE,
    ONLINE,
    alert_payload,
    alert_topic,
    status_topic,
)
from pairwatch.notifiers.outbox import DeliveryError

logger = logging.getLogger(__name__)

OFFLINE_TIMEOUT_S = 2.0
"""How long a shutdown waits for the retained ``offline`` to be sent."""

RETRY_SOON_S = 0.5
"""Margin after the link's next connection attempt before an outbox row is tried again."""

WINDOW = 100
"""Alerts the notifier has in flight (sent, waiting for the broker's PUBACK) at once."""


class MqttUnavailableError(PairwatchError):
    """Not connected to the broker, or a publish failed or timed out."""


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """A change of the link: connected, lost, a failed attempt, or closed."""

    kind: Literal["connected", "lost", "failed", "closed"]
    error: str | None = None


LinkListener = Callable[[LinkEvent], None]


def describe(exc: BaseException) -> str:
    """Return a connection error as one line, with a hint when the settings can fix it."""
    cause = exc.__cause__  # aiomqtt's "Disconnected during message iteration" has the reason
    text = str(cause or exc) or type(cause or exc).__name__
    lowered = text.lower()
    if isinstance(exc, MqttConnectError) and ("authori" in lowered or "password" in lowered):
        return f"the broker refused the login: {text} (check mqtt.username and mqtt.password)"
    if "certificate" in lowered or "ssl" in lowered:
        return f"TLS failed: {text} (check mqtt.tls)"
    return text


class MqttLink:
    """Keep one connection to the broker and publish over it (see the module docstring)."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        reconnect_initial: float = 1.0,
        reconnect_max: float = 60.0,
        stable_after: float = 10.0,
        timeout: float = 10.0,
    ) -> None:
        if settings.host is None:
            raise ValueError("mqtt.host is not set: MQTT is not configured")
        self.settings = settings
        self.host = settings.host
        self.status_topic = status_topic(settings.topic_prefix)
        self.timeout = timeout
        self._initial = reconnect_initial
        self._max = reconnect_max
        self._stable_after = stable_after
        self._client: aiomqtt.Client | None = None
        self._lost: asyncio.Future[None] | None = None
        self._listeners: list[LinkListener] = []
        self._up = asyncio.Event()
        self._stop = asyncio.Event()
        self._done = asyncio.Event()
        self._running = False
        self._logged_error: str | None = None
        self._next_attempt: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.connects = 0
        self.failures = 0
        self.losses = 0
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        """Return whether the link is connected now (and said ``online``)."""
        return self._up.is_set()

    def add_listener(self, listener: LinkListener) -> None:
        """Call ``listener`` (on the loop, must not raise) on every ``LinkEvent``."""
        self._listeners.append(listener)

    async def wait_connected(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until connected; return ``False`` if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def retry_hint(self) -> float:
        """Return when (s from now) a failed send is worth retrying: after the next connect.

        Outbox rows are retried then instead of on the dispatcher's growing backoff, so what
        waited during an outage goes out right after the link is back.
        """
        if self._next_attempt is None:  # connecting now (or not started): soon
            return RETRY_SOON_S
        left = self._next_attempt - asyncio.get_running_loop().time()
        return max(left, 0.0) + RETRY_SOON_S

    def counters(self) -> dict[str, int]:
        """Return the link's counters (for status and metrics)."""
        return {
            "connected": int(self.connected),
            "connects": self.connects,
            "connect_failures": self.failures,
            "connections_lost": self.losses,
        }

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int,
        retain: bool,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        """Publish one message; at QoS ≥ 1 return once the broker acknowledged it.

        Raises ``MqttUnavailableError`` when not connected, when the connection is lost before
        the broker's acknowledgement, or after ``timeout`` (default: the link's).
        """
        client, lost = self._client, self._lost
        if client is None or lost is None or lost.done() or not self._up.is_set():
            why = self.last_error or ("closed" if self._stop.is_set() else "not connected yet")
            raise MqttUnavailableError(f"not connected to the MQTT broker ({why})")
        sent = asyncio.ensure_future(
            client.publish(topic, payload, qos=qos, retain=retain, timeout=math.inf)
        )
        try:
            done, _ = await asyncio.wait(
                (sent, lost), timeout=timeout or self.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            sent.cancel()
            raise
        if sent in done:
            exc = sent.exception()
            if isinstance(exc, aiomqtt.MqttError):
                raise MqttUnavailableError(f"publishing to {topic} failed: {exc}") from exc
            if exc is not None:
                raise exc
            return
        sent.cancel()
        if lost.done():
            raise MqttUnavailableError(f"the MQTT connection was lost while publishing to {topic}")
        raise MqttUnavailableError(f"publishing to {topic} timed out")

    async def run(self) -> None:
        """Stay connected until ``close()`` or cancellation; never raises otherwise."""
        loop = asyncio.get_running_loop()
        self._running = True
        self._done.clear()
        delay = self._initial
        try:
            while not self._stop.is_set():
                since: float | None = None
                try:
                    client = self._new_client()
                    async with client:
                        since = loop.time()
                        await self._connected(client)
                        await self._hold(client)
                except aiomqtt.MqttError as exc:
                    self._failed(exc, connected=since is not None)
                except (OSError, ValueError) as exc:  # e.g. an unreadable TLS file
                    self._failed(exc, connected=since is not None)
                except Exception as exc:  # a bug: shown with its traceback, the link goes on
                    logger.exception("the MQTT link failed unexpectedly")
                    self._failed(exc, connected=since is not None)
                finally:
                    self._down()
                if self._stop.is_set():
                    break
                if since is not None and loop.time() - since >= self._stable_after:
                    delay = self._initial
                wait = delay * random.uniform(0.5, 1.0)
                logger.debug("reconnecting to the MQTT broker in %.2f s", wait)
                self._next_attempt = loop.time() + wait
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), wait)
                self._next_attempt = None
                delay = min(delay * 2, self._max)
        finally:
            self._running = False
            self._done.set()
            self._emit(LinkEvent("closed"))

    async def start(self) -> None:
        """Run the link as a task of the running loop: it connects in the background."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="mqtt-link")

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Say ``offline`` (retained), disconnect cleanly and end ``run()``; never raises."""
        self._stop.set()
        if self._running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), timeout)
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def _new_client(self) -> aiomqtt.Client:
        s = self.settings
        tls_params = None
        if s.tls.enabled:
            tls_params = aiomqtt.TLSParameters(
                ca_certs=str(s.tls.ca_file) if s.tls.ca_file else None,
                certfile=str(s.tls.cert_file) if s.tls.cert_file else None,
                keyfile=str(s.tls.key_file) if s.tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client = aiomqtt.Client(
            self.host,
            s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password is not None else None,
            identifier=s.client_id,
            will=aiomqtt.Will(self.status_topic, OFFLINE, qos=s.analytics_qos, retain=True),
            keepalive=max(1, round(s.keepalive.total_seconds())),
            timeout=self.timeout,
            tls_params=tls_params,
            tls_insecure=s.tls.insecure if s.tls.enabled else None,
            # Without it a message written right after another (an alert after the
            # "online" or a snapshot) waits for the broker's delayed ACK: ~40 ms.
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
            # Alerts in flight plus QoS 1 analytics: more than paho's 20 queue behind.
            max_inflight_messages=2 * WINDOW,
        )
        client.pending_calls_threshold = 100_000  # our own queues bound what is in flight
        return client

    async def _connected(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._lost = asyncio.get_running_loop().create_future()
        await client.publish(self.status_topic, ONLINE, qos=self.settings.analytics_qos,
                             retain=True, timeout=self.timeout)  # fmt: skip
        self.connects += 1
        self._logged_error = None
        self._up.set()
        s = self.settings
        logger.info(
            "connected to the MQTT broker %s:%d as %s%s",
            self.host, s.port, s.client_id, " (TLS)" if s.tls.enabled else "",
        )  # fmt: skip
        self._emit(LinkEvent("connected"))

    async def _hold(self, client: aiomqtt.Client) -> None:
        """Return when ``close()`` asks (after saying offline); raise when the link drops."""
        lost = asyncio.ensure_future(self._until_lost(client))
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((lost, stop), return_when=asyncio.FIRST_COMPLETED)
            if lost.done():
                lost.result()  # raises the MqttError of the lost connection
            await self._say_offline(client)
        except asyncio.CancelledError:
            await self._say_offline(client)  # cancelled instead of closed: still say it
            raise
        finally:
            for task in (lost, stop):
                task.cancel()

    async def _until_lost(self, client: aiomqtt.Client) -> None:
        async for _message in client.messages:  # nothing is subscribed: ends when it drops
            pass

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        self._up.clear()  # no new publishes from here on
        try:
            await client.publish(self.status_topic, OFFLINE, qos=self.settings.analytics_qos,
                                 retain=True, timeout=OFFLINE_TIMEOUT_S)  # fmt: skip
        except aiomqtt.MqttError as exc:
            logger.info("could not say offline before disconnecting: %s", exc)
        logger.info("disconnecting from the MQTT broker %s:%d", self.host, self.settings.port)

    def _down(self) -> None:
        was_up = self._up.is_set()
        self._up.clear()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        self._client = None
        if was_up:
            self._emit(LinkEvent("lost", self.last_error))

    def _failed(self, exc: BaseException, *, connected: bool) -> None:
        message = describe(exc)
        self.last_error = message
        where = f"{self.host}:{self.settings.port}"
        if connected:
            self.losses += 1
            logger.warning("lost the connection to the MQTT broker %s: %s", where, message)
        else:
            self.failures += 1
            if message != self._logged_error:
                logger.warning(
                    "cannot connect to the MQTT broker %s: %s (retrying with backoff)",
                    where, message,
                )  # fmt: skip
            else:
                logger.debug("still cannot connect to the MQTT broker %s: %s", where, message)
            self._logged_error = message
            self._emit(LinkEvent("failed", message))

    def _emit(self, event: LinkEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("an MQTT link listener (%r) failed", listener)


class MqttNotifier:
    """Deliver outbox rows as MQTT messages: ``<prefix>/alerts/<rule>`` or the route's topic.

    Alerts and notices are JSON (``mqtt_format.alert_payload``) carrying the idempotency
    key, at ``mqtt.qos``, not retained. A delivery while the broker is unreachable raises
    ``DeliveryError``: the row stays in the outbox and the dispatcher tries again, just
    after the link's next connection attempt (``retry_after``), not later.
    """

    name = "mqtt"
    window = WINDOW
    """Alerts in flight at once: one connection keeps their order (``outbox``)."""

    def __init__(self, link: MqttLink, *, timeout: float | None = None) -> None:
        self._link = link
        self._prefix = link.settings.topic_prefix
        self._qos = link.settings.qos
        self._timeout = timeout
        self.delivered = 0

    async def start(self) -> None:
        """Start the link (the daemon's ``start_notifiers``); it connects in the background."""
        await self._link.start()

    async def close(self) -> None:
        """Say offline and disconnect (the daemon's ``stop_notifiers``, after delivery)."""
        await self._link.close()

    async def deliver(self, item: OutboxItem) -> None:
        """Publish one notification; raise ``DeliveryError`` when it was not acknowledged."""
        try:
            topic = alert_topic(self._prefix, item.payload, item.route)
        except ValueError as exc:
            raise DeliveryError(str(exc), permanent=True) from exc
        payload = alert_payload(item.payload, item.key, item.created_at)
        try:
            await self._link.publish(
                topic, payload, qos=self._qos, retain=False, timeout=self._timeout
            )
        except MqttUnavailableError as exc:
            down = not self._link.connected
            hint = self._link.retry_hint() if down else None  # else: the outbox's backoff
            raise DeliveryError(str(exc), retry_after=hint) from exc
        self.delivered += 1
