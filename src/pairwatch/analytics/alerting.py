"""The alert lifecycle of one rule × target, as a function of the values and the time.

States: ``inactive`` → ``pending`` (the condition holds, ``for`` not yet met) → ``firing`` →
back to ``inactive`` (the ``resolved`` transition). One call of ``step`` per evaluation
(a snapshot of the target; ``now`` its bar's close time, so live evaluation, replays and
backtests behave the same) decides the next state and the transitions made. The contract
is written out in docs/rules.md ("Alert lifecycle"); in short:

- ``for: N bars``: the condition held on N consecutive evaluations; ``for: D``: it held at
  every evaluation from the first to one at least D later. Without ``for``, it fires at once.
- Resolving: with ``clear``, a firing alert resolves only once ``clear`` holds; without,
  once ``when`` is false. ``keep_firing_for: D`` delays the resolution until the resolving
  condition has held for D (a flap back resets it). ``repeat_every: D`` re-notifies.
- No data (a metric NaN or missing): ``keep`` skips the evaluation; ``resolve`` makes the
  alert resolve (a pending one goes inactive); ``alert`` keeps the state and raises a
  separate no-data alert once data has been missing for ``for`` — never before the target
  had data — which ends (``data``) at the first evaluation with data.
- Time never runs backwards for an alert: an earlier ``now`` counts as the latest seen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pairwatch.analytics.conditions import (
    Comparison,
    comparisons,
)
from pairwatch.config.rules import Rule

Phase = Literal["inactive", "pending", "firing"]
Kind = Literal["pending", "inactive", "firing", "repeat", "resolved", "no_data", "data"]

NOTIFYING: frozenset[str] = frozenset({"firing", "repeat", "resolved", "no_data", "data"})
"""Transitions that are notifications (``resolved`` and ``data``, the end of a no-data
alert, only with ``notify_resolved``)."""


@dataclass(slots=True)
class AlertState:
    """Where one rule × target is in its lifecycle (owned and updated by ``step``)."""

    phase: Phase = "inactive"
    since: int | None = None
    """``now`` of the first evaluation of the current pending or firing spell."""
    held_bars: int = 0
    """Consecutive evaluations the condition has held (pending)."""
    notified_at: int | None = None
    """When the last firing or repeat notification went out."""
    resolving_since: int | None = None
    """First evaluation of the current run where the alert would resolve (keep_firing_for)."""
    last_at: int | None = None
    """The latest ``now`` seen: time never runs backwards for an alert."""
    seen_data: bool = False
    """The target had data since the state was created (no no-data alert before that)."""
    no_data_since: int | None = None
    no_data_bars: int = 0
    no_data_firing: bool = False
    """The separate no-data alert (``no_data: alert``) is firing."""
    previous: Mapping[str, float] | None = field(default=None, compare=False)
    """The values of the last evaluation with data (for crossings)."""

    def reset(self) -> None:
        """Go back to inactive (keeping the no-data bookkeeping and ``previous``)."""
        self.phase = "inactive"
        self.since = self.notified_at = self.resolving_since = None
        self.held_bars = 0


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of one rule × target, with the values that caused it."""

    kind: Kind
    at: int
    """``now`` of the evaluation that caused it (a bar's close time), epoch ms."""
    metric: str
    value: float
    threshold: float
    since: int | None = field(default=None, compare=False)
    """Start of the raised spell it belongs to (firing, repeat, resolved: when the alert
    started firing; no_data, data: when data went missing), else None."""


def step(
    rule: Rule, state: AlertState, values: Mapping[str, float], now: int
) -> tuple[AlertState, list[Transition]]:
    """Evaluate ``rule`` on one evaluation's ``values`` at ``now``; update ``state`` in place.

    Returns the state and the transitions made. Deterministic: the same rule, state, values
    and time give the same result (``values`` must not change afterwards: crossings keep a
    reference to them as the previous values).
    """
    if state.last_at is not None and now < state.last_at:
        now = state.last_at  # a clock jump backwards counts as no time passing
    state.last_at = now
    holds = rule.when.holds(values, state.previous)
    previous = state.previous
    if rule.uses_previous and all(_present(values, m) for m in rule.crossing_metrics):
        state.previous = values  # the next crossing compares with these
    if holds is None:
        out: list[Transition] = []
        _no_data(rule, state, values, now, out)
        return state, out
    if (
        holds is False
        and state.phase == "inactive"
        and state.seen_data
        and not (state.no_data_since is not None)
    ):
        return state, []  # the common case, kept cheap: nothing to do
    state.seen_data = True
    out = []
    if state.no_data_since is not None:
        if state.no_data_firing:
            out.append(_transition(rule, "data", values, now, since=state.no_data_since))
        state.no_data_since, state.no_data_bars, state.no_data_firing = None, 0, False

    if state.phase == "inactive":
        if not holds:
            return state, out
        state.phase, state.since, state.held_bars = "pending", now, 0
    if state.phase == "pending":
        if not holds:
            state.reset()
            out.append(_transition(rule, "inactive", values, now))
            return state, out
        state.held_bars += 1
        if not _held(rule, state.held_bars, state.since, now):
            if state.held_bars == 1:
                out.append(_transition(rule, "pending", values, now))
            return state, out
        out.append(_transition(rule, "firing", values, now, since=now))
        state.phase, state.since, state.notified_at, state.resolving_since = (
            "firing", now, now, None,
        )  # fmt: skip
        return state, out

    clear = rule.clear
    resolving = not holds if clear is None else clear.holds(values, previous) is True
    _firing(rule, state, values, now, resolving, out)
    return state, out


