"""The rule engine's fast paths give exactly what the general path gives.

``compile_condition`` against ``Condition.holds``, ``compile_quiet`` (then ``step`` when it
declines) against ``step`` alone, and the engine against a plain loop of ``step`` and
``render`` over the targets — on random rules, values, clocks and restored states.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairwatch.analytics.alert_quiet import compile_quiet
from pairwatch.analytics.alerting import NOTIFYING, AlertState, Transition, step
from pairwatch.analytics.conditions import (
    OPERATORS,
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    compile_condition,
)
from pairwatch.analytics.rule_engine import RuleEngine, expand, render
from pairwatch.config.rules import Rule
from pairwatch.events import AlertEvent, PairSnapshot

MIN = 60_000
METRICS = ("zscore", "correlation", "half_life")
NAN = math.nan

# --- compiled conditions -------------------------------------------------------------------

_leaves = st.builds(
    Comparison,
    metric=st.sampled_from(METRICS),
    op=st.sampled_from(OPERATORS),
    threshold=st.sampled_from([-1.0, 0.0, 1.0, 2.5]),
    absolute=st.booleans(),
)
_conditions: st.SearchStrategy[Condition] = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, min_size=0, max_size=4).map(lambda ps: AllOf(tuple(ps))),
        st.lists(inner, min_size=0, max_size=4).map(lambda ps: AnyOf(tuple(ps))),
    ),
    max_leaves=10,
)
_value = st.one_of(
    st.sampled_from([-2.5, -1.0, -0.0, 0.0, 1.0, 2.5, NAN, math.inf, -math.inf]),
    st.floats(allow_nan=True),
    st.integers(-3, 3),
    st.sampled_from([-2.5, 0.0, 1.0, NAN]).map(np.float64),  # compares to numpy booleans
    st.none(),
)
_values = st.dictionaries(st.sampled_from(METRICS), _value)


@settings(max_examples=500)
@given(condition=_conditions, values=_values, previous=st.one_of(st.none(), _values))
def test_a_compiled_condition_holds_exactly_when_the_condition_does(
    condition: Condition,
    values: dict[str, float],
    previous: dict[str, float] | None,
) -> None:
    expected = condition.holds(values, previous)
    got = compile_condition(condition)(values, previous)
    assert got is expected or (type(got) is type(expected) and got == expected)


# --- the quiet check against step() -------------------------------------------------------

WHEN = [
    "abs(zscore) >= 2",
    "zscore < -1",
    "zscore != 0",
    "zscore crosses_above 1",
    "abs(zscore) crosses_below 1",
    {"all": ["abs(zscore) >= 2", "correlation >= 0.5"]},
    {"any": ["abs(zscore) >= 2", "correlation < 0", "half_life < 1"]},
    {"all": ["zscore crosses_above 1", "correlation >= 0.5"]},
    {"any": [{"all": ["zscore > 1", "correlation > 0"]}, "half_life crosses_below 1"]},
]
CLEAR = [None, "abs(zscore) < 0.5", "zscore crosses_below 0", "correlation crosses_above 1"]


def pair_rule(
    draw: st.DrawFn,
    name: str = "r",
    pair: str = "*",
    window: int = 30,
    when: Any = None,
    no_data: str | None = None,
) -> Rule:
    """Draw a pair rule over every lifecycle option (a crossing takes no ``for``)."""
    when = draw(st.sampled_from(WHEN)) if when is None else when
    options: dict[str, Any] = {
        "name": name,
        "pair": pair,
        "timeframe": "1m",
        "window": window,
        "when": when,
        "clear": draw(st.sampled_from(CLEAR)),
        "keep_firing_for": draw(st.sampled_from(["0s", "1m", "3m"])),
        "repeat_every": draw(st.sampled_from([None, "1m", "2m", "5m"])),
        "no_data": no_data or draw(st.sampled_from(["keep", "resolve", "alert"])),
        "notify_resolved": draw(st.booleans()),
        "message": draw(st.sampled_from(["{pair} {zscore:+.2f} {state}", "{rule} {value}"])),
    }
    if not (isinstance(when, str) and "crosses" in when):
        options["for"] = draw(st.sampled_from(["0 bars", "1 bar", "3 bars", "0s", "2m", "3m"]))
    return Rule.model_validate(options)


_reading = st.one_of(
    st.sampled_from([-2.5, -1.0, 0.0, 0.3, 1.0, 1.5, 2.5, NAN]),
    st.integers(-3, 3),
    st.sampled_from([-2.5, 0.3, 1.5, NAN]).map(np.float64),
)
_point = st.fixed_dictionaries(
    {"zscore": _reading}, optional={"correlation": _reading, "half_life": _reading}
).map(lambda d: {k: v for k, v in d.items() if k != "zscore" or v != -3})  # -3: missing


@st.composite
def _restored(draw: st.DrawFn) -> dict[str, Any]:
    """Draw the fields of a state as someone restoring persisted state might write them."""
    since = st.one_of(st.none(), st.integers(0, 40).map(lambda k: k * MIN))
    rarely = st.one_of(st.none(), st.none(), st.none(), since)
    return {
        "phase": draw(st.sampled_from(["inactive", "pending", "firing"])),
        "since": draw(since),
        "held_bars": draw(st.integers(0, 4)),
        "notified_at": draw(since),
        "resolving_since": draw(since),
        "last_at": draw(since),
        "seen_data": draw(st.booleans()),
        "no_data_since": draw(rarely),
        "no_data_bars": draw(st.integers(0, 3)),
        "no_data_firing": draw(st.booleans()),
    }


def _fields(state: AlertState) -> dict[str, Any]:
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}


def _run(action: Any) -> tuple[str, Any]:
    try:
        return "ok", action()
    except AssertionError as exc:  # a restored state step() itself refuses
        return "refused", str(exc)


@settings(max_examples=400, deadline=None)
@given(
    rule=st.composite(pair_rule)(),
    points=st.lists(_point, min_size=1, max_size=40),
    jumps=st.lists(st.integers(-3, 5), min_size=40, max_size=40),
    restores=st.lists(st.one_of(st.none(), _restored()), min_size=40, max_size=40),
)
def test_the_quiet_check_then_step_equals_step_alone(
    rule: Rule,
    points: list[dict[str, float]],
    jumps: list[int],
    restores: list[dict[str, Any] | None],
) -> None:
    quiet = compile_quiet(rule)
    fast, slow = AlertState(), AlertState()
    t = 10
    for i, values in enumerate(points):
        if restores[i] is not None:  # written in place, as a restore does
            for name, value in restores[i].items():
                setattr(fast, name, value)
                setattr(slow, name, value)
        t += jumps[i]  # includes clock jumps backwards
        now = t * MIN

        def fast_step(values: dict[str, float] = values, now: int = now) -> list[Transition]:
            return [] if quiet(fast, values, now) else step(rule, fast, values, now)[1]

        def slow_step(values: dict[str, float] = values, now: int = now) -> list[Transition]:
            return step(rule, slow, values, now)[1]

        assert repr(_run(fast_step)) == repr(_run(slow_step))  # repr: NaN values compare equal
        assert _fields(fast) == _fields(slow)
        assert fast.previous is slow.previous


@pytest.mark.parametrize("no_data", ["keep", "resolve", "alert"])
@pytest.mark.parametrize("when", WHEN)
@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    fields=_restored(),
    previous=st.one_of(st.none(), _point),
    values=_point,
    now=st.integers(0, 40).map(lambda k: k * MIN),
)
def test_the_quiet_check_then_step_equals_step_alone_from_any_state(
    when: Any,
    no_data: str,
    data: st.DataObject,
    fields: dict[str, Any],
    previous: dict[str, float] | None,
    values: dict[str, float],
    now: int,
) -> None:
    rule = data.draw(st.composite(pair_rule)(when=when, no_data=no_data))
    fast, slow = AlertState(**fields, previous=previous), AlertState(**fields, previous=previous)
    quiet = compile_quiet(rule)

    def fast_step() -> list[Transition]:
        return [] if quiet(fast, values, now) else step(rule, fast, values, now)[1]

    assert repr(_run(fast_step)) == repr(_run(lambda: step(rule, slow, values, now)[1]))
    assert _fields(fast) == _fields(slow)
    assert fast.previous is slow.previous


# --- the engine against a plain loop of step() -----------------------------------------------

PAIRS = ["ETHUSDT/BTCUSDT", "SOLUSDT/BTCUSDT"]
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def _reference(
    rules: list[Rule], snapshots: list[list[PairSnapshot]]
) -> tuple[list[AlertEvent], dict[tuple[str, str], AlertState]]:
    """Evaluate as the engine is specified: every rule × target, step() and render()."""
    states: dict[tuple[str, str], AlertState] = {}
    index: dict[tuple[str, str | None, int | None], list[tuple[Rule, AlertState]]] = {}
    for rule in rules:
        assert rule.pair is not None
        for target in expand(rule.pair, PAIRS):
            state = states[(rule.name, target)] = AlertState()
            index.setdefault((target, rule.timeframe, rule.window), []).append((rule, state))
    events: list[AlertEvent] = []
    for bar in snapshots:
        for s in bar:
            values = {} if s.thin else s.metrics
            at = s.ts + MIN
            for rule, state in index.get((s.pair, s.timeframe, s.window), []):
                for t in step(rule, state, values, at)[1]:
                    kind = t.kind
                    notify = kind in NOTIFYING and (
                        kind not in ("resolved", "data") or rule.notify_resolved
                    )
                    events.append(
                        AlertEvent(
                            rule=rule.name,
                            target=s.pair,
                            timeframe=s.timeframe,
                            window=s.window,
                            kind=kind,
                            at=t.at,
                            severity=rule.severity,
                            metric=t.metric,
                            value=t.value,
                            threshold=t.threshold,
                            message=render(rule, s.pair, s.timeframe, s.window, t, values),
                            values={k: float(v) for k, v in values.items()},
                            labels=dict(rule.labels),
                            notify=notify,
                            since=t.since,
                        )
                    )
    return events, states


@st.composite
def _rules(draw: st.DrawFn) -> list[Rule]:
    return [
        pair_rule(
            draw,
            name=f"r{i}",
            pair=draw(st.sampled_from(["*", *PAIRS])),
            window=draw(st.sampled_from([30, 30, 100])),
        )
        for i in range(draw(st.integers(1, 6)))
    ]


@settings(max_examples=150, deadline=None)
@given(
    rules=_rules(),
    bars=st.lists(
        st.lists(
            st.tuples(st.sampled_from(PAIRS), st.sampled_from([30, 100]), _point, st.booleans()),
            max_size=4,
        ),
        min_size=1,
        max_size=25,
    ),
    jumps=st.lists(st.integers(-2, 4), min_size=25, max_size=25),
)
def test_the_engine_gives_the_events_and_states_of_step_on_every_target(
    rules: list[Rule],
    bars: list[list[tuple[str, int, dict[str, float], bool]]],
    jumps: list[int],
) -> None:
    engine = RuleEngine(rules, pairs=PAIRS, symbols=SYMBOLS)
    snapshots = []
    t = 10
    for i, bar in enumerate(bars):
        t += jumps[i]
        snapshots.append(
            [
                PairSnapshot(*pair.split("/"), "1m", window, t * MIN, values, thin=thin)
                for pair, window, values, thin in bar
            ]
        )
    expected, states = _reference(rules, snapshots)
    got = [e for bar in snapshots for e in engine.on_pair_snapshots(bar)]
    assert repr(got) == repr(expected)  # repr: NaN values compare equal
    assert engine.states == states
    assert all(engine.states[k].previous is states[k].previous for k in states)


def test_the_engine_sees_states_restored_in_place() -> None:
    rule = Rule.model_validate(
        {"name": "z", "pair": PAIRS[0], "timeframe": "1m", "window": 30,
         "when": "abs(zscore) >= 2", "repeat_every": "1m"}
    )  # fmt: skip
    engine = RuleEngine([rule], pairs=PAIRS, symbols=SYMBOLS)
    quiet = PairSnapshot("ETHUSDT", "BTCUSDT", "1m", 30, 0, {"zscore": 2.5})
    assert [e.kind for e in engine.on_pair_snapshots([quiet])] == ["firing"]
    state = engine.states[("z", PAIRS[0])]
    # Restored as inactive, with data seen: the fast path must read the restored fields.
    restored = AlertState(seen_data=True, last_at=MIN)
    for f in dataclasses.fields(AlertState):
        setattr(state, f.name, getattr(restored, f.name))
    again = PairSnapshot("ETHUSDT", "BTCUSDT", "1m", 30, MIN, {"zscore": 2.5})
    assert [e.kind for e in engine.on_pair_snapshots([again])] == ["firing"]
