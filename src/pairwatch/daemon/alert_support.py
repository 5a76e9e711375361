"""The alert stage's plain parts: keys, routes, state copies and signatures, removal events.

Pure functions and types shared by ``daemon.alerts`` (the stage), ``daemon.silences`` and
``daemon.alert_service``; no I/O here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol

from pairwatch.analytics.alerting import AlertState, Transition
from pairwatch.analytics.rule_engine import render
from pairwatch.analytics.timeframes import parse_timeframe
from pairwatch.config.rules import ALL, Rule
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

Destination = tuple[str, Mapping[str, str]]
"""(notifier, route overrides): one outbox row of a notification."""


def destinations(
    routes: Iterable[tuple[str, Mapping[str, str]]],
    notifiers: Sequence[str] = ("log",),
    defaults: Defaults | None = None,
) -> list[Destination]:
    """Return where routes deliver: one (notifier, overrides) per delivery, each once.

    ``all`` stands for a route without overrides to each of ``notifiers`` (those configured
    now). A route without overrides of a notifier listed in ``defaults`` becomes one
    destination per default (Telegram: one per configured chat). A notifier and overrides
    reached twice (``[all, log]``, a chat both configured and given) is kept once, first.
    """
    found: dict[tuple[str, tuple[tuple[str, str], ...]], Destination] = {}
    for notifier, given in routes:
        for name in notifiers if notifier == ALL else (notifier,):
            spread = (defaults or {}).get(name) if not given else None
            for overrides in spread or (given,):
                found.setdefault((name, tuple(sorted(overrides.items()))), (name, overrides))
    return list(found.values())


def route_overrides(rule: Rule) -> list[tuple[str, Mapping[str, str]]]:
    """Return ``rule``'s routes as (notifier or ``all``, the overrides it gives)."""
    return [
        (r.notifier, {k: v for k in ("chat", "topic", "url") if (v := getattr(r, k)) is not None})
        for r in rule.notify
    ]


def notifications(
    event: AlertEvent,
    rule: Rule,
    defaults: Defaults | None = None,
    notifiers: Sequence[str] = ("log",),
) -> list[Notification]:
    """Return the outbox rows of a notifying event: one per destination (``destinations``).

    ``notifiers``: the configured notifiers, which ``all`` stands for.
    """
    payload = alert_event_payload(event)
    return [
        Notification(event.key, notifier, dict(overrides), payload)
        for notifier, overrides in destinations(route_overrides(rule), notifiers, defaults)
    ]


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
