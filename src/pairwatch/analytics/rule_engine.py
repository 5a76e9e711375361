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
from collections.abc import Iterable, Mapping, Sequence

from pairwatch.analytics.alerting import (
    NOTIFYING,
    AlertState,
    Transition,
    stays_inactive,
    step,
)
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
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in upper)]


class RuleEngine:
    """The rules of one rules file, indexed by what they evaluate, and their states."""

    def __init__(
        self, rules: Sequence[Rule], *, pairs: Iterable[str], symbols: Iterable[str]
    ) -> None:
        self.rules = tuple(rules)
        self.states: dict[tuple[str, str], AlertState] = {}
        """(rule name, target) → lifecycle state."""
        self._index: dict[Key, list[tuple[Rule, AlertState]]] = {}
        pair_names, symbol_names = list(pairs), list(symbols)
        for rule in self.rules:
            if rule.pair is not None:
                targets = expand(rule.pair, pair_names)
            else:
                assert rule.symbol is not None
                targets = expand(rule.symbol, symbol_names)
            # Health-only rules are evaluated on the daemon's clock, whatever their timeframe.
            timeframe, window = (rule.timeframe, rule.window) if rule.needs_series else (None, None)
            for target in targets:
                state = self.states[(rule.name, target)] = AlertState()
                self._index.setdefault((target, timeframe, window), []).append((rule, state))

    def targets(self) -> list[tuple[Rule, str]]:
        """Return every rule × target pair the engine evaluates."""
        return [(r, key[0]) for key, rules in self._index.items() for r, _ in rules]

    def on_pair_snapshots(self, snapshots: Iterable[PairSnapshot]) -> list[AlertEvent]:
        """Evaluate the rules of each (non-thin) snapshot's pair, timeframe and window."""
        events: list[AlertEvent] = []
        for s in snapshots:  # a thin snapshot has no metrics: an evaluation without data
            rules = self._index.get((s.pair, s.timeframe, s.window))
            if rules:
                at = s.ts + _length(s.timeframe)
                values = _NO_VALUES if s.thin else s.metrics
                events.extend(self._evaluate(rules, s.pair, s.timeframe, s.window, values, at))
        return events

    def on_symbol_snapshots(
        self,
        snapshots: Iterable[SymbolSnapshot],
        health: Mapping[str, Mapping[str, float]] | None = None,
    ) -> list[AlertEvent]:
        """Evaluate symbol rules on each snapshot, with the symbol's health values added."""
        events: list[AlertEvent] = []
        for s in snapshots:
            rules = self._index.get((s.symbol, s.timeframe, s.window))
            if rules:
                values = {**s.metrics, **(health or {}).get(s.symbol, {})}
                at = s.ts + _length(s.timeframe)
                events.extend(self._evaluate(rules, s.symbol, s.timeframe, s.window, values, at))
        return events

    def on_health(self, health: Mapping[str, Mapping[str, float]], at: int) -> list[AlertEvent]:
        """Evaluate the rules that test only health values (no timeframe), at ``at``."""
        events: list[AlertEvent] = []
        for symbol, values in health.items():
            rules = self._index.get((symbol, None, None))
            if rules:
                events.extend(self._evaluate(rules, symbol, None, None, values, at))
        return events

    def _evaluate(
        self,
        rules: list[tuple[Rule, AlertState]],
        target: str,
        timeframe: str | None,
        window: int | None,
        values: Mapping[str, float],
        at: int,
    ) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        for rule, state in rules:
            if stays_inactive(rule, state, values, at):
                continue
            _, transitions = step(rule, state, values, at)
            if transitions:
                events.extend(
                    _event(rule, target, timeframe, window, t, values) for t in transitions
                )
        return events


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
) -> AlertEvent:
    notify = t.kind in NOTIFYING and (t.kind not in ("resolved", "data") or rule.notify_resolved)
    return AlertEvent(
        rule=rule.name,
        target=target,
        timeframe=timeframe,
        window=window,
        kind=t.kind,
        at=t.at,
        severity=rule.severity,
        metric=t.metric,
        value=t.value,
        threshold=t.threshold,
        message=render(rule, target, timeframe, window, t, values),
        values={k: float(v) for k, v in values.items()},
        labels=dict(rule.labels),
        notify=notify,
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
    y, _, x = target.partition("/")
    fields: dict[str, object] = dict.fromkeys(_metric_names(rule), math.nan)
    fields.update(values)
    fields.update(
        rule=rule.name, pair=target if x else "", symbol="" if x else target, y=y if x else "",
        x=x, timeframe=timeframe or "", window=window if window is not None else "",
        severity=rule.severity, state=_STATE.get(t.kind, t.kind), metric=t.metric, value=t.value,
        threshold=t.threshold, description=rule.description,
    )  # fmt: skip
    try:
        return rule.message.format_map(fields)
    except (ValueError, TypeError) as exc:  # e.g. a number format on an empty window
        logger.warning("rule %s: message template failed (%s); using the default", rule.name, exc)
        return DEFAULT_MESSAGE.format_map(fields)


def _metric_names(rule: Rule) -> tuple[str, ...]:
    from pairwatch.analytics.engine import SNAPSHOT_METRICS
    from pairwatch.analytics.symbol_metrics import SYMBOL_METRICS
    from pairwatch.config.rules import HEALTH_METRICS

    return SNAPSHOT_METRICS if rule.kind == "pair" else (*SYMBOL_METRICS, *HEALTH_METRICS)
