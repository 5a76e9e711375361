"""The alert stage: rules evaluated on snapshots and on the clock, persisted and reloaded.

The pure ``RuleEngine`` decides the transitions; this shell gives it the daemon's
snapshots and health values, applies silences, writes every event, its outbox rows and
its alert's state in one transaction (``Writer.put_alerts``) and wakes the delivery
workers once that is committed. It also swaps in a reloaded rules file, carrying the
state of alerts whose rule name and target did not change (docs/rules.md).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from pairwatch.analytics.alerting import AlertState, Transition
from pairwatch.analytics.rule_engine import RuleEngine, render
from pairwatch.analytics.timeframes import parse_timeframe
from pairwatch.config.rules import Rule, RulesFile
from pairwatch.daemon.alert_rows import (
    Notification,
    Silence,
    StoredState,
    alert_event_payload,
    notice_payload,
)
from pairwatch.daemon.health import Health
from pairwatch.events import AlertEvent, PairSnapshot, SymbolSnapshot

logger = logging.getLogger(__name__)

AlertKey = tuple[str, str]
"""(rule name, target)."""

HEALTH_SPAN_MS = 60_000
"""Rules on the clock count the gaps of the last minute."""

_RAISING = frozenset({"firing", "no_data"})
_ENDING = frozenset({"resolved", "data"})


class AlertWriter(Protocol):
    def put_alerts(
        self,
        events: Sequence[tuple[AlertEvent, bool]],
        notifications: Sequence[Notification] = (),
        states: Sequence[StoredState] = (),
        forget: Sequence[tuple[str, str]] = (),
    ) -> None: ...


def health_values(
    health: Health, symbols: Iterable[str], now: int, since: int
) -> dict[str, dict[str, float]]:
    """Return each symbol's health metrics at ``now`` (gaps counted from ``since``).

    A symbol without a trade since the daemon started has none (no data).
    """
    out: dict[str, dict[str, float]] = {}
    for symbol in symbols:
        last = health.last_trade.get(symbol)
        if last is None:
            out[symbol] = {}
            continue
        times = health.gap_times.get(symbol, ())
        out[symbol] = {
            "feed_lag_ms": float(last.ts_recv - last.ts_event),
            "seconds_since_trade": max(now - last.ts_recv, 0) / 1000,
            "gaps": float(sum(1 for t in times if since <= t < now)),
        }
    return out


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


class AlertStage:
    """The live rules: evaluation, silences, persistence and reloads of one rules file."""

    def __init__(
        self,
        writer: AlertWriter,
        health: Health,
        *,
        pairs: Sequence[str],
        symbols: Sequence[str],
        clock: Callable[[], int],
        grace_ms: int = 0,
        admin_notify: Sequence[str] = ("log",),
        notifiers: Collection[str] = ("log",),
        defaults: Defaults | None = None,
        on_stored: Callable[[], None] = lambda: None,
    ) -> None:
        self._writer = writer
        self._health = health
        self._pairs = list(pairs)
        self._symbols = list(symbols)
        self._clock = clock
        self._grace = grace_ms
        self._admin = tuple(admin_notify)
        self._notifiers = frozenset(notifiers)
        self._on_stored = on_stored
        self._defaults: Defaults = defaults or {}
        waiting = [n for n in self._admin if n not in self._notifiers]
        if waiting:
            logger.warning(
                "alerts.admin_notify names notifiers that are not configured (%s): their "
                "notices wait in the outbox until they are",
                ", ".join(waiting),
            )
        self.engine = RuleEngine((), pairs=self._pairs, symbols=self._symbols)
        self._rules: dict[str, Rule] = {}
        self.silences: list[Silence] = []
        self._muted: dict[AlertKey, AlertEvent] = {}
        """Alerts whose raising notification a silence suppressed, with that event."""
        self._saved: dict[AlertKey, int | None] = {}
        """Per alert: ``last_at`` when its state was last queued for writing."""
        self._seen: dict[tuple[str, str, int], int] = {}
        """(target, timeframe, window) → close time of its latest snapshot (stale feeds)."""
        self.evaluations = 0
        self.events = 0
        self.notifications = 0
        self.silenced = 0
        self.reloads = 0
        self.reload_failures = 0
        self.errors = 0

    # -- rules ---------------------------------------------------------------------------------

    def install(
        self,
        rules: RulesFile,
        stored: Iterable[StoredState] = (),
        muted: Mapping[AlertKey, AlertEvent] | None = None,
    ) -> None:
        """Start with ``rules`` and the states stored by the last run (at start-up).

        A stored alert continues when its rule name, target, timeframe and window are the
        same; the others are deleted from the store (logged when they were firing).
        """
        engine = RuleEngine(rules.rules, pairs=self._pairs, symbols=self._symbols)
        by_key = {(s.rule, s.target): s for s in stored}
        series = {r.name: series_of(r) for r in rules.rules}
        forget: list[AlertKey] = []
        for key, s in by_key.items():
            state = engine.states.get(key)
            if state is None or series[key[0]] != (s.timeframe, s.window):
                forget.append(key)
                if s.state.phase == "firing":
                    logger.info("alert %s %s was firing under a rule gone from the file: "
                                "dropped", *key)  # fmt: skip
                continue
            _copy_state(s.state, state)
            self._saved[key] = state.last_at
            if s.muted_firing and muted and key in muted:
                self._muted[key] = muted[key]
        self._swap(engine, rules)
        if forget:
            self._writer.put_alerts((), forget=forget)

    async def reload(self, load: Callable[[], RulesFile], why: str) -> bool:
        """Load the rules again (in a worker) and swap them in; False if the file is invalid.

        An invalid file keeps the current rules: every problem is logged and one notice
        goes to the admin routes.
        """
        import asyncio

        from pairwatch.errors import ConfigError

        def load_and_index() -> tuple[RulesFile, RuleEngine]:
            rules = load()  # the engine is built here too: only the swap runs on the loop
            return rules, RuleEngine(rules.rules, pairs=self._pairs, symbols=self._symbols)

        try:
            rules, engine = await asyncio.to_thread(load_and_index)
        except ConfigError as exc:
            self.reload_failures += 1
            logger.error("rules reload (%s) failed: the previous rules keep running", why)
            for line in exc.problems:
                logger.error("%s", line)
            shown = "\n".join(exc.problems[:20])
            more = len(exc.problems) - 20
            if more > 0:
                shown += f"\n… and {more} more (see the log)"
            self._notice(
                "rules reload failed",
                f"{len(exc.problems)} problem(s); the previous rules keep running:\n{shown}",
            )
            return False
        self.replace(rules, engine)
        self.reloads += 1
        logger.info("rules reloaded (%s): %d rules, %d alerts", why, len(rules.rules),
                    len(self.engine.states))  # fmt: skip
        return True

    def replace(self, rules: RulesFile, engine: RuleEngine | None = None) -> None:
        """Swap in new rules now, carrying the state of alerts that did not change.

        ``engine``: the new rules' engine, if already built (fresh: no state yet).
        """
        old_engine, old_rules = self.engine, self._rules
        if engine is None:
            engine = RuleEngine(rules.rules, pairs=self._pairs, symbols=self._symbols)
        series = {r.name: series_of(r) for r in rules.rules}
        now = self._clock()
        events: list[AlertEvent] = []
        forget: list[AlertKey] = []
        kept = {n: series[n] == series_of(r) for n, r in old_rules.items() if n in series}
        for key, old in old_engine.states.items():
            new = engine.states.get(key)
            if new is not None and kept[key[0]]:
                _copy_state(old, new)
                continue
            forget.append(key)
            self._saved.pop(key, None)
            if old.phase == "firing":
                events.append(_gone(old_rules[key[0]], key[1], now))
        self._swap(engine, rules)
        if events:
            self._emit(events, old_rules, forget=forget)
        elif forget:
            self._writer.put_alerts((), forget=forget)

    def _swap(self, engine: RuleEngine, rules: RulesFile) -> None:
        self.engine = engine
        self._rules = {r.name: r for r in rules.rules}
        self._muted = {k: e for k, e in self._muted.items() if k in engine.states}
        unrouted = sorted(
            {
                f"{r.name} → {route.notifier}"
                for r in rules.rules
                for route in r.notify
                if route.notifier not in self._notifiers
            }
        )
        if unrouted:
            logger.warning(
                "notifiers not configured, their notifications wait in the outbox until they "
                "are: %s",
                ", ".join(unrouted),
            )

    # -- evaluation ----------------------------------------------------------------------------

    def on_snapshots(
        self, pairs: Sequence[PairSnapshot], symbols: Sequence[SymbolSnapshot] = ()
    ) -> None:
        """Evaluate the rules on one batch of new snapshots (an analytics listener)."""
        try:
            engine = self.engine
            events = engine.on_pair_snapshots(pairs)
            seen = self._seen
            for p in pairs:
                seen[(p.pair, p.timeframe, p.window)] = p.ts + _length(p.timeframe)
            if symbols:
                now = self._clock()
                key = _symbol_batch
                for (timeframe, ts), group in itertools.groupby(sorted(symbols, key=key), key=key):
                    end = ts + _length(timeframe)
                    health = health_values(self._health, self._symbols, now, ts)
                    batch = list(group)
                    events.extend(engine.on_symbol_snapshots(batch, health))
                    for s in batch:
                        seen[(s.symbol, s.timeframe, s.window)] = end
            self.evaluations += len(pairs) + len(symbols)
            if events:
                self._emit(events)
        except Exception:  # never take the feed down: log, count, go on
            self.errors += 1
            logger.exception("alert evaluation failed on %d snapshots", len(pairs) + len(symbols))

    def on_clock(self, now: int) -> None:
        """Once a second: rules on health values, stale targets, silences that ended."""
        try:
            engine = self.engine
            health = health_values(self._health, self._symbols, now, now - HEALTH_SPAN_MS)
            events = engine.on_health(health, now)
            events.extend(self._stale(now))
            if events:
                self._emit(events)
            self._unmute(now)
        except Exception:
            self.errors += 1
            logger.exception("alert evaluation on the clock failed")

    def _stale(self, now: int) -> list[AlertEvent]:
        """Evaluate targets whose snapshots stopped as no data (docs/rules.md, stale feed)."""
        events: list[AlertEvent] = []
        engine = self.engine
        for (target, timeframe, window), end in self._seen.items():
            length = _length(timeframe)
            if now - end <= length + self._grace:  # the next bar is late by more than a bar
                continue
            if "/" in target:
                y, _, x = target.partition("/")
                empty = PairSnapshot(y, x, timeframe, window, now - length, {}, thin=True)
                events.extend(engine.on_pair_snapshots((empty,)))
            else:
                silent = SymbolSnapshot(target, timeframe, window, now - length, {})
                events.extend(engine.on_symbol_snapshots((silent,)))
        return events

    # -- silences ------------------------------------------------------------------------------

    def set_silences(self, silences: Sequence[Silence]) -> None:
        """Replace the active silences (read from the store by the daemon)."""
        self.silences = list(silences)

    def is_silenced(self, rule: str, target: str, now: int) -> bool:
        """Return whether a silence covers ``rule`` × ``target`` at ``now``."""
        return any(s.matches(rule, target, now) for s in self.silences)

    def _unmute(self, now: int) -> None:
        """Notify alerts still raised when their silence ended (their raising event)."""
        if not self._muted:
            return
        due: list[Notification] = []
        for key, event in list(self._muted.items()):
            if self.is_silenced(*key, now):
                continue
            del self._muted[key]
            state = self.engine.states.get(key)
            rule = self._rules.get(key[0])
            raised = state is not None and (
                state.phase == "firing" if event.kind == "firing" else state.no_data_firing
            )
            if raised and rule is not None:
                due.extend(notifications(event, rule, self._defaults))
        if due:
            self.notifications += len(due)
            self._writer.put_alerts((), due)
            self._on_stored()

    # -- persistence ---------------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Queue the states that changed since they were last written."""
        saved = self._saved
        changed = [
            self._stored(key, state)
            for key, state in self.engine.states.items()
            if state.last_at is not None and saved.get(key) != state.last_at
        ]
        if changed:
            try:
                self._writer.put_alerts((), states=changed)
            except Exception:
                self.errors += 1
                logger.exception("saving %d alert states failed", len(changed))
                return
            for s in changed:
                saved[(s.rule, s.target)] = s.state.last_at

    def _stored(self, key: AlertKey, state: AlertState) -> StoredState:
        timeframe, window = series_of(self._rules[key[0]])
        return StoredState(
            key[0], key[1], timeframe, window, dataclasses.replace(state), key in self._muted
        )

    def _emit(
        self,
        events: Sequence[AlertEvent],
        rules: Mapping[str, Rule] | None = None,
        forget: Sequence[AlertKey] = (),
    ) -> None:
        """Write events, their notifications and their alerts' states; then wake delivery."""
        rules = rules if rules is not None else self._rules
        now = self._clock()
        records: list[tuple[AlertEvent, bool]] = []
        outbox: list[Notification] = []
        touched: dict[AlertKey, None] = {}
        for event in events:
            key = (event.rule, event.target)
            touched[key] = None
            silenced = False
            if event.notify:
                silenced = self.is_silenced(event.rule, event.target, now)
                if event.kind in _RAISING and silenced:
                    self._muted[key] = event
                elif event.kind in _ENDING and self._muted.pop(key, None) is not None:
                    silenced = True  # its raising was never told: neither is its end
                elif event.kind == "repeat" and key in self._muted:
                    silenced = True
            if silenced:
                self.silenced += 1
            elif event.notify:
                outbox.extend(notifications(event, rules[event.rule], self._defaults))
            records.append((event, silenced))
            logger.debug("alert %s %s %s%s: %s", event.kind, event.rule, event.target,
                " (silenced)" if silenced else "", event.message)  # fmt: skip
        states = [
            self._stored(key, self.engine.states[key])
            for key in touched
            if key in self.engine.states
        ]
        self._writer.put_alerts(records, outbox, states, forget)
        for s in states:
            self._saved[(s.rule, s.target)] = s.state.last_at
        self.events += len(records)
        if outbox:
            self.notifications += len(outbox)
            self._on_stored()

    def _notice(self, title: str, text: str) -> None:
        now = self._clock()
        payload = notice_payload(title, text)
        key = f"notice|{title}|{now}"
        outbox = [
            Notification(key, notifier, dict(overrides), payload)
            for notifier in self._admin
            for overrides in self._defaults.get(notifier) or ({},)
        ]
        if outbox:
            self._writer.put_alerts((), outbox)
            self.notifications += len(outbox)
            self._on_stored()

    def counters(self) -> dict[str, int]:
        """Return the stage's counters (for status and feed stats)."""
        firing = sum(s.phase == "firing" for s in self.engine.states.values())
        pending = sum(s.phase == "pending" for s in self.engine.states.values())
        return {
            "rules": len(self._rules),
            "alerts": len(self.engine.states),
            "firing": firing,
            "pending": pending,
            "evaluations": self.evaluations,
            "events": self.events,
            "notifications": self.notifications,
            "silenced": self.silenced,
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
            "errors": self.errors,
        }


