"""Evaluate alert rules on snapshots: targets expanded, rules indexed, messages rendered.

Pure: the engine holds the rules and the lifecycle state of every rule × target, takes
snapshots (or any values of a target) with their bar close times, and returns the
``AlertEvent``s they cause. Persistence, delivery and reloading are the daemon's business.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence

from pairwatch.analytics.alert_quiet import Quiet, compile_quiet
from pairwatch.analytics.alerting import NOTIFYING, AlertState, Transition, step
from pairwatch.analytics.timeframes import parse_timeframe
from pairwatch.config.rules import DEFAULT_MESSAGE, Rule
from pairwatch.events import AlertEvent, PairSnapshot, SymbolSnapshot

logger = logging.getLogger(__name__)

Key = tuple[str, str | None, int | None]
"""(target, timeframe, window) of the values a rule evaluates."""


def expand(patterns: Sequence[str], names: Iterable[str]) -> list[str]:
    """Return the configured names the patterns (names, globs) select, in config order."""
    names = list(names)
    upper = [p.upper() for p in patterns]
    if not any(_GLOB.search(p) for p in upper):  # plain names: a set lookup each
        wanted = set(upper)
        return [n for n in names if n in wanted]
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in upper)]


_GLOB = re.compile(r"[*?\[]")


class RuleEngine:
    """The rules of one rules file, indexed by what they evaluate, and their states."""

    def __init__(
        self, rules: Sequence[Rule], *, pairs: Iterable[str], symbols: Iterable[str]
    ) -> None:
        self.rules = tuple(rules)
        self.states: dict[tuple[str, str], AlertState] = {}
        """(rule name, target) → lifecycle state."""
        self._index: dict[Key, list[_Entry]] = {}
        pair_names, symbol_names = list(pairs), list(symbols)
        for rule in self.rules:
            if rule.pair is not None:
                targets = expand(rule.pair, pair_names)
            else:
                assert rule.symbol is not None
                targets = expand(rule.symbol, symbol_names)
            # Health-only rules are evaluated on the daemon's clock, whatever their timeframe.
            timeframe, window = (rule.timeframe, rule.window) if rule.needs_series else (None, None)
            quiet = compile_quiet(rule)
            for target in targets:
                state = self.states[(rule.name, target)] = AlertState()
                fixed = _fixed_fields(rule, target, timeframe, window)
                entry = (rule, state, quiet, fixed)
                self._index.setdefault((target, timeframe, window), []).append(entry)
        # Pair snapshots are looked up by (y, x, timeframe, window), sparing the pair name
        # each snapshot would build: every way of writing a target as ``y/x`` is indexed.
        self._by_legs: dict[_Legs, tuple[str, list[_Entry]]] = {}
        for (target, timeframe, window), entries in self._index.items():
            for i, char in enumerate(target):
                if char == "/":
                    legs = (target[:i], target[i + 1 :], timeframe, window)
                    self._by_legs[legs] = (target, entries)

    def targets(self) -> list[tuple[Rule, str]]:
        """Return every rule × target pair the engine evaluates."""
        return [(e[0], key[0]) for key, entries in self._index.items() for e in entries]

    def on_pair_snapshots(self, snapshots: Iterable[PairSnapshot]) -> list[AlertEvent]:
        """Evaluate the rules of each (non-thin) snapshot's pair, timeframe and window."""
        events: list[AlertEvent] = []
        by_legs = self._by_legs
        for s in snapshots:  # a thin snapshot has no metrics: an evaluation without data
            found = by_legs.get((s.y, s.x, s.timeframe, s.window))
            if found is not None:
                timeframe = s.timeframe
                at = s.ts + _length(timeframe)
                values = _NO_VALUES if s.thin else s.metrics
                _evaluate(found[1], found[0], timeframe, s.window, values, at, events)
        return events

    def on_symbol_snapshots(
        self,
        snapshots: Iterable[SymbolSnapshot],
        health: Mapping[str, Mapping[str, float]] | None = None,
    ) -> list[AlertEvent]:
        """Evaluate symbol rules on each snapshot, with the symbol's health values added."""
        events: list[AlertEvent] = []
        for s in snapshots:
            entries = self._index.get((s.symbol, s.timeframe, s.window))
            if entries:
                values = {**s.metrics, **(health or {}).get(s.symbol, {})}
                at = s.ts + _length(s.timeframe)
                _evaluate(entries, s.symbol, s.timeframe, s.window, values, at, events)
        return events

    def on_health(self, health: Mapping[str, Mapping[str, float]], at: int) -> list[AlertEvent]:
        """Evaluate the rules that test only health values (no timeframe), at ``at``."""
        events: list[AlertEvent] = []
        for symbol, values in health.items():
            entries = self._index.get((symbol, None, None))
            if entries:
                _evaluate(entries, symbol, None, None, values, at, events)
        return events


