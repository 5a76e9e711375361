"""MQTT against a real mosquitto on a free loopback port: no mock of the broker.

Subscribers are real clients (aiomqtt and the ``mosquitto_sub`` command); the broker is
stopped, killed and restarted under the link; the outbox is the real dispatcher on a real
SQLite file.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from pairwatch.config.notifier_settings import MqttSettings
from pairwatch.daemon.alert_rows import Notification, OutboxItem, alert_event_payload
from pairwatch.daemon.alert_rows import notice_payload as make_notice
from pairwatch.daemon.store import open_store
from pairwatch.daemon.writer import Writer
from pairwatch.events import AlertEvent, Bar, PairSnapshot, SymbolSnapshot
from pairwatch.notifiers.mqtt import LinkEvent, MqttLink, MqttNotifier
from pairwatch.notifiers.mqtt_format import Series
from pairwatch.notifiers.mqtt_publish import MqttPublisher
from pairwatch.notifiers.outbox import DeliveryError, Dispatcher
from support.mosquitto import MOSQUITTO_SUB, Mosquitto, Subscriber, available, make_tls_files
from support.secrets import MQTT_PASSWORD

PREFIX = "test/v1"
T0 = 1_700_000_000_000

if not available():
    pytest.fail("mosquitto is not installed: run scripts/system-deps", pytrace=False)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as mosquitto:
        yield mosquitto


def mqtt(broker: Mosquitto, **overrides: Any) -> MqttSettings:
    options: dict[str, Any] = {
        "host": "127.0.0.1", "port": broker.port, "client_id": "pairwatch-test",
        "topic_prefix": PREFIX,
    }  # fmt: skip
    return MqttSettings(**(options | overrides))


class LinkEvents(list[LinkEvent]):
    """The link's events, as its listener appends them; awaitable."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def __call__(self, event: LinkEvent) -> None:
        self.append(event)
        self.changed.set()

    async def wait(self, kind: str, after: int = 0) -> LinkEvent:
        """Return the first event of ``kind`` from index ``after``, waiting for it."""
        async with asyncio.timeout(15):
            while True:
                for event in self[after:]:
                    if event.kind == kind:
                        return event
                self.changed.clear()
                await self.changed.wait()


@asynccontextmanager
async def running(link: MqttLink, *tasks: Any) -> AsyncIterator[LinkEvents]:
    """Run ``link`` (and e.g. a publisher's ``run()``) until the block ends, then close it."""
    events = LinkEvents()
    link.add_listener(events)
    started = [asyncio.create_task(link.run()), *(asyncio.create_task(t) for t in tasks)]
    try:
        yield events
    finally:
        await link.close()
        for task in started[1:]:
            task.cancel()
        await asyncio.gather(*started, return_exceptions=True)
        assert started[0].exception() is None  # the link never raises


def fast_link(settings: MqttSettings) -> MqttLink:
    return MqttLink(settings, reconnect_initial=0.02, reconnect_max=0.2, timeout=5.0)


def snapshot(ts: int, z: float = 1.5, window: int = 30, y: str = "ETHUSDT") -> PairSnapshot:
    metrics = {"zscore": z, "hedge_ratio": 0.0531, "correlation": math.nan}
    return PairSnapshot(y, "BTCUSDT", "1m", window, ts, metrics, adf_at=T0)


def event(n: int, rule: str = "z_high") -> AlertEvent:
    return AlertEvent(
        rule=rule, target="ETHUSDT/BTCUSDT", timeframe="1m", window=30, kind="firing",
        at=T0 + n * 60_000, severity="warning", metric="zscore", value=2.0 + n / 10,
        threshold=2.0, message=f"z #{n}", values={"zscore": 2.0 + n / 10, "hedge_ratio": math.nan},
        labels={"desk": "crypto"}, notify=True,
    )  # fmt: skip