class RulesWatch:
    """Whether a rules file changed since it was last loaded (mtime, size, inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.signature = self.read()

    def read(self) -> tuple[int, int, int] | None:
        """Return the file's current signature; None when it cannot be read."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def changed(self) -> bool:
        """Return whether the signature differs from the last loaded one."""
        return self.read() != self.signature


_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(AlertState))


def _copy_state(source: AlertState, target: AlertState) -> None:
    """Copy every field of ``source`` into ``target`` (the engine keeps ``target``)."""
    for name in _STATE_FIELDS:
        setattr(target, name, getattr(source, name))


def _gone(rule: Rule, target: str, now: int) -> AlertEvent:
    """Return the resolution of a firing alert whose rule or target was removed."""
    timeframe, window = series_of(rule)
    main = rule.primary
    t = Transition("resolved", now, main.metric, math.nan, main.threshold)
    message = render(rule, target, timeframe, window, t, {}) + " (rule removed or changed)"
    return AlertEvent(
        rule=rule.name, target=target, timeframe=timeframe, window=window, kind="resolved",
        at=now, severity=rule.severity, metric=main.metric, value=math.nan,
        threshold=main.threshold, message=message, values={}, labels=dict(rule.labels),
        notify=rule.notify_resolved,
    )  # fmt: skip


def _symbol_batch(s: SymbolSnapshot) -> tuple[str, int]:
    return (s.timeframe, s.ts)


_lengths: dict[str, int] = {}


def _length(timeframe: str) -> int:
    length = _lengths.get(timeframe)
    if length is None:
        length = _lengths[timeframe] = parse_timeframe(timeframe)
    return length