_Entry = tuple[Rule, AlertState, Quiet, dict[str, object]]
"""A rule, the state of one of its targets, its quiet check, and its messages' fixed fields."""
_Legs = tuple[str, str, str | None, int | None]
"""(y, x, timeframe, window) of a pair snapshot."""


def _evaluate(
    entries: list[_Entry],
    target: str,
    timeframe: str | None,
    window: int | None,
    values: Mapping[str, float],
    at: int,
    events: list[AlertEvent],
) -> None:
    """Step every rule of one target on its values, adding the events to ``events``."""
    for rule, state, quiet, fixed in entries:
        if quiet(state, values, at):
            continue  # what step() would have done, done more cheaply: no transition
        _, transitions = step(rule, state, values, at)
        if transitions:
            events.extend(
                _event(rule, target, timeframe, window, t, values, fixed) for t in transitions
            )


_NO_VALUES: Mapping[str, float] = {}
_STATE = {"repeat": "firing", "data": "resolved"}
"""The ``{state}`` a transition's message shows (docs/rules.md: firing, resolved, no_data)."""


@functools.lru_cache(maxsize=64)
def _length(timeframe: str) -> int:
    return parse_timeframe(timeframe)


def _event(
    rule: Rule,
    target: str,
    timeframe: str | None,
    window: int | None,
    t: Transition,
    values: Mapping[str, float],
    fixed: dict[str, object],
) -> AlertEvent:
    kind = t.kind
    notify = kind in NOTIFYING and (kind not in ("resolved", "data") or rule.notify_resolved)
    return AlertEvent(
        rule=rule.name,
        target=target,
        timeframe=timeframe,
        window=window,
        kind=kind,
        at=t.at,
        severity=rule.severity,
        metric=t.metric,
        value=t.value,
        threshold=t.threshold,
        message=_render(rule, fixed, t, values),
        values={k: float(v) for k, v in values.items()},
        labels=dict(rule.labels),
        notify=notify,
        since=t.since,
    )


def render(
    rule: Rule,
    target: str,
    timeframe: str | None,
    window: int | None,
    t: Transition,
    values: Mapping[str, float],
) -> str:
    """Return the rule's message for a transition (templates were checked when loaded)."""
    return _render(rule, _fixed_fields(rule, target, timeframe, window), t, values)


def _fixed_fields(
    rule: Rule, target: str, timeframe: str | None, window: int | None
) -> dict[str, object]:
    """Return the message fields that are the same for every transition of rule × target."""
    y, _, x = target.partition("/")
    return {
        "rule": rule.name, "pair": target if x else "", "symbol": "" if x else target,
        "y": y if x else "", "x": x, "timeframe": timeframe or "",
        "window": window if window is not None else "", "severity": rule.severity,
        "description": rule.description,
    }  # fmt: skip


def _render(
    rule: Rule, fixed: dict[str, object], t: Transition, values: Mapping[str, float]
) -> str:
    # The metrics (NaN when missing), then the values, then the template fields.
    fields: dict[str, object] = {
        **_blank_fields(rule.kind), **values, **fixed, "state": _STATE.get(t.kind, t.kind),
        "metric": t.metric, "value": t.value, "threshold": t.threshold,
    }  # fmt: skip
    try:
        return rule.message.format_map(fields)
    except (ValueError, TypeError) as exc:  # e.g. a number format on an empty window
        logger.warning("rule %s: message template failed (%s); using the default", rule.name, exc)
        return DEFAULT_MESSAGE.format_map(fields)


@functools.cache
def _blank_fields(kind: str) -> dict[str, float]:
    """Return every metric a rule of ``kind`` may show, as NaN (a missing one renders so).

    Shared: copy it, never change it.
    """
    from pairwatch.analytics.engine import SNAPSHOT_METRICS
    from pairwatch.analytics.symbol_metrics import SYMBOL_METRICS
    from pairwatch.config.rules import HEALTH_METRICS

    names = SNAPSHOT_METRICS if kind == "pair" else (*SYMBOL_METRICS, *HEALTH_METRICS)
    return dict.fromkeys(names, math.nan)
