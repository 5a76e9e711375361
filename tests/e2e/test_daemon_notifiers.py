"""The daemon with its notifiers: alerts reach a local Bot API server and a webhook receiver,
and the bot's commands are answered from the running daemon.

The daemon runs in-process with its built-in simulator, one pair on 1 s bars (window 5)
and a rule that fires as soon as the pair has a hedge ratio.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from pairwatch.config.load import load_settings
from pairwatch.daemon.service import Daemon
from support.botapi import ApiCall, FakeBotApi
from support.mosquitto import Mosquitto, Subscriber
from support.receiver import Receiver
from support.secrets import E2E_TELEGRAM_TOKEN

TOKEN = E2E_TELEGRAM_TOKEN
CHAT = 4242

RULES = """
rules:
  - name: always
    pair: ETHUSDT/BTCUSDT
    timeframe: 1s
    window: 5
    when: hedge_ratio > -1000000
    severity: critical
    message: "{pair} beta {hedge_ratio:.4f}"
    notify: [telegram, webhook, mqtt, log]
"""


def write_config(tmp_path: Path, api: FakeBotApi, receiver: Receiver, broker: Mosquitto) -> Path:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
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
watch_interval = "200ms"

[telegram]
chat_ids = ["{CHAT}"]
api_base_url = "{api.base_url}"
poll_timeout = "1s"

[webhook]
url = "{receiver.url}/hook"

[mqtt]
host = "127.0.0.1"
port = {broker.port}
client_id = "pairwatch-e2e"
ha_discovery = true

[[pairs]]
y = "ETHUSDT"
x = "BTCUSDT"
windows = [5]
adf_lookback = 50
adf_refresh = "1h"
"""
    )
    return config


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(TOKEN) as server:
        yield server


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as mosquitto:
        yield mosquitto


@pytest.fixture
def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r  # type: ignore[misc]
    r.server.shutdown()
    r.server.server_close()


async def command(api: FakeBotApi, text: str) -> ApiCall:
    """Send a command from the allowed chat; return the bot's (first) answer to it."""
    before = len(api.calls)
    api.push_message(CHAT, text)
    method = "sendPhoto" if text.startswith("/chart") else "sendMessage"

    def answer(call: ApiCall) -> bool:
        return api.calls.index(call) >= before and call.chat == str(CHAT)

    (reply, *_) = await api.wait_for(method, where=answer, timeout=20)
    return reply


async def test_alerts_reach_telegram_mqtt_and_the_webhook_and_commands_are_answered(
    tmp_path: Path,
    api: FakeBotApi,
    receiver: Receiver,
    broker: Mosquitto,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PAIRWATCH_TELEGRAM__TOKEN", TOKEN)
    settings = load_settings(write_config(tmp_path, api, receiver, broker))
    daemon = Daemon(settings)
    stop = asyncio.Event()
    sub = await asyncio.create_subprocess_exec(
        "mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-v", "-q", "1",
        "-t", "pairwatch/v1/alerts/#", "-t", "pairwatch/v1/status",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    subscriber = Subscriber(broker.port, ["pairwatch/v1/#", "homeassistant/#"])
    await subscriber.__aenter__()
    task = asyncio.create_task(daemon.run(stop))
    try:
        (alert,) = await api.wait_for(
            "sendMessage", where=lambda c: "always" in str(c.arg("text")), timeout=60
        )
        text = str(alert.arg("text"))
        assert alert.chat == str(CHAT)
        assert "ETHUSDT/BTCUSDT" in text
        assert "beta" in text
        assert daemon.alerts is not None
        await asyncio.wait_for(
            daemon.alerts.dispatcher.wait_until(lambda c: c["webhook"].delivered >= 1), 20
        )
        body = json.loads(receiver.requests[0][2])
        assert body["event"]["rule"] == "always"
        assert body["key"] == body["event"]["key"]
        assert "|firing|" in body["key"]

        mqtt_alert = await subscriber.wait_for(
            lambda ms: any(m.topic.value == "pairwatch/v1/alerts/always" for m in ms)
        )
        alert_body = json.loads(
            next(m for m in mqtt_alert if m.topic.value == "pairwatch/v1/alerts/always").payload  # type: ignore[arg-type]
        )
        assert alert_body["key"] == body["key"]  # one event, the same key everywhere
        series = "pairwatch/v1/analytics/ETHUSDT-BTCUSDT/1s/5"
        snapshots = await subscriber.wait_for(lambda ms: any(m.topic.value == series for m in ms))
        snapshot = next(m for m in snapshots if m.topic.value == series)
        assert "hedge_ratio" in json.loads(snapshot.payload)["metrics"]  # type: ignore[arg-type]
        assert any(m.topic.value.startswith("homeassistant/sensor/") for m in subscriber.messages)
        status = str((await command(api, "/status")).arg("text"))
        assert "simulator" in status
        pairs = str((await command(api, "/pairs")).arg("text"))
        assert "ETHUSDT BTCUSDT</code> · 1s · windows 5" in pairs
        z = str((await command(api, "/z ETHUSDT BTCUSDT")).arg("text"))
        assert "hedge_ratio" in z or "hedge ratio" in z
        alerts = str((await command(api, "/alerts")).arg("text"))
        assert "always" in alerts
        rules = str((await command(api, "/rules")).arg("text"))
        assert "hedge_ratio &gt; -1e+06" in rules or "hedge_ratio > -1e+06" in rules
        photo = await command(api, "/chart ETHUSDT BTCUSDT")
        (upload,) = photo.files.values()
        assert upload.data.startswith(b"\x89PNG")
        muted = str((await command(api, "/mute always 10m")).arg("text"))
        assert "muted rule always for 10m" in muted
        assert daemon.alerts.stage.silencer.covers("always", "ETHUSDT/BTCUSDT", daemon.clock())
        unknown = str((await command(api, "/mute nope 10m")).arg("text"))
        assert "no rule 'nope'" in unknown
        unmuted = str((await command(api, "/unmute always")).arg("text"))
        assert "ended 1 silence(s) of always" in unmuted
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await subscriber.__aexit__(None, None, None)
        sub.terminate()
        lines, _ = await asyncio.wait_for(sub.communicate(), 10)
    printed = lines.decode().splitlines()
    assert "pairwatch/v1/status online" in printed
    assert printed[-1] == "pairwatch/v1/status offline"  # said at shutdown
    assert any(line.startswith("pairwatch/v1/alerts/always {") for line in printed)
    assert all(TOKEN not in record.getMessage() for record in caplog.records)
    assert all(TOKEN not in str(record.args) for record in caplog.records)
