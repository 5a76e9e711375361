"""The fast path of the alert lifecycle: evaluations that change nothing but the time.

``compile_quiet(rule)`` builds, once per rule, a check that does exactly what ``step``
(``analytics.alerting``) would when ``step`` would make no transition, and returns True;
otherwise it touches nothing and returns False, and the caller runs ``step``. Most
evaluations are such: an inactive alert whose condition is false, a pending one short of
its ``for``, a firing one that stays firing. A property test checks it against ``step``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from pairwatch.analytics.alerting import AlertState, _ms, _present
from pairwatch.analytics.conditions import COMPARE, CROSSINGS, Comparison, compile_condition
from pairwatch.config.rules import Rule

Quiet = Callable[[AlertState, Mapping[str, float], int], bool]
"""``quiet(state, values, now)``: see ``compile_quiet``."""


def compile_quiet(rule: Rule) -> Quiet:
    """Return a check that does what ``step`` would when ``step`` would make no transition.

    ``quiet(state, values, now)`` returns True having updated ``state`` exactly as ``step``
    would (the time, the previous values, the hold count, ...), or False having touched
    nothing: then call ``step``. It covers the evaluations that make up nearly all of them:
    an inactive alert whose condition is false (or without data, unless ``no_data: alert``),
    a pending one still short of ``for``, a firing one that stays firing with no repeat due
    (or resolves only once ``keep_firing_for`` has run). The rule's conditions are compiled
    once, and the commonest case, an inactive alert on one plain comparison, is written out
    inline. A property test checks it against ``step``.
    """
    active = _compile_active(rule)
    alert_on_no_data = rule.no_data == "alert"
    present = _compile_present(rule.crossing_metrics)
    simple = rule.simple_when
    if simple is not None and present is None:
        metric, threshold, test = simple.metric, simple.threshold, COMPARE[simple.op]
        if simple.absolute:

            def quiet_magnitude(state: AlertState, values: Mapping[str, float], now: int) -> bool:
                if (
                    state.phase != "inactive"
                    or not state.seen_data
                    or state.no_data_since is not None
                ):
                    return active(state, values, now)
                v = values.get(metric)
                if v is None or v != v:  # noqa: PLR0124 -- missing, or NaN: no data
                    if alert_on_no_data:
                        return False
                elif test(abs(v), threshold):
                    return False
                last = state.last_at
                if last is None or now > last:
                    state.last_at = now
                return True

            return quiet_magnitude

        def quiet_plain(state: AlertState, values: Mapping[str, float], now: int) -> bool:
            if state.phase != "inactive" or not state.seen_data or state.no_data_since is not None:
                return active(state, values, now)
            v = values.get(metric)
            if v is None or v != v:  # noqa: PLR0124 -- missing, or NaN: no data
                if alert_on_no_data:
                    return False
            elif test(v, threshold):
                return False
            last = state.last_at
            if last is None or now > last:
                state.last_at = now
            return True

        return quiet_plain

    when = compile_condition(rule.when)

    def quiet(state: AlertState, values: Mapping[str, float], now: int) -> bool:
        if state.phase != "inactive" or not state.seen_data or state.no_data_since is not None:
            return active(state, values, now)
        holds = when(values, state.previous)
        if holds is None:
            if alert_on_no_data:
                return False
        elif holds:
            return False
        last = state.last_at
        if last is None or now > last:
            state.last_at = now
        if present is not None and present(values):
            state.previous = values  # the next crossing compares with these
        return True

    crossing = rule.when
    if (
        not isinstance(crossing, Comparison)
        or crossing.op not in CROSSINGS
        or rule.crossing_metrics != (crossing.metric,)
        or alert_on_no_data
    ):
        return quiet
    # One crossing (and no other crossing metric in clear): no crossing can happen while the
    # value is on the far side of the threshold, whatever the bar before; without data
    # (None) it stays inactive too, not being ``no_data: alert``.
    metric, threshold, absolute = crossing.metric, crossing.threshold, crossing.absolute
    above, isnan = crossing.op == "crosses_above", math.isnan

    def quiet_crossing(state: AlertState, values: Mapping[str, float], now: int) -> bool:
        if state.phase != "inactive" or not state.seen_data or state.no_data_since is not None:
            return active(state, values, now)
        v = values.get(metric)
        if v is not None and not isnan(v):
            if absolute:
                v = abs(v)
            if v >= threshold if above else v <= threshold:
                return quiet(state, values, now)  # it may cross: the bar before decides
            state.previous = values  # the next crossing compares with these
        last = state.last_at
        if last is None or now > last:
            state.last_at = now
        return True

    return quiet_crossing


def _compile_active(rule: Rule) -> Quiet:
    """Return the quiet check for pending and firing alerts (see ``compile_quiet``)."""
    when = compile_condition(rule.when)
    clear = None if rule.clear is None else compile_condition(rule.clear)
    present = _compile_present(rule.crossing_metrics)
    keep_ms = _ms(rule.keep_firing_for.total_seconds())
    every = rule.repeat_every
    every_ms = None if every is None else _ms(every.total_seconds())
    hold_bars = rule.for_.bars
    hold_ms = _ms(rule.for_.duration.total_seconds())

    def active(state: AlertState, values: Mapping[str, float], now: int) -> bool:
        phase = state.phase
        if phase == "inactive" or state.no_data_since is not None:
            return False
        last = state.last_at
        if last is not None and now < last:
            now = last  # a clock jump backwards counts as no time passing
        previous = state.previous
        holds = when(values, previous)
        if holds is None:
            return False
        if phase == "pending":
            if not holds:
                return False
            bars = state.held_bars + 1
            if bars == 1:
                return False  # the pending transition
            if hold_bars:
                if bars >= hold_bars:
                    return False  # fires
            elif state.since is None or now - state.since >= hold_ms:
                return False  # fires (or the general path's check of ``since``)
            state.held_bars = bars
        else:  # firing
            resolving = not holds if clear is None else clear(values, previous) is True
            started = None
            if resolving:
                started = state.resolving_since if state.resolving_since is not None else now
                if now - started >= keep_ms:
                    return False  # resolves
            notified = state.notified_at
            if every_ms is not None and notified is not None and now - notified >= every_ms:
                return False  # repeats
            state.resolving_since = started
        state.seen_data = True
        state.last_at = now
        if present is not None and present(values):
            state.previous = values  # the next crossing compares with these
        return True

    return active


def _compile_present(metrics: tuple[str, ...]) -> Callable[[Mapping[str, float]], bool] | None:
    """Return a check that all ``metrics`` are present (None when there are none)."""
    if not metrics:
        return None
    if len(metrics) == 1:
        (metric,) = metrics
        return lambda values: _present(values, metric)
    return lambda values: all(_present(values, m) for m in metrics)
