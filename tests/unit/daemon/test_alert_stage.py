"""The alert stage: events, notifications and states written together; silences; reloads."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest

from pairwatch.analytics.alerting import AlertState
from pairwatch.config.rules import Rule, RulesFile
from pairwatch.daemon.alert_rows import MUTED_FIRING, Notification, Silence, StoredState
from pairwatch.daemon.alerts import AlertStage
from pairwatch.daemon.health import Health, health_values
from pairwatch.errors import ConfigError
from pairwatch.events import AlertEvent, PairSnapshot, Trade
from support.timing import Clock

PAIR = "ETHUSDT/BTCUSDT"
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
SEC = 1000
T0 = 1_700_000_000_000


class Recorder:
    """The writer seam: what the stage queued, call by call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, list[Any]]] = []

    def put_alerts(
        self,
        events: Sequence[tuple[AlertEvent, bool]],
        notifications: Sequence[Notification] = (),
        states: Sequence[StoredState] = (),
        forget: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.calls.append(
            {
                "events": list(events),
                "notifications": list(notifications),
                "states": list(states),
                "forget": list(forget),
            }
        )

    def all(self, name: str) -> list[Any]:
        return [item for call in self.calls for item in call[name]]


def rule(**kw: Any) -> Rule:
    base: dict[str, Any] = {
        "name": "z",
        "pair": PAIR,
        "timeframe": "1s",
        "window": 30,
        "when": "abs(zscore) >= 2",
        "clear": "abs(zscore) < 0.5",
        "notify": ["log", {"mqtt": {"topic": "desk/z"}}],
    }
    return Rule.model_validate(base | kw)


def rules(*items: Rule) -> RulesFile:
    return RulesFile(rules=items)


def snap(z: float, ts: int) -> PairSnapshot:
    return PairSnapshot("ETHUSDT", "BTCUSDT", "1s", 30, ts, {"zscore": z, "hedge_ratio": 0.05})


def make(
    *items: Rule, clock: Clock | None = None, health: Health | None = None
) -> tuple[AlertStage, Recorder, list[int]]:
    writer = Recorder()
    kicks: list[int] = []
    stage = AlertStage(
        writer,
        health or Health(),
        pairs=[PAIR],
        symbols=SYMBOLS,
        clock=clock or Clock(T0),
        grace_ms=2 * SEC,
        admin_notify=("log", "telegram"),
        notifiers=("log", "mqtt"),
        on_stored=lambda: kicks.append(1),
    )
    stage.install(rules(*items))
    return stage, writer, kicks


def test_a_firing_event_its_notifications_and_its_state_are_queued_together() -> None:
    stage, writer, kicks = make(rule())
    stage.on_snapshots([snap(2.5, T0)])
    (call,) = writer.calls
    ((event, silenced),) = call["events"]
    assert (event.kind, event.rule, event.target, silenced) == ("firing", "z", PAIR, False)
    assert [(n.notifier, dict(n.route), n.key) for n in call["notifications"]] == [
        ("log", {}, event.key),
        ("mqtt", {"topic": "desk/z"}, event.key),
    ]
    assert call["notifications"][0].payload["event"]["value"] == 2.5
    (state,) = call["states"]
    assert (state.rule, state.target, state.timeframe, state.window) == ("z", PAIR, "1s", 30)
    assert (state.state.phase, state.state.since) == ("firing", T0 + SEC)
    assert kicks == [1]
    assert stage.counters()["firing"] == 1


def test_a_pending_transition_is_recorded_with_its_state_and_notifies_nobody() -> None:
    stage, writer, kicks = make(rule(**{"for": "3 bars"}))
    stage.on_snapshots([snap(2.5, T0)])
    (call,) = writer.calls
    assert [e.kind for e, _ in call["events"]] == ["pending"]
    assert call["notifications"] == []
    assert call["states"][0].state.since == T0 + SEC
    assert kicks == []


def test_a_silence_suppresses_the_firing_and_notifies_it_when_it_ends() -> None:
    clock = Clock(T0)
    stage, writer, _ = make(rule(), clock=clock)
    stage.set_silences([Silence(1, "*", None, T0, T0 + 60 * SEC, "test", None)])
    stage.on_snapshots([snap(2.5, T0)])
    ((event, silenced),) = writer.all("events")
    assert silenced
    assert writer.all("notifications") == []
    assert writer.calls[0]["states"][0].muted == MUTED_FIRING
    clock.now = T0 + 30 * SEC
    stage.on_clock(clock.now)  # still silenced
    assert writer.all("notifications") == []
    clock.now = T0 + 61 * SEC
    stage.on_clock(clock.now)
    assert [(n.notifier, n.key) for n in writer.all("notifications")] == [
        ("log", event.key),
        ("mqtt", event.key),
    ]


def test_a_resolution_during_a_silence_is_not_notified_nor_later() -> None:
    clock = Clock(T0)
    stage, writer, _ = make(rule(), clock=clock)
    stage.set_silences([Silence(1, "z", PAIR, T0, T0 + 60 * SEC, "test", None)])
    stage.on_snapshots([snap(2.5, T0)])
    stage.on_snapshots([snap(0.1, T0 + SEC)])
    assert [(e.kind, s) for e, s in writer.all("events")] == [
        ("firing", True),
        ("resolved", True),
    ]
    clock.now = T0 + 61 * SEC
    stage.on_clock(clock.now)
    assert writer.all("notifications") == []


def test_a_silence_of_another_rule_or_target_changes_nothing() -> None:
    stage, writer, _ = make(rule())
    stage.set_silences(
        [
            Silence(1, "other", None, T0, T0 + 60 * SEC, "test", None),
            Silence(2, "z", "SOLUSDT/BTCUSDT", T0, T0 + 60 * SEC, "test", None),
        ]
    )
    stage.on_snapshots([snap(2.5, T0)])
    assert [s for _, s in writer.all("events")] == [False]
    assert len(writer.all("notifications")) == 2


def test_stored_states_continue_and_a_firing_alert_does_not_notify_again() -> None:
    stage, writer, _ = make(rule())
    stage.on_snapshots([snap(2.5, T0)])
    stored = writer.calls[0]["states"]

    again, writer2, _ = make()
    again.install(rules(rule()), stored)
    again.on_snapshots([snap(2.6, T0 + SEC)])  # still beyond 2: stays firing, says nothing
    assert writer2.all("events") == []
    again.on_snapshots([snap(0.2, T0 + 2 * SEC)])
    assert [e.kind for e, _ in writer2.all("events")] == ["resolved"]


def test_a_pending_alert_keeps_its_start_across_a_restart() -> None:
    stage, writer, _ = make(rule(**{"for": "3 bars"}))
    stage.on_snapshots([snap(2.5, T0)])
    stage.checkpoint()
    again, writer2, _ = make()
    again.install(rules(rule(**{"for": "3 bars"})), writer.all("states"))
    again.on_snapshots([snap(2.5, T0 + SEC)])
    again.on_snapshots([snap(2.5, T0 + 2 * SEC)])
    ((event, _),) = writer2.all("events")
    assert event.kind == "firing"  # the third bar in a row, counting the one before the restart
    assert again.engine.states[("z", PAIR)].since == T0 + 3 * SEC


def test_a_stored_state_of_a_changed_window_or_a_removed_rule_is_forgotten() -> None:
    stage, writer, _ = make(rule(), rule(name="gone"))
    stage.on_snapshots([snap(2.5, T0)])
    stored = writer.calls[0]["states"]
    again, writer2, _ = make()
    again.install(rules(rule(window=100)), stored)
    assert sorted(writer2.all("forget")) == [("gone", PAIR), ("z", PAIR)]
    assert again.engine.states[("z", PAIR)].phase == "inactive"


def test_a_reload_carries_unchanged_alerts_and_resolves_removed_firing_ones() -> None:
    stage, writer, _ = make(rule(), rule(name="old"))
    stage.on_snapshots([snap(2.5, T0)])
    writer.calls.clear()
    stage.replace(rules(rule(when="abs(zscore) >= 2.2"), rule(name="new")))
    events = writer.all("events")
    assert [(e.rule, e.kind) for e, _ in events] == [("old", "resolved")]
    assert "rule removed or changed" in events[0][0].message
    assert {n.key for n in writer.all("notifications")} == {events[0][0].key}
    assert writer.all("forget") == [("old", PAIR)]
    assert stage.engine.states[("z", PAIR)].phase == "firing"  # carried over
    assert stage.engine.states[("new", PAIR)].phase == "inactive"
    stage.on_snapshots([snap(2.6, T0 + SEC)])
    assert [(e.rule, e.kind) for e, _ in writer.all("events")] == [
        ("old", "resolved"),
        ("new", "firing"),
    ]


def test_an_invalid_reload_keeps_the_rules_and_sends_one_notice_to_the_admin_routes() -> None:
    stage, writer, kicks = make(rule())

    def broken() -> RulesFile:
        raise ConfigError(["rules.yaml:3:5: z: when: unknown metric 'zz'"])

    ok = asyncio.run(stage.reload(broken, "test"))
    assert not ok
    notices = writer.all("notifications")
    assert [n.notifier for n in notices] == ["log", "telegram"]
    assert notices[0].payload["title"] == "rules reload failed"
    assert "rules.yaml:3:5" in notices[0].payload["text"]
    assert stage.counters()["reload_failures"] == 1
    assert [r.name for r in stage.engine.rules] == ["z"]
    assert kicks == [1]


def test_a_target_whose_snapshots_stop_is_evaluated_as_no_data_once_per_missing_bar() -> None:
    clock = Clock(T0 + 3 * SEC)  # the snapshot of the bar [T0, T0 + 1 s) arrives at T0 + 3 s
    stage, writer, _ = make(rule(no_data="alert", **{"for": "2 bars"}), clock=clock)
    stage.on_snapshots([snap(2.5, T0)])
    stage.on_snapshots([snap(2.5, T0 + SEC)])
    assert [e.kind for e, _ in writer.all("events")] == ["pending", "firing"]
    for now in (T0 + 7 * SEC, T0 + 7 * SEC + 400):  # 2 bars + 2 s grace after receipt: not yet
        clock.now = now
        stage.on_clock(now)
    assert len(writer.all("events")) == 2
    for now in (T0 + 7 * SEC + 1, T0 + 7 * SEC + 500, T0 + 8 * SEC + 1):
        clock.now = now
        stage.on_clock(now)
    # One no-data evaluation per missing bar, at that bar's close (bar time, not the clock):
    # the bars closing at T0 + 6 s and T0 + 7 s; the second makes the 2-bar no-data alert.
    ((no_data, _),) = writer.all("events")[2:]
    assert (no_data.kind, no_data.at, no_data.since) == ("no_data", T0 + 7 * SEC, T0 + 6 * SEC)


def test_bars_closed_at_start_up_do_not_make_their_targets_stale_at_once() -> None:
    # Bars left open at the last stop are closed at start and evaluated: their bar times
    # are old, but they were received now, so the live bars have time to come.
    clock = Clock(T0 + 3_600 * SEC)
    stage, writer, _ = make(rule(no_data="resolve"), clock=clock)
    stage.on_snapshots([snap(2.5, T0)])
    for seconds in range(1, 4):
        clock.now = T0 + (3_600 + seconds) * SEC
        stage.on_clock(clock.now)
    assert [e.kind for e, _ in writer.all("events")] == ["firing"]


def test_events_of_one_alert_at_the_same_time_get_distinct_keys() -> None:
    stage, writer, _ = make(rule())
    stage.on_snapshots([snap(2.5, T0 + 10 * SEC)])
    for z in (0.1, 2.5, 0.1, 2.5):  # bars from the past: the clock is clamped to T0 + 11 s
        stage.on_snapshots([snap(z, T0)])
    events = [e for e, _ in writer.all("events")]
    assert [(e.kind, e.at) for e in events] == [("firing", T0 + 11 * SEC)] + [
        (k, T0 + 11 * SEC) for k in ("resolved", "firing", "resolved", "firing")
    ]
    assert [e.seq for e in events] == [0, 0, 1, 1, 2]
    assert len({e.key for e in events}) == 5
    assert events[2].key.endswith("|firing|" + str(T0 + 11 * SEC) + "#1")


def test_a_resolution_says_when_the_firing_began() -> None:
    stage, writer, _ = make(rule())
    stage.on_snapshots([snap(2.5, T0)])
    stage.on_snapshots([snap(0.1, T0 + 5 * SEC)])
    assert [(e.kind, e.since) for e, _ in writer.all("events")] == [
        ("firing", T0 + SEC),
        ("resolved", T0 + SEC),
    ]


def test_a_muted_firing_and_a_muted_no_data_alert_are_held_apart() -> None:
    clock = Clock(T0)
    stage, writer, _ = make(rule(no_data="alert", **{"for": "1 bar"}), clock=clock)
    stage.set_silences([Silence(1, "*", None, T0, T0 + 60 * SEC, "test", None)])
    stage.on_snapshots([snap(2.5, T0)])  # firing, held back
    thin = PairSnapshot("ETHUSDT", "BTCUSDT", "1s", 30, T0 + SEC, {}, thin=True)
    stage.on_snapshots([thin])  # no data: the no-data alert, held back too
    stage.on_snapshots([snap(2.6, T0 + 2 * SEC)])  # data again: its end, never told
    assert [(e.kind, s) for e, s in writer.all("events")] == [
        ("firing", True),
        ("no_data", True),
        ("data", True),
    ]
    assert writer.calls[-1]["states"][0].muted == MUTED_FIRING
    clock.now = T0 + 61 * SEC
    stage.on_snapshots([snap(2.6, T0 + 60 * SEC)])  # still firing, the feed alive
    stage.on_clock(clock.now)
    firing = writer.all("events")[0][0]
    assert [n.key for n in writer.all("notifications")] == [firing.key] * 2  # log and mqtt
    assert writer.calls[-1]["states"][0].muted == 0  # written with the notifications


def test_an_untold_end_clears_a_held_firing_even_without_notify_resolved() -> None:
    clock = Clock(T0)
    stage, writer, _ = make(rule(notify_resolved=False), clock=clock)
    stage.set_silences([Silence(1, "z", None, T0, T0 + 60 * SEC, "test", None)])
    stage.on_snapshots([snap(2.5, T0)])
    stage.on_snapshots([snap(0.1, T0 + SEC)])  # resolved (not notified anyway)
    clock.now = T0 + 61 * SEC
    stage.on_clock(clock.now)  # the silence ended: nothing raised, nothing to tell
    stage.on_snapshots([snap(2.5, T0 + 62 * SEC)])  # a new firing, told once
    keys = [n.key for n in writer.all("notifications")]
    assert len(keys) == 2
    assert set(keys) == {writer.all("events")[-1][0].key}


def test_health_rules_run_on_the_clock() -> None:
    health = Health()
    clock = Clock(T0)
    silent = rule(
        name="silent", pair=None, symbol="*", timeframe=None, window=None,
        when="seconds_since_trade > 30", clear=None, **{"for": "10s"},
    )  # fmt: skip
    stage, writer, _ = make(silent, clock=clock, health=health)
    health.last_trade["BTCUSDT"] = Trade("BTCUSDT", 1, 100.0, 1.0, T0, T0 + 5, False)
    for seconds in (20, 40, 51):
        clock.now = T0 + seconds * SEC
        stage.on_clock(clock.now)
    assert [(e.target, e.kind, e.at) for e, _ in writer.all("events")] == [
        ("BTCUSDT", "pending", T0 + 40 * SEC),
        ("BTCUSDT", "firing", T0 + 51 * SEC),
    ]


def test_health_values_of_a_symbol() -> None:
    health = Health()
    health.last_trade["BTCUSDT"] = Trade("BTCUSDT", 1, 100.0, 1.0, T0, T0 + 250, False)
    health.gap_times["BTCUSDT"] = collections.deque([T0 - 70 * SEC, T0, T0 + SEC])
    values = health_values(health, SYMBOLS, T0 + 10 * SEC, T0 + 10 * SEC - 60 * SEC)
    assert values == {
        "BTCUSDT": {"feed_lag_ms": 250.0, "seconds_since_trade": 9.75, "gaps": 2.0},
        "ETHUSDT": {},
    }


def test_checkpoint_writes_only_states_that_changed() -> None:
    stage, writer, _ = make(rule(), rule(name="z2", when="abs(zscore) >= 5"))
    stage.on_snapshots([snap(2.5, T0)])  # z fires (state written with its event); z2 stays
    writer.calls.clear()
    stage.checkpoint()
    assert [(s.rule, s.state.last_at) for s in writer.all("states")] == [("z2", T0 + SEC)]
    writer.calls.clear()
    stage.checkpoint()
    assert writer.calls == []


def test_a_failure_inside_evaluation_is_counted_and_never_raised() -> None:
    stage, writer, _ = make(rule())

    def boom(*_: object) -> None:
        raise RuntimeError("disk on fire")

    writer.put_alerts = boom  # type: ignore[method-assign]
    stage.on_snapshots([snap(2.5, T0)])
    assert stage.counters()["errors"] == 1


@pytest.mark.parametrize("phase", ["pending", "firing"])
def test_state_objects_are_copied_when_queued(phase: str) -> None:
    # The writer thread reads states later: it must get a copy, not the live object.
    stage, writer, _ = make(rule(**({"for": "3 bars"} if phase == "pending" else {})))
    stage.on_snapshots([snap(2.5, T0)])
    queued = writer.calls[0]["states"][0].state
    live = stage.engine.states[("z", PAIR)]
    assert queued is not live
    assert isinstance(queued, AlertState)
    assert dataclasses.asdict(queued)["phase"] == phase


def test_a_telegram_route_without_a_chat_becomes_one_row_per_configured_chat() -> None:
    writer = Recorder()
    stage = AlertStage(
        writer,
        Health(),
        pairs=[PAIR],
        symbols=SYMBOLS,
        clock=Clock(T0),
        admin_notify=("telegram",),
        notifiers=("telegram",),
        defaults={"telegram": [{"chat": "1"}, {"chat": "-100"}]},
    )
    stage.install(rules(rule(notify=["telegram", {"telegram": {"chat": "7"}}])))
    stage.on_snapshots([snap(2.5, T0)])
    assert [(n.notifier, dict(n.route)) for n in writer.all("notifications")] == [
        ("telegram", {"chat": "1"}),
        ("telegram", {"chat": "-100"}),
        ("telegram", {"chat": "7"}),
    ]
    assert len({n.key for n in writer.all("notifications")}) == 1  # one event, one key
