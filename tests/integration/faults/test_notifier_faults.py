"""Notifier faults with the real daemon (in-process, built-in simulator) and real peers.

* MQTT: mosquitto is killed (SIGKILL) in the middle of a burst of alerts (by a thread
  watching a separate ``mosquitto_sub``, so alerts are in flight) and started again on the
  same port and persistence directory. A subscriber with a persistent session (fixed
  client id, no clean session; saved before the burst, so it outlives the kill) gets every
  alert the daemon stored for MQTT, each at least once, the last copies in outbox order;
  the only duplicates are alerts in flight at the kill (first copy before it, at most the
  notifier's window); the analytics and the ``online`` status come back; the outbox has
  nothing left to send. The subscriber takes QoS 0 (queued while it is away): why, at the
  test.
* Telegram: the fake Bot API answers a storm of 429s (``retry_after`` 1 s) and 502/503s
  while the daemon sends a burst of alerts to two chats. Each chat gets every alert once,
  in the outbox's order, and no request follows a 429 sooner than its ``retry_after``
  (the server's own monotonic stamps).

The burst: many rules on one pair that hold on every 1 s bar and repeat every bar. It is
ended by saving an empty rules file (the daemon reloads it): then everything the daemon
stored can be waited for, counted and compared.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from pairwatch.config.load import load_settings
from pairwatch.config.settings import Settings
from pairwatch.daemon.service import Daemon
from pairwatch.daemon.store import open_store
from pairwatch.notifiers.mqtt import WINDOW
from pairwatch.notifiers.mqtt_format import ONLINE
from pairwatch.notifiers.outbox import NotifierCounters
from pairwatch.notifiers.telegram_format import payload_message
from support.botapi import ApiCall, FakeBotApi
from support.mosquitto import MOSQUITTO_SUB, Mosquitto, Subscriber, available
from support.secrets import E2E_TELEGRAM_TOKEN

PREFIX = "pairwatch/v1"
ALERTS = f"{PREFIX}/alerts/"
STATUS = f"{PREFIX}/status"
SERIES = f"{PREFIX}/analytics/ETHUSDT-BTCUSDT/1s/3"
CHATS = ("1001", "1002")  # private chats: python-telegram-bot's group limiter stays out

if not available():
    pytest.fail("mosquitto is not installed: run scripts/system-deps", pytrace=False)


def burst_rules(count: int, notifier: str) -> str:
    """Return ``count`` rules that hold on every bar with a hedge ratio, notified every bar."""
    rules = [
        f"""
  - name: burst-{n:03d}
    pair: ETHUSDT/BTCUSDT
    timeframe: 1s
    window: 3
    when: hedge_ratio > -1000000
    repeat_every: 1s
    notify: [{notifier}]"""
        for n in range(count)
    ]
    return "rules:" + "".join(rules) + "\n"


def write_settings(tmp_path: Path, rules: Path, sections: str) -> Settings:
    config = tmp_path / "pairwatch.toml"
    config.write_text(
        f"""
data_dir = "{tmp_path / "data"}"

[feed]
source = "simulator"
symbols = ["BTCUSDT", "ETHUSDT"]

[bars]
timeframes = ["1s"]

[alerts]
rules_file = "{rules}"
watch_interval = "100ms"
retry_initial = "50ms"
retry_max = "2s"

[web]
enabled = false
{sections}
[[pairs]]
y = "ETHUSDT"
x = "BTCUSDT"
windows = [3]
adf_lookback = 50
adf_refresh = "1h"
"""
    )
    return load_settings(config)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Daemon]:
    """Run the daemon until the block ends; yield it once it is ready."""
    daemon = Daemon(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        ready = asyncio.ensure_future(daemon.ready.wait())
        await asyncio.wait({task, ready}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if task.done():
            task.result()  # raises why it did not start
        assert daemon.ready.is_set(), "the daemon did not get ready in 20 s"
        yield daemon
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def until(
    daemon: Daemon,
    predicate: Callable[[Mapping[str, NotifierCounters]], bool],
    timeout: float = 20.0,  # noqa: ASYNC109
) -> None:
    """Wait until the daemon's delivery counters satisfy ``predicate``."""
    assert daemon.alerts is not None
    await asyncio.wait_for(daemon.alerts.dispatcher.wait_until(predicate), timeout)


