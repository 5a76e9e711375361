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
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

import msgspec

from pairwatch.analytics.alerting import AlertState
from pairwatch.analytics.rule_engine import RuleEngine
from pairwatch.config.rules import ALL, Rule, RulesFile
from pairwatch.daemon.alert_rows import Notification, Silence, StoredState, notice_payload
from pairwatch.daemon.alert_support import (
    AlertKey,
    AlertWriter,
    Defaults,
    bar_length,
    copy_state,
    destinations,
    gone_event,
    notifications,
    series_of,
    signature,
    symbol_batch,
)
from pairwatch.daemon.health import Health, health_values
from pairwatch.daemon.silences import MuteKey, Silencer
from pairwatch.events import AlertEvent, PairSnapshot, SymbolSnapshot

logger = logging.getLogger(__name__)

HEALTH_SPAN_MS = 60_000
"""Rules on the clock count the gaps of the last minute."""

STATE_REFRESH_MS = 30_000
"""States whose only change is the time of their last evaluation (and the previous values
of crossings) are written at most this often, and at shutdown; other changes at once."""


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
        self._notifiers = tuple(dict.fromkeys(notifiers))
        """The configured notifiers, in order: what a route ``all`` stands for."""
        self._on_stored = on_stored
        self._defaults: Defaults = defaults or {}
        waiting = [n for n in self._admin if n not in (*self._notifiers, ALL)]
        if waiting:
            logger.warning(
                "alerts.admin_notify names notifiers that are not configured (%s): their "
                "notices wait in the outbox until they are",
                ", ".join(waiting),
            )
        self.engine = RuleEngine((), pairs=self._pairs, symbols=self._symbols)
        self._rules: dict[str, Rule] = {}
        self.silencer = Silencer()
        self._saved: dict[AlertKey, tuple[object, ...]] = {}
        """Per alert: its state (``signature``) when it was last queued for writing."""
        self._refreshed_at = 0
        """When states were last written for their evaluation times alone."""
        self._seen: dict[tuple[str, str | None, str, int], list[int]] = {}
        """(y or symbol, x or None, timeframe, window) → [received at (wall clock), bar
        close of the latest snapshot, bar close of the last stale evaluation]."""
        self._same_at: dict[AlertKey, tuple[int, dict[str, int]]] = {}
        """Per alert: the time of its latest events and how many of each kind (``seq``)."""
        self._symbol_rules = False
        """Whether any rule targets symbols (health values are computed only then)."""
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
        muted: Mapping[MuteKey, AlertEvent] | None = None,
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
            copy_state(s.state, state)
            self._saved[key] = signature(state)
            self.silencer.restore(key, s.muted, muted or {})
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
                copy_state(old, new)
                continue
            forget.append(key)
            self._saved.pop(key, None)
            if old.phase == "firing":
                events.append(gone_event(old_rules[key[0]], key[1], now, "resolved"))
            if old.no_data_firing:
                events.append(gone_event(old_rules[key[0]], key[1], now, "data"))
        self._swap(engine, rules)
        if events:
            self._emit(events, old_rules, forget=forget)
        elif forget:
            self._writer.put_alerts((), forget=forget)
        self.silencer.keep_only(engine.states)

    def _swap(self, engine: RuleEngine, rules: RulesFile) -> None:
        self.engine = engine
        self._rules = {r.name: r for r in rules.rules}
        self._symbol_rules = any(r.kind != "pair" for r in rules.rules)
        routed = {*self._notifiers, ALL}
        unrouted = sorted(
            {
                f"{r.name} → {route.notifier}"
                for r in rules.rules
                for route in r.notify
                if route.notifier not in routed
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
            now = self._clock()
            seen = self._seen
            for p in pairs:
                end = p.ts + bar_length(p.timeframe)
                seen[(p.y, p.x, p.timeframe, p.window)] = [now, end, end]
            if symbols and self._symbol_rules:
                key = symbol_batch
                for (timeframe, ts), group in itertools.groupby(sorted(symbols, key=key), key=key):
                    end = ts + bar_length(timeframe)
                    health = health_values(self._health, self._symbols, now, ts)
                    batch = list(group)
                    events.extend(engine.on_symbol_snapshots(batch, health))
                    for s in batch:
                        seen[(s.symbol, None, s.timeframe, s.window)] = [now, end, end]
            self.evaluations += len(pairs) + len(symbols)
            if events:
                self._emit(events)
        except Exception:  # never take the feed down: log, count, go on
            self.errors += 1
            logger.exception("alert evaluation failed on %d snapshots", len(pairs) + len(symbols))

    def on_clock(self, now: int) -> None:
        """Once a second: rules on health values, stale targets, silences that ended."""
        try:
            events: list[AlertEvent] = []
            if self._symbol_rules:
                since = now - HEALTH_SPAN_MS
                health = health_values(self._health, self._symbols, now, since)
                events.extend(self.engine.on_health(health, now))
            events.extend(self._stale(now))
            if events:
                self._emit(events)
            self._unmute(now)
        except Exception:
            self.errors += 1
            logger.exception("alert evaluation on the clock failed")

    def _stale(self, now: int) -> list[AlertEvent]:
        """Evaluate targets whose snapshots stopped as no data, once per missing bar.

        A target is stale when no snapshot was received for two of its bars plus the bar
        grace (wall clock). It is then evaluated without data at the close time of each
        bar that should have come (bar time, so the alert's clock stays the bars' clock).
        """
        events: list[AlertEvent] = []
        engine = self.engine
        grace = self._grace
        for (y, x, timeframe, window), seen in self._seen.items():
            received, end, evaluated = seen
            length = bar_length(timeframe)
            late = now - received
            if late <= 2 * length + grace:
                continue
            at = end + (late // length) * length  # the close of the latest missing bar
            if at <= evaluated:
                continue
            seen[2] = at
            if x is not None:
                empty = PairSnapshot(y, x, timeframe, window, at - length, {}, thin=True)
                events.extend(engine.on_pair_snapshots((empty,)))
            elif self._symbol_rules:
                silent = SymbolSnapshot(y, timeframe, window, at - length, {})
                events.extend(engine.on_symbol_snapshots((silent,)))
        return events

    # -- silences ------------------------------------------------------------------------------

    def set_silences(self, silences: Sequence[Silence]) -> None:
        """Replace the active silences (read from the store by the daemon)."""
        self.silencer.set(silences)

    def _unmute(self, now: int) -> None:
        """Notify raisings held back by a silence that ended, if still raised (with state)."""
        released = self.silencer.released(now) if self.silencer.held else ()
        if not released:
            return
        due: list[Notification] = []
        touched: dict[AlertKey, None] = {}
        for (rule_name, target, kind), event in released:
            key = (rule_name, target)
            touched[key] = None
            state = self.engine.states.get(key)
            rule = self._rules.get(rule_name)
            raised = state is not None and (
                state.phase == "firing" if kind == "firing" else state.no_data_firing
            )
            if raised and rule is not None:
                due.extend(notifications(event, rule, self._defaults, self._notifiers))
        states = [self._stored(k, st) for k in touched if (st := self.engine.states.get(k))]
        self._writer.put_alerts((), due, states)  # the cleared bits with the notifications
        self._mark_saved(states)
        if due:
            self.notifications += len(due)
            self._on_stored()

    # -- persistence ---------------------------------------------------------------------------

    def checkpoint(self, *, final: bool = False) -> None:
        """Queue the states that changed since they were last written.

        A change of the time of the last evaluation alone (and of the previous values of
        crossings) is written every ``STATE_REFRESH_MS`` and at the ``final`` checkpoint;
        any other change at every checkpoint.
        """
        now = self._clock()
        refresh = final or now - self._refreshed_at >= STATE_REFRESH_MS
        saved = self._saved
        changed = []
        for key, state in self.engine.states.items():
            if state.last_at is None:
                continue
            before = saved.get(key)
            now_sig = signature(state)
            if (
                before is None
                or before[:-1] != now_sig[:-1]
                or (refresh and before[-1] != now_sig[-1])
            ):
                changed.append(self._stored(key, state))
        if refresh:
            self._refreshed_at = now
        if changed:
            try:
                self._writer.put_alerts((), states=changed)
            except Exception:
                self.errors += 1
                logger.exception("saving %d alert states failed", len(changed))
                return
            self._mark_saved(changed)

    def _mark_saved(self, states: Iterable[StoredState]) -> None:
        for s in states:
            self._saved[(s.rule, s.target)] = signature(s.state)

    def _stored(self, key: AlertKey, state: AlertState) -> StoredState:
        timeframe, window = series_of(self._rules[key[0]])
        muted = self.silencer.bits(key)
        return StoredState(key[0], key[1], timeframe, window, dataclasses.replace(state), muted)

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
        for raw in events:
            key = (raw.rule, raw.target)
            touched[key] = None
            event = self._unique(key, raw)
            silenced = self.silencer.hold(key, event, now)
            if silenced:
                self.silenced += 1
            elif event.notify:
                rule = rules[event.rule]
                outbox.extend(notifications(event, rule, self._defaults, self._notifiers))
            records.append((event, silenced))
            logger.debug("alert %s %s %s%s: %s", event.kind, event.rule, event.target,
                " (silenced)" if silenced else "", event.message)  # fmt: skip
        states = [
            self._stored(key, self.engine.states[key])
            for key in touched
            if key in self.engine.states
        ]
        self._writer.put_alerts(records, outbox, states, forget)
        self._mark_saved(states)
        self.events += len(records)
        if outbox:
            self.notifications += len(outbox)
            self._on_stored()

    def _unique(self, key: AlertKey, event: AlertEvent) -> AlertEvent:
        """Number an event like an earlier one of the same alert, kind and time (``seq``)."""
        at, kinds = self._same_at.get(key, (None, None))
        if at != event.at or kinds is None:
            self._same_at[key] = (event.at, {event.kind: 1})
            return event
        seq = kinds.get(event.kind, 0)
        kinds[event.kind] = seq + 1
        return msgspec.structs.replace(event, seq=seq) if seq else event

    def _notice(self, title: str, text: str) -> None:
        now = self._clock()
        payload = notice_payload(title, text)
        key = f"notice|{title}|{now}"
        routes: list[tuple[str, dict[str, str]]] = [(n, {}) for n in self._admin]
        outbox = [
            Notification(key, notifier, dict(overrides), payload)
            for notifier, overrides in destinations(routes, self._notifiers, self._defaults)
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