def outbox_item(n: int, route: dict[str, str] | None = None) -> OutboxItem:
    e = event(n)
    return OutboxItem(n + 1, e.key, "mqtt", route or {}, alert_event_payload(e), T0, 0, T0)


async def test_status_is_retained_online_and_offline_after_a_clean_close(
    broker: Mosquitto,
) -> None:
    link = fast_link(mqtt(broker))
    status = f"{PREFIX}/status"
    async with running(link):
        assert await link.wait_connected(10)
        async with Subscriber(broker.port, [status]) as late:
            assert await late.wait_on(status) == [b"online"]
            assert late.on(status)[0].retain  # a retained value, not a live message
    async with Subscriber(broker.port, [status]) as after:
        assert await after.wait_on(status) == [b"offline"]
    assert link.counters() == {
        "connected": 0, "connects": 1, "connect_failures": 0, "connections_lost": 0,
    }  # fmt: skip


async def test_the_notifier_starts_and_closes_its_link_as_the_daemon_does(
    broker: Mosquitto,
) -> None:
    link = fast_link(mqtt(broker))
    notifier = MqttNotifier(link)
    await notifier.start()  # as start_notifiers: returns at once, connects in the background
    assert await link.wait_connected(10)
    await notifier.deliver(outbox_item(1))
    await notifier.close()  # as stop_notifiers
    assert not link.connected
    async with Subscriber(broker.port, [f"{PREFIX}/status"]) as late:
        assert await late.wait_on(f"{PREFIX}/status") == [b"offline"]
    assert notifier.delivered == 1