def stays_inactive(rule: Rule, state: AlertState, values: Mapping[str, float], now: int) -> bool:
    """Return True, having recorded the time, when ``step`` would do nothing else.

    The common case of an inactive alert whose plain comparison is false, decided without
    the general path: ``step`` gives the same result, only slower.
    """
    c = rule.simple_when
    if c is None or state.phase != "inactive" or not state.seen_data or rule.uses_previous:
        return False
    if state.no_data_since is not None:
        return False
    v = values.get(c.metric)
    if v is None or v != v:  # noqa: PLR0124 -- NaN: no data, the general path decides
        return False
    if c.absolute and v < 0:
        v = -v
    if c.compare(v):
        return False
    if state.last_at is None or now > state.last_at:
        state.last_at = now
    return True


def _firing(
    rule: Rule,
    state: AlertState,
    values: Mapping[str, float],
    now: int,
    resolving: bool,
    out: list[Transition],
) -> None:
    """Resolve (after keep_firing_for), stay firing, or repeat."""
    if resolving:
        started = state.resolving_since if state.resolving_since is not None else now
        if now - started >= _ms(rule.keep_firing_for.total_seconds()):
            # The message describes what decided it: clear's comparison, when there is one.
            via = next(comparisons(rule.clear)) if rule.clear is not None else None
            # Delivered only with notify_resolved (the rule engine decides).
            out.append(_transition(rule, "resolved", values, now, via, since=state.since))
            state.reset()
            return
        state.resolving_since = started  # still firing while keep_firing_for runs: repeats go on
    else:
        state.resolving_since = None
    every = rule.repeat_every
    last = state.notified_at
    if every is not None and last is not None and now - last >= _ms(every.total_seconds()):
        out.append(_transition(rule, "repeat", values, now, since=state.since))
        state.notified_at = now


def _present(values: Mapping[str, float], metric: str) -> bool:
    value = values.get(metric)
    return value is not None and not math.isnan(value)


def _transition(
    rule: Rule,
    kind: Kind,
    values: Mapping[str, float],
    now: int,
    via: Comparison | None = None,
    *,
    since: int | None = None,
) -> Transition:
    main = via or rule.primary
    return Transition(kind, now, main.metric, main.value(values), main.threshold, since)


def _held(rule: Rule, bars: int, since: int | None, now: int) -> bool:
    hold = rule.for_
    if hold.bars:
        return bars >= hold.bars
    assert since is not None
    return now - since >= _ms(hold.duration.total_seconds())


def _no_data(
    rule: Rule, state: AlertState, values: Mapping[str, float], now: int, out: list[Transition]
) -> None:
    """Apply the rule's ``no_data`` choice to an evaluation without data."""
    if rule.no_data == "resolve":
        if state.phase == "pending":
            state.reset()
            out.append(_transition(rule, "inactive", values, now))
        elif state.phase == "firing":
            _firing(rule, state, values, now, True, out)
    elif rule.no_data == "alert" and state.seen_data:
        # A separate no-data alert, held like ``for`` on the condition itself.
        if state.no_data_since is None:
            state.no_data_since, state.no_data_bars = now, 0
        state.no_data_bars += 1
        if not state.no_data_firing and _held(rule, state.no_data_bars, state.no_data_since, now):
            state.no_data_firing = True
            out.append(_transition(rule, "no_data", values, now, since=state.no_data_since))
    # ``keep`` (and no data before any data): the evaluation is skipped.


def _ms(seconds: float) -> int:
    return math.floor(seconds * 1000 + 0.5)
