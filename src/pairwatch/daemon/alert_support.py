"""The alert stage's plain parts: keys, routes, state copies and signatures, removal events.

Pure functions and types shared by ``daemon.alerts`` (the stage), ``daemon.silences`` and
``daemon.alert_service``; no I/O here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

from pairwatch.analytics.alerting import AlertState, Transition
from pairwatch.analytics.rule_engine import render
from pairwatch.analytics.timeframes import parse_timeframe
from pairwatch.config.rules import Rule
from pairwatch.daemon.alert_rows import Notification, StoredState, alert_event_payload
from pairwatch.events import AlertEvent, SymbolSnapshot

AlertKey = tuple[str, str]
"""(rule name, target)."""


class AlertWriter(Protocol):
    def put_alerts(
        self,
        events: Sequence[tuple[AlertEvent, bool]],
        notifications: Sequence[Notification] = (),
        states: Sequence[StoredState] = (),
        forget: Sequence[tuple[str, str]] = (),
    ) -> None: ...


def series_of(rule: Rule) -> tuple[str | None, int | None]:
    """Return the (timeframe, window) an alert of ``rule`` is evaluated on."""
    return (rule.timeframe, rule.window) if rule.needs_series else (None, None)


Defaults = Mapping[str, Sequence[Mapping[str, str]]]
"""Per notifier, the routes a route without overrides stands for (e.g. one per chat)."""


def notifications(
    event: AlertEvent, rule: Rule, defaults: Defaults | None = None
) -> list[Notification]:
    """Return the outbox rows of a notifying event: one per route (and default chat).

    A route without overrides of a notifier listed in ``defaults`` becomes one row per
    default destination (Telegram: one per configured chat), so each row is one delivery.
    """
    payload = alert_event_payload(event)
    rows: list[Notification] = []
    for route in rule.notify:
        given = {k: v for k in ("chat", "topic", "url") if (v := getattr(route, k)) is not None}
        expanded = (defaults or {}).get(route.notifier) if not given else None
        rows.extend(
            Notification(event.key, route.notifier, dict(overrides), payload)
            for overrides in expanded or (given,)
        )
    return rows


_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(AlertState))


def copy_state(source: AlertState, target: AlertState) -> None:
    """Copy every field of ``source`` into ``target`` (the engine keeps ``target``)."""
    for name in _STATE_FIELDS:
        setattr(target, name, getattr(source, name))


def signature(state: AlertState) -> tuple[object, ...]:
    """Return what is stored of a state; its last item is the evaluation-time-only part."""
    return (
        state.phase, state.since, state.held_bars, state.notified_at, state.resolving_since,
        state.seen_data, state.no_data_since, state.no_data_bars, state.no_data_firing,
        (state.last_at, id(state.previous)),
    )  # fmt: skip


def gone_event(rule: Rule, target: str, now: int, kind: Literal["resolved", "data"]) -> AlertEvent:
    """Return the end of a raised alert (firing, or no-data) whose rule or target went."""
    timeframe, window = series_of(rule)
    main = rule.primary
    t = Transition(kind, now, main.metric, math.nan, main.threshold)
    message = render(rule, target, timeframe, window, t, {}) + " (rule removed or changed)"
    return AlertEvent(
        rule=rule.name, target=target, timeframe=timeframe, window=window, kind=kind,
        at=now, severity=rule.severity, metric=main.metric, value=math.nan,
        threshold=main.threshold, message=message, values={}, labels=dict(rule.labels),
        notify=rule.notify_resolved,
    )  # fmt: skip


def symbol_batch(s: SymbolSnapshot) -> tuple[str, int]:
    return (s.timeframe, s.ts)


_lengths: dict[str, int] = {}


def bar_length(timeframe: str) -> int:
    length = _lengths.get(timeframe)
    if length is None:
        length = _lengths[timeframe] = parse_timeframe(timeframe)
    return length