async def end_burst(daemon: Daemon, rules: Path, notifier: str) -> int:
    """Empty the rules file; return how many rows the daemon stored for ``notifier``.

    After the reload no rule is left, so nothing is added to the outbox any more: the
    count (read once the writer has committed what was queued) is final.
    """
    assert daemon.alerts is not None
    assert daemon.writer is not None
    daemon.alerts.reloaded.clear()
    await asyncio.to_thread(rules.write_text, "rules: []\n")
    await asyncio.wait_for(daemon.alerts.reloaded.wait(), 10)
    assert daemon.alerts.stage.engine.states == {}
    await asyncio.wrap_future(daemon.writer.flush())
    return len(outbox(daemon.settings.db_path, notifier))


def outbox(db: Path, notifier: str) -> list[sqlite3.Row]:
    """Return the outbox rows of ``notifier`` in id order."""
    conn = open_store(db, readonly=True)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(
            "SELECT id, key, route, payload, attempts, delivered_at, failed_at FROM outbox "
            "WHERE notifier = ? ORDER BY id",
            (notifier,),
        ).fetchall()
    finally:
        conn.close()


def notified_keys(db: Path) -> set[str]:
    """Return the keys of the alert events that were to be notified."""
    conn = open_store(db, readonly=True)
    try:
        return {key for (key,) in conn.execute("SELECT key FROM alert_events WHERE notify = 1")}
    finally:
        conn.close()


def body(message: aiomqtt.Message) -> dict[str, Any]:
    """Return a message's JSON payload."""
    return dict(json.loads(bytes(message.payload)))  # type: ignore[arg-type]


def alerts(messages: list[aiomqtt.Message]) -> list[aiomqtt.Message]:
    return [m for m in messages if m.topic.value.startswith(ALERTS)]


def arrived(sub: Subscriber) -> list[tuple[aiomqtt.Message, int]]:
    """Return each message with the number of the connection it came on (1, 2, …)."""
    return list(zip(sub.messages, sub.arrivals, strict=True))


# --- MQTT ----------------------------------------------------------------------------------

BURST_RULES = 120
"""Alerts per bar: more than the notifier's window, so a bar's burst fills it."""


