"""Routes to outbox rows: ``all`` is every configured notifier, each destination once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from pairwatch.config.rules import Rule, RulesFile
from pairwatch.daemon.alert_rows import Silence
from pairwatch.daemon.alert_support import destinations
from pairwatch.daemon.alerts import AlertStage
from pairwatch.daemon.health import Health
from pairwatch.errors import ConfigError
from pairwatch.events import PairSnapshot
from support.alert_writer import RecordingAlertWriter
from support.timing import Clock

PAIR = "ETHUSDT/BTCUSDT"
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
SEC = 1000
T0 = 1_700_000_000_000
CONFIGURED = ("log", "telegram", "mqtt")
CHATS = {"telegram": [{"chat": "111"}, {"chat": "-100222"}]}
EVERY = [
    ("log", {}),
    ("telegram", {"chat": "111"}),
    ("telegram", {"chat": "-100222"}),
    ("mqtt", {}),
]


def snap(z: float, ts: int) -> PairSnapshot:
    return PairSnapshot("ETHUSDT", "BTCUSDT", "1s", 30, ts, {"zscore": z, "hedge_ratio": 0.05})


def make(
    notify: list[Any],
    *,
    notifiers: Sequence[str] = CONFIGURED,
    admin_notify: Sequence[str] = ("log",),
    clock: Clock | None = None,
) -> tuple[AlertStage, RecordingAlertWriter]:
    writer = RecordingAlertWriter()
    stage = AlertStage(
        writer,
        Health(),
        pairs=[PAIR],
        symbols=SYMBOLS,
        clock=clock or Clock(T0),
        admin_notify=admin_notify,
        notifiers=notifiers,
        defaults=CHATS,
    )
    rule = Rule.model_validate(
        {"name": "z", "pair": PAIR, "timeframe": "1s", "window": 30,
         "when": "abs(zscore) >= 2", "notify": notify}
    )  # fmt: skip
    stage.install(RulesFile(rules=(rule,)))
    return stage, writer


def fired(notify: list[Any], notifiers: Sequence[str] = CONFIGURED) -> list[tuple[str, Any]]:
    """Return the (notifier, route) of the rows a firing of a rule routed to ``notify`` makes."""
    stage, writer = make(notify, notifiers=notifiers)
    stage.on_snapshots([snap(2.5, T0)])
    ((event, _),) = writer.events
    rows = writer.notifications
    assert {n.key for n in rows} == {event.key}
    return [(n.notifier, dict(n.route)) for n in rows]


def test_all_is_a_row_per_configured_notifier_and_per_configured_chat() -> None:
    assert fired(["all"]) == EVERY


def test_all_with_an_explicit_chat_adds_that_chat() -> None:
    assert fired(["all", {"telegram": {"chat": "-100333"}}]) == [
        *EVERY,
        ("telegram", {"chat": "-100333"}),
    ]


def test_all_with_an_explicit_topic_keeps_the_default_topic_too() -> None:
    assert fired([{"mqtt": {"topic": "desk/z"}}, "all"]) == [
        ("mqtt", {"topic": "desk/z"}),
        ("log", {}),
        ("telegram", {"chat": "111"}),
        ("telegram", {"chat": "-100222"}),
        ("mqtt", {}),
    ]


def test_a_destination_reached_twice_gets_one_row() -> None:
    notify = ["all", "log", "telegram", {"telegram": {"chat": "111"}}, "all", "mqtt"]
    assert fired(notify) == EVERY
    assert fired(["telegram", "telegram"]) == EVERY[1:3]


def test_all_is_the_notifiers_configured_now_so_a_restart_picks_up_a_new_one() -> None:
    assert fired(["all"], notifiers=("log",)) == [("log", {})]
    assert fired(["all"], notifiers=("log", "webhook")) == [("log", {}), ("webhook", {})]


def test_all_routes_a_notification_released_by_a_silence_too() -> None:
    clock = Clock(T0)
    stage, writer = make(["all"], clock=clock)
    stage.set_silences([Silence(1, "*", None, T0, T0 + 60 * SEC, "test", None)])
    stage.on_snapshots([snap(2.5, T0)])
    assert writer.notifications == []
    clock.now = T0 + 61 * SEC
    stage.on_clock(clock.now)
    assert [(n.notifier, dict(n.route)) for n in writer.notifications] == EVERY


def test_all_is_never_warned_about_as_not_configured(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        make(["all", "webhook"], admin_notify=("all",))
    assert [r.getMessage() for r in caplog.records] == [
        "notifiers not configured, their notifications wait in the outbox until they are: "
        "z → webhook"
    ]


def test_admin_notices_to_all_go_to_every_configured_notifier() -> None:
    stage, writer = make(["log"], admin_notify=("all", "log"))

    def broken() -> RulesFile:
        raise ConfigError(["rules.yaml:3:5: z: when: unknown metric 'zz'"])

    assert not asyncio.run(stage.reload(broken, "test"))
    notices = writer.notifications
    assert [(n.notifier, dict(n.route)) for n in notices] == EVERY
    assert {n.payload["title"] for n in notices} == {"rules reload failed"}


def test_destinations_without_defaults_keep_a_route_per_notifier() -> None:
    routes = [("all", {}), ("webhook", {"url": "https://a.example/h"})]
    assert destinations(routes, ("log", "webhook")) == [
        ("log", {}),
        ("webhook", {}),
        ("webhook", {"url": "https://a.example/h"}),
    ]
