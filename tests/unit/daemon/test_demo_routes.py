"""``pairwatch demo`` with Telegram in its environment: the example rules' alerts go there."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pairwatch.config.rules_load import load_rules
from pairwatch.config.settings import Settings
from pairwatch.daemon.alert_rows import OutboxItem
from pairwatch.daemon.alert_service import AlertRuntime
from pairwatch.daemon.demo import load_demo_settings
from pairwatch.daemon.health import Health
from pairwatch.events import PairSnapshot
from pairwatch.notifiers.log import LogNotifier
from support.alert_writer import RecordingAlertWriter

T0 = 1_700_000_000_000
EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "rules.example.yaml"


class Telegram:
    """Stands in for the Telegram notifier the daemon builds when ``telegram.token`` is set."""

    name = "telegram"

    async def deliver(self, item: OutboxItem) -> None:
        raise AssertionError("not delivered in this test")


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear pairwatch's variables, then set Telegram's as a user of the demo would."""
    for name in os.environ:
        if name.upper().startswith("PAIRWATCH_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)
    monkeypatch.setenv("PAIRWATCH_TELEGRAM__TOKEN", "123456:ABC-test")
    monkeypatch.setenv("PAIRWATCH_TELEGRAM__CHAT_IDS", "111,-100222")


def fast_z_firing(settings: Settings) -> list[tuple[str, dict[str, str]]]:
    """Fire the example's ethbtc-z-fast in the demo's alert runtime; return its outbox rows."""
    assert settings.telegram.enabled  # so the daemon's notifiers are log and telegram
    writer = RecordingAlertWriter()
    runtime = AlertRuntime(
        settings,
        writer,  # type: ignore[arg-type]  # the alert stage only calls put_alerts
        Health(),
        clock=lambda: T0,
        notifiers=[LogNotifier(), Telegram()],
    )
    assert settings.alerts.rules_file is not None
    runtime.stage.install(load_rules(settings.alerts.rules_file, settings))
    for bar in range(3):  # |z| >= 2 on 3 bars of 1 s: it fires
        values = {"zscore": 2.5, "hedge_ratio": 0.05}
        ts = T0 + bar * 1000
        runtime.stage.on_snapshots([PairSnapshot("ETHUSDT", "BTCUSDT", "1s", 30, ts, values)])
    assert {n.payload["event"]["rule"] for n in writer.notifications} == {"ethbtc-z-fast"}
    return [(n.notifier, dict(n.route)) for n in writer.notifications]


@pytest.mark.usefixtures("environ")
def test_a_fresh_demo_with_telegram_set_routes_its_alerts_to_every_chat(tmp_path: Path) -> None:
    settings = load_demo_settings(None, tmp_path)

    assert settings.alerts.rules_file == tmp_path.resolve() / "rules.yaml"
    assert settings.alerts.rules_file.read_text() == EXAMPLE.read_text()
    assert fast_z_firing(settings) == [
        ("log", {}),
        ("telegram", {"chat": "111"}),
        ("telegram", {"chat": "-100222"}),
    ]


@pytest.mark.usefixtures("environ")
def test_an_earlier_demo_copy_is_left_alone_and_its_log_only_routes_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = EXAMPLE.read_text().replace("notify: [all]", "notify: [log]").replace("- all", "- log")
    (tmp_path / "rules.yaml").write_text(old)

    with caplog.at_level(logging.WARNING, "pairwatch.daemon.demo"):
        settings = load_demo_settings(None, tmp_path)

    assert settings.alerts.rules_file is not None
    assert settings.alerts.rules_file.read_text() == old
    assert fast_z_firing(settings) == [("log", {})]
    assert [r.getMessage() for r in caplog.records] == [
        f"demo: no rule of {tmp_path.resolve() / 'rules.yaml'} routes to the configured "
        "notifiers telegram: write 'notify: [all]' under its defaults (as the packaged "
        "example does) or delete the file for a fresh copy"
    ]