async def test_cancelling_the_link_instead_of_closing_it_still_says_offline(
    broker: Mosquitto,
) -> None:
    link = fast_link(mqtt(broker))
    task = asyncio.create_task(link.run())
    assert await link.wait_connected(10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    async with Subscriber(broker.port, [f"{PREFIX}/status"]) as late:
        assert await late.wait_on(f"{PREFIX}/status") == [b"offline"]
    assert "Client pairwatch-test disconnected." in broker.wait_for_log("Client pairwatch-test d")


async def test_a_late_subscriber_gets_the_retained_snapshot_also_with_mosquitto_sub(
    broker: Mosquitto,
) -> None:
    link = fast_link(mqtt(broker))
    publisher = MqttPublisher(link)
    topic = f"{PREFIX}/analytics/ETHUSDT-BTCUSDT/1m/30"
    symbol = SymbolSnapshot("ETHUSDT", "1m", 30, T0, {"volatility": 0.42, "vwap": math.nan})
    async with running(link, publisher.run()), Subscriber(broker.port, [f"{PREFIX}/#"]) as live:
        publisher.on_snapshots([snapshot(T0, z=2.41)], [symbol])
        await live.wait_on(topic)
        sub = await asyncio.create_subprocess_exec(
            MOSQUITTO_SUB, "-h", "127.0.0.1", "-p", str(broker.port), "-t", topic,
            "-C", "1", "-W", "10", "-F", "%r %t %p", stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(sub.communicate(), 15)
    retained, got_topic, payload = out.decode().strip().split(" ", 2)
    assert (sub.returncode, retained, got_topic) == (0, "1", topic)
    assert json.loads(payload) == {
        "pair": "ETHUSDT/BTCUSDT", "y": "ETHUSDT", "x": "BTCUSDT", "timeframe": "1m",
        "window": 30, "ts": T0, "time": "2023-11-14T22:13:20.000Z",
        "metrics": {"zscore": 2.41, "hedge_ratio": 0.0531, "correlation": None},
        "adf_at": T0, "adf_time": "2023-11-14T22:13:20.000Z",
    }  # fmt: skip
    symbol_payload = json.loads((await live.wait_on(f"{PREFIX}/symbols/ETHUSDT/1m/30"))[0])
    assert symbol_payload["metrics"] == {"volatility": 0.42, "vwap": None}
    assert publisher.counters() == {
        "published": 2, "coalesced": 0, "dropped": 0, "pending": 0, "max_pending": 2,
    }  # fmt: skip


async def test_alerts_and_notices_reach_aiomqtt_and_mosquitto_sub_with_their_key(
    broker: Mosquitto,
) -> None:
    link = fast_link(mqtt(broker))
    notifier = MqttNotifier(link)
    mark = len(broker.lines)
    sub = await asyncio.create_subprocess_exec(
        MOSQUITTO_SUB, "-h", "127.0.0.1", "-p", str(broker.port), "-i", "cli-sub", "-q", "1",
        "-t", f"{PREFIX}/alerts/#", "-t", "desk/#", "-v", "-C", "3", "-W", "20",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.to_thread(broker.wait_for_log, "cli-sub 1 desk/#", since=mark)
    notice = OutboxItem(9, "notice|1", "mqtt", {}, make_notice("reload failed", "line 3"), T0, 0, 0)
    async with running(link), Subscriber(broker.port, [f"{PREFIX}/alerts/#", "desk/#"]) as subs:
        assert await link.wait_connected(10)
        await notifier.deliver(outbox_item(1))
        await notifier.deliver(notice)
        await notifier.deliver(outbox_item(2, {"topic": "desk/ethbtc"}))
        await subs.wait_for(lambda m: len(m) >= 3)
        out, _ = await asyncio.wait_for(sub.communicate(), 15)
    lines = out.decode().splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == [
        f"{PREFIX}/alerts/z_high", f"{PREFIX}/alerts/_notice", "desk/ethbtc",
    ]  # fmt: skip
    assert [m.topic.value for m in subs.messages] == [line.split(" ", 1)[0] for line in lines]
    assert [m.qos for m in subs.messages] == [1, 1, 1]
    assert not any(m.retain for m in subs.messages)
    alert = json.loads(lines[0].split(" ", 1)[1])
    assert alert["type"] == "alert"
    assert alert["key"] == event(1).key == alert["event"]["key"]
    assert alert["event"]["values"] == {"zscore": 2.1}  # NaN left out by the outbox payload
    assert alert["event"]["time"] == "2023-11-14T22:14:20.000Z"
    assert json.loads(lines[1].split(" ", 1)[1]) == {
        "type": "notice", "key": "notice|1", "title": "reload failed", "text": "line 3",
        "severity": "warning", "at": T0, "time": "2023-11-14T22:13:20.000Z",
    }  # fmt: skip
    assert json.loads(lines[2].split(" ", 1)[1])["key"] == event(2).key
    assert notifier.delivered == 3


async def test_a_route_topic_with_a_wildcard_is_refused_permanently(broker: Mosquitto) -> None:
    link = fast_link(mqtt(broker))
    async with running(link):
        assert await link.wait_connected(10)
        with pytest.raises(DeliveryError, match="Invalid MQTT topic") as refused:
            await MqttNotifier(link).deliver(outbox_item(1, {"topic": "desk/#"}))
    assert refused.value.permanent


async def test_delivery_while_disconnected_raises_a_retryable_error(broker: Mosquitto) -> None:
    link = fast_link(mqtt(broker))
    with pytest.raises(DeliveryError, match="not connected") as failed:
        await MqttNotifier(link).deliver(outbox_item(1))  # the link was never started
    assert not failed.value.permanent


VICTIM = """
import asyncio, sys
from pairwatch.config.notifier_settings import MqttSettings
from pairwatch.notifiers.mqtt import MqttLink

async def main():
    settings = MqttSettings(host="127.0.0.1", port=int(sys.argv[1]), client_id="victim",
                            topic_prefix=sys.argv[2], keepalive="60s")
    link = MqttLink(settings)
    task = asyncio.create_task(link.run())
    await link.wait_connected()
    print("connected", flush=True)
    await task

asyncio.run(main())
"""


async def test_the_last_will_says_offline_when_the_process_is_killed(broker: Mosquitto) -> None:
    status = f"{PREFIX}/status"
    async with Subscriber(broker.port, [status]) as subs:
        victim = await asyncio.create_subprocess_exec(
            sys.executable, "-c", VICTIM, str(broker.port), PREFIX, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert victim.stdout is not None
            line = await asyncio.wait_for(victim.stdout.readline(), 30)
            assert line == b"connected\n"
            assert await subs.wait_on(status) == [b"online"]
        finally:
            victim.send_signal(signal.SIGKILL)  # no clean disconnect: the broker sends the will
            await victim.wait()
        assert await subs.wait_on(status, 2) == [b"online", b"offline"]
    async with Subscriber(broker.port, [status]) as late:
        assert await late.wait_on(status) == [b"offline"]
        assert late.on(status)[0].retain
    assert "Client victim closed its connection." in broker.wait_for_log("Client victim ")


async def test_snapshots_coalesce_to_the_latest_while_the_broker_is_down(
    broker: Mosquitto,
) -> None:
    link = fast_link(mqtt(broker))
    publisher = MqttPublisher(link)
    topic = f"{PREFIX}/analytics/ETHUSDT-BTCUSDT/1m/30"
    async with running(link, publisher.run()) as events:
        assert await link.wait_connected(10)
        await asyncio.to_thread(broker.stop)
        await events.wait("lost")
        for n in range(1000):
            publisher.on_snapshots([snapshot(T0 + n * 60_000, z=n / 100)], [])
        assert (publisher.pending, publisher.coalesced, publisher.published) == (1, 999, 0)
        up = len(events)
        await asyncio.to_thread(broker.start)
        await events.wait("connected", after=up)
        async with Subscriber(broker.port, [topic]) as subs:
            first = json.loads((await subs.wait_on(topic))[0])
            publisher.on_snapshots([snapshot(T0 + 1000 * 60_000, z=10.0)], [])
            second = json.loads((await subs.wait_on(topic, 2))[1])
    assert (first["ts"], first["metrics"]["zscore"]) == (T0 + 999 * 60_000, 9.99)
    assert second["ts"] == T0 + 1000 * 60_000  # nothing older was sent in between
    assert publisher.counters() == {
        "published": 2, "coalesced": 999, "dropped": 0, "pending": 0, "max_pending": 1,
    }  # fmt: skip


async def test_snapshots_wait_for_the_bar_close_to_settle_then_go_out_together(
    broker: Mosquitto,
) -> None:
    # Alerts first: the snapshots of a bar close's pairs come over some tens of ms, and
    # sending them meanwhile delayed the alerts of the same bar close.
    link = fast_link(mqtt(broker))
    publisher = MqttPublisher(link, settle=1.0, max_settle=10.0)
    topics = [f"{PREFIX}/analytics/{y}-BTCUSDT/1m/30" for y in ("ETHUSDT", "SOLUSDT")]
    async with running(link, publisher.run()), Subscriber(broker.port, topics) as live:
        assert await link.wait_connected(10)
        publisher.on_snapshots([snapshot(T0, z=1.0)], [])
        await asyncio.sleep(0.1)  # a gap within the settle time (not a synchronization)
        assert publisher.published == 0
        publisher.on_snapshots([snapshot(T0, z=2.0, y="SOLUSDT")], [])
        for topic in topics:
            await live.wait_on(topic)
    assert publisher.counters()["published"] == 2


async def test_snapshots_that_never_pause_are_still_sent_after_the_longest_settle(
    broker: Mosquitto,
) -> None:
    link = fast_link(mqtt(broker))
    publisher = MqttPublisher(link, settle=0.3, max_settle=0.8)
    loop = asyncio.get_running_loop()
    first: float | None = None
    async with running(link, publisher.run()):
        assert await link.wait_connected(10)
        start = loop.time()
        for n in range(40):  # a value every 0.1 s for 4 s: never 0.3 s of quiet
            publisher.on_snapshots([snapshot(T0 + n * 60_000, z=n)], [])
            await asyncio.sleep(0.1)
            if publisher.published and first is None:
                first = loop.time() - start
    assert first is not None
    assert 0.5 < first < 3.5  # at the longest settle, while the values still came


class Watched:
    """The real MQTT notifier, with an event per failed attempt for the test to await."""

    def __init__(self, notifier: MqttNotifier) -> None:
        self.name = notifier.name
        self.inner = notifier
        self.failures = 0
        self.failed = asyncio.Event()
        self.delivered: list[str] = []
        self.changed = asyncio.Event()

    async def deliver(self, item: OutboxItem) -> None:
        try:
            await self.inner.deliver(item)
        except DeliveryError:
            self.failures += 1
            self.failed.set()
            raise
        self.delivered.append(item.key)
        self.changed.set()

    async def wait_delivered(self, count: int) -> list[str]:
        """Wait until ``count`` deliveries were acknowledged by the broker."""
        async with asyncio.timeout(15):
            while len(self.delivered) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.delivered


def outbox_rows(db: Path) -> list[tuple[Any, ...]]:
    conn = open_store(db, readonly=True)
    try:
        return conn.execute(
            "SELECT key, attempts > 0, delivered_at IS NOT NULL FROM outbox ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


async def test_alerts_wait_in_the_outbox_while_the_broker_is_down_and_arrive_once_in_order(
    tmp_path: Path,
) -> None:
    broker = Mosquitto(tmp_path / "broker", persistence=True)  # keeps the subscriber's session
    broker.start()
    db = tmp_path / "pairwatch.db"
    writer = Writer(db)
    writer.start()
    link = fast_link(mqtt(broker))
    notifier = Watched(MqttNotifier(link))
    # The outbox's own backoff would wait 30 s: the notifier's retry_after (the link's next
    # connection attempt) is what makes the backlog go out right after the restart.
    dispatcher = Dispatcher([notifier], db, writer, retry_initial=30.0, retry_max=60.0)
    keys = [event(n).key for n in range(6)]
    try:
        subs = Subscriber(broker.port, [f"{PREFIX}/alerts/#"], client_id="desk", persistent=True)
        async with subs, running(link, dispatcher.run()) as events:
            assert await link.wait_connected(10)
            writer.put_alerts(
                [], [Notification(keys[0], "mqtt", {}, alert_event_payload(event(0)))]
            )
            await asyncio.wrap_future(writer.flush())
            dispatcher.kick()
            await subs.wait_for(lambda m: len(m) >= 1)

            await asyncio.to_thread(broker.stop)
            await events.wait("lost")
            notes = [Notification(keys[n], "mqtt", {}, alert_event_payload(event(n))) for n in
                     range(1, 6)]  # fmt: skip
            writer.put_alerts([], notes)
            await asyncio.wrap_future(writer.flush())
            dispatcher.kick()
            await asyncio.wait_for(notifier.failed.wait(), 15)
            await asyncio.wrap_future(writer.flush())
            rows = outbox_rows(db)
            assert rows[0] == (keys[0], 1, 1)
            assert [r[2] for r in rows[1:]] == [0] * 5  # kept, not delivered, not lost
            assert rows[1][1] == 1  # tried while the broker was down

            await asyncio.to_thread(broker.start)
            got = await subs.wait_for(lambda m: len(m) >= 6, timeout=10)
            assert [json.loads(bytes(m.payload))["key"] for m in got] == keys  # type: ignore[arg-type]
            # A last alert after the backlog: nothing else (no duplicate) came before it.
            last = event(6)
            writer.put_alerts([], [Notification(last.key, "mqtt", {}, alert_event_payload(last))])
            await asyncio.wrap_future(writer.flush())
            dispatcher.kick()
            got = await subs.wait_for(lambda m: len(m) >= 7)
            assert [json.loads(bytes(m.payload))["key"] for m in got] == [*keys, last.key]  # type: ignore[arg-type]
            assert await notifier.wait_delivered(7) == [*keys, last.key]  # each acknowledged once
        await asyncio.wrap_future(writer.flush())
        assert [(r[0], r[2]) for r in outbox_rows(db)] == [(k, 1) for k in [*keys, last.key]]
        assert notifier.failures >= 1
        assert subs.connections >= 2  # the subscriber itself was cut off by the restart
    finally:
        writer.close(10)
        broker.stop()


async def test_a_wrong_password_is_reported_clearly_and_the_link_keeps_trying(
    tmp_path: Path,
) -> None:
    with Mosquitto(tmp_path / "broker", users={"pairwatch": MQTT_PASSWORD}) as broker:
        wrong = fast_link(mqtt(broker, username="pairwatch", password="nope"))
        async with running(wrong) as events:
            failed = await events.wait("failed")
            await events.wait("failed", after=events.index(failed) + 1)  # and again
            assert not wrong.connected
        assert failed.error is not None
        assert "refused the login" in failed.error
        assert "Not authorized" in failed.error
        assert "check mqtt.username and mqtt.password" in failed.error
        assert "nope" not in failed.error
        assert wrong.failures >= 2
        right = fast_link(mqtt(broker, username="pairwatch", password=MQTT_PASSWORD))
        async with running(right):
            assert await right.wait_connected(10)
            await MqttNotifier(right).deliver(outbox_item(1))
        assert right.counters()["connects"] == 1


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    try:
        files = make_tls_files(tmp_path / "tls")
    except (OSError, RuntimeError) as exc:  # neither cryptography nor openssl here
        pytest.skip(f"cannot make test certificates offline: {exc}")
    with Mosquitto(tmp_path / "broker", tls=files, require_certificate=True) as mosquitto:
        yield mosquitto


async def test_tls_with_a_test_ca_and_a_client_certificate(tls_broker: Mosquitto) -> None:
    files = tls_broker.tls
    assert files is not None
    assert tls_broker.tls_port is not None
    tls = {"enabled": True, "ca_file": files.ca_cert, "cert_file": files.client_cert,
           "key_file": files.client_key}  # fmt: skip
    link = fast_link(mqtt(tls_broker, port=tls_broker.tls_port, tls=tls))
    plain = Subscriber(tls_broker.port, [f"{PREFIX}/alerts/#"])  # on the plain listener
    async with plain as subs, running(link):
        assert await link.wait_connected(10)
        await MqttNotifier(link).deliver(outbox_item(1))
        payload = (await subs.wait_on(f"{PREFIX}/alerts/z_high"))[0]
    assert json.loads(payload)["key"] == event(1).key


# paho-mqtt leaves the socket of a failed TLS handshake to the garbage collector (closed
# then, with a ResourceWarning): not our leak, and not a growing one.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_broker_certificate_from_an_unknown_ca_is_reported(tls_broker: Mosquitto) -> None:
    untrusted = fast_link(mqtt(tls_broker, port=tls_broker.tls_port, tls={"enabled": True}))
    async with running(untrusted) as events:  # the system's CAs do not know the test CA
        failed = await events.wait("failed")
    assert failed.error is not None
    assert "certificate verify failed" in failed.error
    assert "check mqtt.tls" in failed.error


async def test_home_assistant_sensors_are_announced_and_removed(broker: Mosquitto) -> None:
    link = fast_link(mqtt(broker, ha_discovery=True))
    publisher = MqttPublisher(link)
    kept = Series("ETHUSDT", "BTCUSDT", "1m", 30)
    gone = Series("SOLUSDT", "BTCUSDT", "1m", 30)
    new = Series("ETHUSDT", "BTCUSDT", "5m", 30)
    expected = sorted(
        f"homeassistant/sensor/pairwatch_ethusdt_btcusdt_{tf}_30_{metric}/config"
        for tf in ("1m", "5m")
        for metric in ("zscore", "hedge_ratio", "correlation")
    )

    async def retained_configs() -> dict[str, Any]:
        async with Subscriber(broker.port, ["homeassistant/sensor/+/config", "sentinel"]) as late:
            await link.publish("sentinel", b"end", qos=1, retain=False)
            await late.wait_on("sentinel")  # retained messages come before a later message
        return {m.topic.value: json.loads(bytes(m.payload)) for m in late.messages  # type: ignore[arg-type]
                if m.topic.value != "sentinel"}  # fmt: skip

    async with running(link, publisher.run()) as events:
        publisher.announce([kept, gone])
        await asyncio.wait_for(publisher.discovery_sent.wait(), 15)
        publisher.announce([kept, new], previous=[kept, gone])
        await asyncio.wait_for(publisher.discovery_sent.wait(), 15)
        retained = await retained_configs()
        assert sorted(retained) == expected
        up = len(events)
        await asyncio.to_thread(broker.restart)  # no persistence: the broker forgets them
        await events.wait("connected", after=up)
        await asyncio.wait_for(publisher.discovery_sent.wait(), 15)
        assert sorted(await retained_configs()) == expected  # announced again
    z = retained["homeassistant/sensor/pairwatch_ethusdt_btcusdt_1m_30_zscore/config"]
    assert z["state_topic"] == f"{PREFIX}/analytics/ETHUSDT-BTCUSDT/1m/30"
    assert z["value_template"] == "{{ value_json.metrics.zscore }}"
    assert (z["availability_topic"], z["unique_id"]) == (
        f"{PREFIX}/status", "pairwatch_ethusdt_btcusdt_1m_30_zscore",
    )  # fmt: skip


async def test_bars_and_pair_filter_publish_only_the_chosen_pairs_and_their_legs(
    broker: Mosquitto,
) -> None:
    settings = mqtt(broker, publish_bars=True, pairs=("ethusdt/btcusdt",))
    link = fast_link(settings)
    publisher = MqttPublisher(link)

    def bar(symbol: str) -> Bar:
        return Bar(symbol, "1m", T0, 10.0, 11.0, 9.0, 10.5, 2.0, 21.0, math.nan, 7, 1.0)

    async with running(link, publisher.run()), Subscriber(broker.port, [f"{PREFIX}/#"]) as subs:
        assert await link.wait_connected(10)
        publisher.on_bars([bar("ETHUSDT"), bar("SOLUSDT")])
        publisher.on_snapshots([snapshot(T0, y="SOLUSDT"), snapshot(T0)], [])
        await subs.wait_on(f"{PREFIX}/analytics/ETHUSDT-BTCUSDT/1m/30")
        await subs.wait_on(f"{PREFIX}/bars/ETHUSDT/1m")
        async with Subscriber(broker.port, [f"{PREFIX}/#", "sentinel"]) as late:
            await link.publish("sentinel", b"end", qos=1, retain=False)
            await late.wait_on("sentinel")
    bar_payload = json.loads((await subs.wait_on(f"{PREFIX}/bars/ETHUSDT/1m"))[0])
    assert (bar_payload["close"], bar_payload["vwap"], bar_payload["trades"]) == (10.5, None, 7)
    topics = sorted({m.topic.value for m in subs.messages})
    assert topics == [f"{PREFIX}/analytics/ETHUSDT-BTCUSDT/1m/30", f"{PREFIX}/bars/ETHUSDT/1m",
                      f"{PREFIX}/status"]  # fmt: skip
    retained = sorted(m.topic.value for m in late.messages if m.retain)
    assert retained == [f"{PREFIX}/analytics/ETHUSDT-BTCUSDT/1m/30", f"{PREFIX}/status"]
