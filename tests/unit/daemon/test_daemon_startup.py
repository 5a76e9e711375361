"""A daemon whose start-up fails releases what it acquired: its notifiers are closed.

The notifiers are built before the store is opened and the rules are loaded (the alert
stage needs their names); a failure there must still close them (Telegram's and the
webhook's HTTP clients, the MQTT link).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pairwatch.config.load import load_settings
from pairwatch.config.settings import Settings
from pairwatch.daemon import notifier_setup
from pairwatch.daemon.alert_rows import OutboxItem
from pairwatch.daemon.service import Daemon
from pairwatch.errors import ConfigError, StoreError
from pairwatch.notifiers.mqtt import MqttLink
from pairwatch.notifiers.outbox import Notifier
from pairwatch.notifiers.telegram_backend import BotBackend

INVALID_RULES = """
rules:
  - name: broken
    pair: ETHUSDT/BTCUSDT
    timeframe: 1s
    window: 5
    when: hedge_ratio >
"""


class RecordingNotifier:
    """A notifier with a connection of its own: records start and close."""

    name = "log"

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")

    async def close(self) -> None:
        self.calls.append("close")

    async def deliver(self, item: OutboxItem) -> None:
        self.calls.append("deliver")


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> RecordingNotifier:
    notifier = RecordingNotifier()

    def build(
        settings: Settings,
        backend: BotBackend | None,
        mqtt_link: MqttLink | None = None,
        **_: object,
    ) -> list[Notifier]:
        return [notifier]

    monkeypatch.setattr(notifier_setup, "build_notifiers", build)
    return notifier


def settings_for(tmp_path: Path, rules: str | None = None) -> Settings:
    alerts = ""
    if rules is not None:
        rules_file = tmp_path / "rules.yaml"
        rules_file.write_text(rules)
        alerts = f'[alerts]\nrules_file = "{rules_file}"\n'
    config = tmp_path / "pairwatch.toml"
    config.write_text(
        f"""
data_dir = "{tmp_path / "data"}"

[feed]
base_url = "ws://127.0.0.1:9"  # never reached: the start fails before the feeds
symbols = ["BTCUSDT", "ETHUSDT"]

[bars]
timeframes = ["1s"]

[[pairs]]
y = "ETHUSDT"
x = "BTCUSDT"
timeframes = ["1s"]
windows = [5]

{alerts}"""
    )
    return load_settings(config)


async def test_an_invalid_rules_file_stops_the_start_and_closes_the_notifiers(
    tmp_path: Path, recorder: RecordingNotifier
) -> None:
    daemon = Daemon(settings_for(tmp_path, INVALID_RULES))
    with pytest.raises(ConfigError):
        await asyncio.wait_for(daemon.run(asyncio.Event()), 30)
    assert recorder.calls == ["close"]
    assert not daemon.ready.is_set()


async def test_a_store_that_cannot_be_opened_stops_the_start_and_closes_the_notifiers(
    tmp_path: Path, recorder: RecordingNotifier
) -> None:
    settings = settings_for(tmp_path)
    settings.db_path.parent.mkdir(parents=True)
    settings.db_path.write_bytes(b"not an SQLite database, just some bytes " * 100)
    daemon = Daemon(settings)
    with pytest.raises(StoreError):
        await asyncio.wait_for(daemon.run(asyncio.Event()), 30)
    assert recorder.calls == ["close"]
    assert not daemon.ready.is_set()
