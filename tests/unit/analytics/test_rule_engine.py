"""The rule engine: targets, indexing, events and their messages."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pairwatch.analytics.alerting import AlertState, step
from pairwatch.analytics.rule_engine import RuleEngine, expand
from pairwatch.config.rules import Rule
from pairwatch.events import PairSnapshot, SymbolSnapshot

PAIRS = ["ETHUSDT/BTCUSDT", "SOLUSDT/BTCUSDT", "ETHUSDT/SOLUSDT"]
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
MIN = 60_000


def rule(**kw: Any) -> Rule:
    base: dict[str, Any] = {
        "name": "z",
        "pair": "ETHUSDT/BTCUSDT",
        "timeframe": "1m",
        "window": 30,
        "when": "abs(zscore) >= 2",
    }
    return Rule.model_validate(base | kw)


def snap(pair: str, z: float, t: int = 0, **kw: Any) -> PairSnapshot:
    y, x = pair.split("/")
    metrics = {"zscore": z, "hedge_ratio": 0.0531, **kw.pop("metrics", {})}
    return PairSnapshot(y, x, kw.pop("timeframe", "1m"), kw.pop("window", 30), t, metrics, **kw)


def test_globs_and_lists_expand_over_the_configured_names_in_order() -> None:
    assert expand(["*/BTCUSDT"], PAIRS) == ["ETHUSDT/BTCUSDT", "SOLUSDT/BTCUSDT"]
    assert expand(["ethusdt/*", "SOLUSDT/BTCUSDT"], PAIRS) == PAIRS
    assert expand(["XRPUSDT/*"], PAIRS) == []
    assert expand(["solusdt/btcusdt", "ETHUSDT/BTCUSDT"], PAIRS) == PAIRS[:2]  # plain names


def test_a_rule_sees_only_its_targets_timeframe_and_window() -> None:
    engine = RuleEngine([rule(pair="*/BTCUSDT")], pairs=PAIRS, symbols=SYMBOLS)
    assert sorted(t for _, t in engine.targets()) == ["ETHUSDT/BTCUSDT", "SOLUSDT/BTCUSDT"]
    events = engine.on_pair_snapshots(
        [
            snap("ETHUSDT/BTCUSDT", 2.5),
            snap("SOLUSDT/BTCUSDT", 2.5, timeframe="5m"),  # other timeframe
            snap("SOLUSDT/BTCUSDT", 2.5, window=100),  # other window
            snap("ETHUSDT/SOLUSDT", 2.5),  # not a target
            snap("SOLUSDT/BTCUSDT", 2.5, thin=True),  # thin: no data, whatever it carries
        ]
    )
    assert [(e.target, e.kind) for e in events] == [("ETHUSDT/BTCUSDT", "firing")]


def test_an_event_carries_values_message_and_a_stable_key() -> None:
    r = rule(
        message="{pair} {timeframe} z = {zscore:+.2f} ≥ {threshold}, β {hedge_ratio:.4f} ({state})",
        labels={"desk": "crypto"},
        severity="critical",
    )
    engine = RuleEngine([r], pairs=PAIRS, symbols=SYMBOLS)
    (event,) = engine.on_pair_snapshots([snap("ETHUSDT/BTCUSDT", 2.41, t=5 * MIN)])
    assert event.message == "ETHUSDT/BTCUSDT 1m z = +2.41 ≥ 2.0, β 0.0531 (firing)"
    assert (event.at, event.value, event.threshold, event.metric) == (6 * MIN, 2.41, 2.0, "zscore")
    assert (event.severity, event.labels, event.notify) == ("critical", {"desk": "crypto"}, True)
    assert event.values == {"zscore": 2.41, "hedge_ratio": 0.0531}
    assert event.key == f"z|ETHUSDT/BTCUSDT|1m|30|firing|{6 * MIN}"


def test_missing_metrics_render_as_nan_not_an_error() -> None:
    r = rule(message="{pair}: corr {correlation:.2f}, z {zscore:.1f}")
    engine = RuleEngine([r], pairs=PAIRS, symbols=SYMBOLS)
    (event,) = engine.on_pair_snapshots([snap("ETHUSDT/BTCUSDT", 3.0)])
    assert event.message == "ETHUSDT/BTCUSDT: corr nan, z 3.0"


def test_which_transitions_are_notifications() -> None:
    r = rule(**{"for": "2 bars"}, notify_resolved=False)
    engine = RuleEngine([r], pairs=PAIRS, symbols=SYMBOLS)
    kinds = []
    for t, z in enumerate([2.5, 2.5, 0.0]):
        kinds += [(e.kind, e.notify) for e in engine.on_pair_snapshots([snap(PAIRS[0], z, t)])]
    assert kinds == [("pending", False), ("firing", True), ("resolved", False)]


def test_symbol_rules_get_their_snapshot_and_health_values() -> None:
    vol = Rule.model_validate(
        {"name": "vol", "symbol": "BTC*", "timeframe": "1m", "window": 30,
         "when": {"all": ["volatility > 0.8", "feed_lag_ms < 500"]},
         "message": "{symbol} vol {volatility:.0%} lag {feed_lag_ms:.0f} ms"}
    )  # fmt: skip
    stale = Rule.model_validate(
        {"name": "stale", "symbol": "*", "when": "seconds_since_trade > 30", "severity": "critical"}
    )
    engine = RuleEngine([vol, stale], pairs=PAIRS, symbols=SYMBOLS)
    health = {"BTCUSDT": {"feed_lag_ms": 120.0, "seconds_since_trade": 2.0},
              "ETHUSDT": {"feed_lag_ms": 90.0, "seconds_since_trade": 45.0}}  # fmt: skip
    snapshots = [
        SymbolSnapshot("BTCUSDT", "1m", 30, 0, {"volatility": 0.93}),
        SymbolSnapshot("ETHUSDT", "1m", 30, 0, {"volatility": 2.0}),  # not a target of vol
    ]
    (event,) = engine.on_symbol_snapshots(snapshots, health)
    assert event.message == "BTCUSDT vol 93% lag 120 ms"
    (late,) = engine.on_health(health, at=90_000)
    assert (late.rule, late.target, late.kind, late.at, late.timeframe) == (
        "stale", "ETHUSDT", "firing", 90_000, None,
    )  # fmt: skip
    assert math.isclose(late.value, 45.0)


@settings(max_examples=200, deadline=None)
@given(
    zs=st.lists(st.one_of(st.floats(-4, 4), st.just(math.nan)), min_size=1, max_size=40),
    jumps=st.lists(st.integers(-3, 5), min_size=40, max_size=40),
    when=st.sampled_from(["abs(zscore) >= 2", "zscore < -1", "zscore crosses_above 1"]),
    clear=st.sampled_from([None, "abs(zscore) < 0.5", "zscore crosses_below 0"]),
    no_data=st.sampled_from(["keep", "resolve", "alert"]),
)
def test_the_engine_fast_path_changes_nothing(
    zs: list[float], jumps: list[int], when: str, clear: str | None, no_data: str
) -> None:
    # The engine skips step() for inactive alerts whose plain comparison is false; running
    # step() alone on every bar must give the same transitions and states.
    r = rule(when=when, clear=clear, no_data=no_data)
    engine = RuleEngine([r], pairs=PAIRS, symbols=SYMBOLS)
    state = AlertState()
    t = 10
    for i, z in enumerate(zs):
        t += jumps[i]  # includes clock jumps backwards
        s = snap(PAIRS[0], z, t * MIN)
        got = [(e.kind, e.at) for e in engine.on_pair_snapshots([s])]
        _, transitions = step(r, state, s.metrics, (t + 1) * MIN)
        assert got == [(x.kind, x.at) for x in transitions]
    assert engine.states[("z", PAIRS[0])] == state


def test_a_thin_bar_is_an_evaluation_without_data() -> None:
    # Review fix: thin snapshots were skipped, so `no_data: resolve` never saw them.
    engine = RuleEngine([rule(no_data="resolve")], pairs=PAIRS, symbols=SYMBOLS)
    kinds = [e.kind for e in engine.on_pair_snapshots([snap(PAIRS[0], 2.5, 0)])]
    thin = snap(PAIRS[0], 2.5, MIN, thin=True)
    kinds += [e.kind for e in engine.on_pair_snapshots([thin])]
    assert kinds == ["firing", "resolved"]


def test_a_health_rule_with_a_timeframe_runs_on_the_clock_and_states_read_plainly() -> None:
    # Review fixes: a health rule with a timeframe was indexed where nothing looked; the
    # {state} of a repeat read "repeat" where the docs promise "firing".
    r = Rule.model_validate(
        {"name": "stale", "symbol": "BTCUSDT", "timeframe": "1m", "repeat_every": "1m",
         "when": "seconds_since_trade > 30", "message": "{symbol} {state}"}
    )  # fmt: skip
    engine = RuleEngine([r], pairs=PAIRS, symbols=SYMBOLS)
    health = {"BTCUSDT": {"seconds_since_trade": 45.0}}
    events = engine.on_health(health, at=MIN) + engine.on_health(health, at=2 * MIN)
    assert [(e.kind, e.message) for e in events] == [
        ("firing", "BTCUSDT firing"), ("repeat", "BTCUSDT firing"),
    ]  # fmt: skip