class Tripwire:
    """Kill the broker (SIGKILL) once ``mosquitto_sub`` printed ``count`` alerts.

    A thread reads the output of a separate process, so when the broker dies does not
    depend on the daemon's loop (which shares this test's): the broker has forwarded
    alerts whose PUBACK the daemon may not have read yet, i.e. alerts still in flight.
    """

    def __init__(self, broker: Mosquitto, count: int) -> None:
        self.broker = broker
        self.count = count
        self.fired = threading.Event()
        self.process = subprocess.Popen(
            [MOSQUITTO_SUB, "-h", "127.0.0.1", "-p", str(broker.port), "-i", "tripwire",
             "-q", "0", "-t", f"{ALERTS}#"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def arm(self) -> None:
        """Return once the subscription is in place; then watch."""
        self.broker.wait_for_log(f"tripwire 0 {ALERTS}#")
        self.thread.start()

    def _watch(self) -> None:
        assert self.process.stdout is not None
        for n, _ in enumerate(self.process.stdout, 1):
            if n >= self.count:
                self.broker.kill()
                self.fired.set()
                return

    def close(self) -> None:
        self.process.kill()
        self.process.wait(10)
        if self.thread.ident is not None:  # started
            self.thread.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()


async def test_a_broker_killed_mid_burst_loses_no_alert_and_duplicates_only_those_in_flight(
    tmp_path: Path,
) -> None:
    # The desk subscribes at QoS 0 (queued while it is away: queue_qos0_messages): at QoS 1
    # it would answer PUBACKs into the dead socket and lose what the broker had already
    # written to it, unread; that, and what the broker acknowledged and still held for a
    # slow subscriber, is the broker's loss, not the daemon's (see the report/docs).
    broker = Mosquitto(tmp_path / "broker", persistence=True, extra=["queue_qos0_messages true"])
    broker.start()
    rules = tmp_path / "rules.yaml"
    rules.write_text(burst_rules(BURST_RULES, "mqtt"))
    settings = write_settings(
        tmp_path, rules,
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "pairwatch-faults"\n',
    )  # fmt: skip
    db = settings.db_path
    desk = Subscriber(broker.port, [f"{ALERTS}#", STATUS, SERIES], qos=0, client_id="desk",
                      persistent=True)  # fmt: skip
    tripwire = Tripwire(broker, BURST_RULES + BURST_RULES // 4)  # in the second bar's burst
    try:
        async with desk:
            # Saved now, the desk's subscriptions outlive the SIGKILL: what the daemon sends
            # after the restart waits for the desk even if the desk reconnects later.
            await asyncio.to_thread(broker.save)
            await asyncio.to_thread(tripwire.arm)
            async with running(settings) as daemon:
                assert daemon.mqtt is not None
                assert daemon.alerts is not None
                dispatcher = daemon.alerts.dispatcher
                assert await asyncio.to_thread(tripwire.fired.wait, 30), "no burst in 30 s"
                await asyncio.to_thread(broker.start)  # same port, same persistence directory

                def recovered(_: object) -> bool:
                    before = [body(m)["ts"] for m, c in arrived(desk) if c == 1
                              and m.topic.value == SERIES]  # fmt: skip
                    later = [m for m, c in arrived(desk) if c >= 2]  # after the restart
                    online = any(m.topic.value == STATUS and m.payload == ONLINE.encode()
                                 for m in later)  # fmt: skip
                    newer = any(m.topic.value == SERIES and body(m)["ts"] > max(before)
                                for m in later)  # fmt: skip
                    return online and newer

                await desk.wait_for(recovered, timeout=20)
                assert daemon.mqtt.link.connects >= 2
                # The burst goes on after the restart: a whole bar more is delivered.
                resumed = dispatcher.counters()["mqtt"].delivered
                await until(daemon, lambda c: c["mqtt"].delivered >= resumed + BURST_RULES)

                made = await end_burst(daemon, rules, "mqtt")
                await until(daemon, lambda c: c["mqtt"].delivered + c["mqtt"].failed >= made)
                wanted = {r["key"] for r in outbox(db, "mqtt")}
                await desk.wait_for(lambda ms: wanted <= {body(m)["key"] for m in alerts(ms)})
                counters = dispatcher.counters()["mqtt"]
            assert counters.failed == 0
            assert counters.retried >= 1  # the delivery in flight at the kill failed

        # A subscriber that comes now gets the retained snapshot of after the restart.
        before = max(body(m)["ts"] for m, c in arrived(desk) if c == 1 and m.topic.value == SERIES)
        async with Subscriber(broker.port, [SERIES]) as late:
            (retained, *_) = await late.wait_for(lambda ms: len(ms) >= 1)
        assert retained.retain
        assert body(retained)["ts"] > before
    finally:
        tripwire.close()
        broker.stop()

    rows = outbox(db, "mqtt")
    stored = [r["key"] for r in rows]
    assert len(stored) == len(set(stored)) == made
    assert set(stored) == notified_keys(db)  # every notified event has its MQTT row
    assert [r for r in rows if r["delivered_at"] is None or r["failed_at"] is not None] == []

    got = [(body(m)["key"], c) for m, c in arrived(desk) if m.topic.value.startswith(ALERTS)]
    keys = [k for k, _ in got]
    assert set(keys) == set(stored)  # none lost, none made up
    first = dict(reversed(got))  # key → the connection its first copy came on
    duplicates = Counter(keys) - Counter(set(keys))
    assert sum(duplicates.values()) <= WINDOW
    assert [k for k in duplicates if first[k] != 1] == []  # sent again only if sent before
    last = {k: i for i, k in enumerate(keys)}
    assert sorted(stored, key=last.__getitem__) == stored  # the last copies in outbox order
    print(f"\nMQTT: {made} alerts, {sum(duplicates.values())} duplicates, "
          f"{sum(c == 1 for _, c in got)} received before the kill")  # fmt: skip


# --- Telegram ------------------------------------------------------------------------------

STORM = (429, 429, 502, 503, None, None, 429, 502, None, 503, 503, None, None, 429, None,
         502, 429, None)  # fmt: skip
"""What the Bot API answers to the first sendMessage calls (None: it sends)."""


async def test_a_429_and_5xx_storm_delays_alerts_to_two_chats_but_loses_and_reorders_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAIRWATCH_TELEGRAM__TOKEN", E2E_TELEGRAM_TOKEN)
    rules = tmp_path / "rules.yaml"
    rules.write_text(burst_rules(6, "telegram"))
    async with FakeBotApi(E2E_TELEGRAM_TOKEN) as api:
        api.storm("sendMessage", STORM, retry_after=1)
        chats = ", ".join(f'"{c}"' for c in CHATS)
        settings = write_settings(
            tmp_path, rules,
            f'[telegram]\nchat_ids = [{chats}]\napi_base_url = "{api.base_url}"\n'
            "commands = false\n",
        )  # fmt: skip
        async with running(settings) as daemon:
            # The storm is over and the backlog it made is being sent.
            await api.wait_for("sendMessage", len(STORM) + 24, timeout=40)
            made = await end_burst(daemon, rules, "telegram")
            await until(daemon, lambda c: c["telegram"].delivered + c["telegram"].failed >= made)
            assert daemon.alerts is not None
            counters = daemon.alerts.dispatcher.counters()["telegram"]
    assert counters.failed == 0

    rows = outbox(settings.db_path, "telegram")
    assert len(rows) == made
    assert [r for r in rows if r["delivered_at"] is None or r["failed_at"] is not None] == []
    assert {r["key"] for r in rows} == notified_keys(settings.db_path)
    calls = [c for c in api.calls if c.method == "sendMessage"]
    assert [c.status for c in calls[: len(STORM)]] == [s or 200 for s in STORM]
    for chat in CHATS:
        expected = [
            part
            for r in rows
            if json.loads(r["route"]) == {"chat": chat}
            for part in payload_message(json.loads(r["payload"])).parts
        ]
        assert len(expected) * len(CHATS) >= made  # every alert goes to both chats
        sent = [c.params["text"] for c in api.sent("sendMessage", chat)]
        assert sent == expected  # each once, none lost, in the outbox's order

    assert early_after_429(calls) == []
    gaps = [g for g, _ in gaps_after_429(calls)]
    print(f"\nTelegram: {made} rows, answers {sorted(Counter(c.status for c in calls).items())}, "
          f"shortest wait after a 429 {min(gaps):.3f} s")  # fmt: skip


def gaps_after_429(calls: list[ApiCall]) -> list[tuple[float, ApiCall]]:
    """Return, for each 429, the time to the next request to its chat, and the 429.

    From the server's answer to that request's arrival (its monotonic stamps). Every 429
    must have been followed by one: the alert was sent again.
    """
    gaps = []
    for i, call in enumerate(calls):
        if call.status == 429:
            following = next(c for c in calls[i + 1 :] if c.chat == call.chat)
            gaps.append((following.at - call.at, call))
    return gaps


def early_after_429(calls: list[ApiCall]) -> list[tuple[str | None, float, int | None]]:
    """Return (chat, gap, retry_after) of each 429 whose chat got a request too soon after."""
    return [
        (call.chat, gap, call.retry_after)
        for gap, call in gaps_after_429(calls)
        if call.retry_after is None or gap < call.retry_after
    ]
