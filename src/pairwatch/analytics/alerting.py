"""The alert lifecycle of one rule × target, as a pure function of the values and the time.

States: ``inactive`` → ``pending`` (the condition holds, ``for`` not yet met) → ``firing`` →
back to ``inactive`` (the ``resolved`` transition). One call of ``step`` per evaluated bar
of the target decides the next state and the transitions it makes; times are the bars'
close times (epoch ms), so live evaluation, replays and backtests behave the same.

- ``for: N bars``: the condition held on N consecutive evaluated bars; ``for: D``: it held
  on every bar for at least D (from the first such bar's close to the current one's).
- Resolving: with ``clear``, a firing alert resolves only once ``clear`` holds; without,
  once ``when`` is false. ``keep_firing_for: D`` delays the resolution until the resolving
  condition has held for D (a flap back resets it).
- ``repeat_every: D``: while firing, a ``repeat`` transition once D has passed since the
  last notification.
- No data (the condition is neither true nor false: a metric is NaN or missing):
  ``keep`` leaves everything as it is; ``resolve`` resolves a firing alert and drops a
  pending one; ``alert`` makes one ``no_data`` transition per spell (and ``data`` when
  values come back), leaving the lifecycle state alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pairwatch.config.rules import Rule

Phase = Literal["inactive", "pending", "firing"]
Kind = Literal["pending", "firing", "repeat", "resolved", "no_data", "data"]

NOTIFYING: frozenset[str] = frozenset({"firing", "repeat", "resolved", "no_data"})
"""Transitions that are notifications (``resolved`` only with ``notify_resolved``)."""


@dataclass(slots=True)
class AlertState:
    """Where one rule × target is in its lifecycle (owned and updated by ``step``)."""

    phase: Phase = "inactive"
    since: int | None = None
    """Close time of the first bar of the current pending or firing spell."""
    held_bars: int = 0
    """Consecutive bars the condition has held (pending)."""
    notified_at: int | None = None
    """When the last firing or repeat notification went out."""
    resolving_since: int | None = None
    """First bar of the current run where the alert would resolve (keep_firing_for)."""
    no_data: bool = False
    """In a no-data spell that was announced (``no_data: alert``)."""
    previous: Mapping[str, float] | None = field(default=None, compare=False)
    """The values of the last evaluated bar (for crossings)."""

    def reset(self) -> None:
        """Go back to inactive (keeping ``previous``)."""
        self.phase = "inactive"
        self.since = self.notified_at = self.resolving_since = None
        self.held_bars = 0


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of one rule × target, with the values that caused it."""

    kind: Kind
    at: int
    """Close time of the bar that caused it, epoch ms."""
    metric: str
    value: float
    threshold: float


def step(
    rule: Rule, state: AlertState, values: Mapping[str, float], at: int
) -> tuple[AlertState, list[Transition]]:
    """Evaluate ``rule`` on one bar's ``values`` (closing at ``at``): update ``state`` in place
    and return it with the transitions made. Deterministic: the same rule, state, values and
    time always give the same result (``values`` must not change afterwards: crossings keep a
    reference to them as the previous bar).
    """
    holds = rule.when.holds(values, state.previous)
    previous = state.previous
    if rule.uses_previous:
        state.previous = values
    if holds is False and state.phase == "inactive" and not state.no_data:
        return state, []  # the common case, kept cheap: nothing to do
    out: list[Transition] = []
    if holds is None:
        _no_data(rule, state, values, at, out)
        return state, out
    if state.no_data:
        state.no_data = False
        if rule.no_data == "alert":
            out.append(_transition(rule, "data", values, at))

    if state.phase == "inactive":
        if not holds:
            return state, out
        state.phase, state.since, state.held_bars = "pending", at, 0
    if state.phase == "pending":
        if not holds:
            state.reset()
            return state, out
        state.held_bars += 1
        if not _held(rule, state, at):
            if state.held_bars == 1:
                out.append(_transition(rule, "pending", values, at))
            return state, out
        out.append(_transition(rule, "firing", values, at))
        state.phase, state.since, state.notified_at, state.resolving_since = (
            "firing", at, at, None,
        )  # fmt: skip
        return state, out

    # Firing: resolve, keep firing, or repeat.
    clear = rule.clear
    resolving = not holds if clear is None else clear.holds(values, previous) is True
    if resolving:
        started = state.resolving_since if state.resolving_since is not None else at
        if at - started >= _ms(rule.keep_firing_for.total_seconds()):
            out.append(_transition(rule, "resolved", values, at))  # notify_resolved: delivery
            state.reset()
        else:
            state.resolving_since = started
        return state, out
    state.resolving_since = None
    every = rule.repeat_every
    last = state.notified_at
    if every is not None and last is not None and at - last >= _ms(every.total_seconds()):
        out.append(_transition(rule, "repeat", values, at))
        state.notified_at = at
    return state, out


def _transition(rule: Rule, kind: Kind, values: Mapping[str, float], at: int) -> Transition:
    main = rule.primary
    return Transition(kind, at, main.metric, main.value(values), main.threshold)


def _held(rule: Rule, state: AlertState, at: int) -> bool:
    hold = rule.for_
    if hold.bars:
        return state.held_bars >= hold.bars
    assert state.since is not None
    return at - state.since >= _ms(hold.duration.total_seconds())


def _no_data(
    rule: Rule, state: AlertState, values: Mapping[str, float], at: int, out: list[Transition]
) -> None:
    if rule.no_data == "resolve":
        if state.phase == "firing":
            out.append(_transition(rule, "resolved", values, at))
        state.reset()
    elif rule.no_data == "alert" and not state.no_data:
        out.append(_transition(rule, "no_data", values, at))
        state.no_data = True


def _ms(seconds: float) -> int:
    return math.floor(seconds * 1000 + 0.5)
