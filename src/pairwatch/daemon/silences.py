"""Silences applied to alert events: which notifications are held back, and told later.

A silence (``pairwatch mute``, stored in ``silences``) covers a rule, or every rule, and
optionally one target, until it ends. Under it a raising (firing, no-data) is recorded but
not told, and remembered; when the silence ends, a raising still raised is told then
(docs/rules.md, "Silences"). The end of a raising that was never told is never told.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence

from pairwatch.daemon.alert_rows import MUTED_FIRING, MUTED_NO_DATA, Silence
from pairwatch.events import AlertEvent

AlertKey = tuple[str, str]
MuteKey = tuple[str, str, str]
"""(rule name, target, ``firing`` or ``no_data``): a raising a silence held back."""

RAISES = {"firing": "firing", "no_data": "no_data"}
"""Event kinds that raise, and the raising they are."""
ENDS = {"resolved": "firing", "data": "no_data"}
"""Event kinds that end a raising, and the raising they end."""
BITS = {"firing": MUTED_FIRING, "no_data": MUTED_NO_DATA}
"""The ``alert_state.muted`` bit of each raising."""


class Silencer:
    """The active silences and the raisings they hold back."""

    def __init__(self) -> None:
        self.silences: list[Silence] = []
        self.held: dict[MuteKey, AlertEvent] = {}
        """Raisings a silence held back, with their events."""

    def set(self, silences: Sequence[Silence]) -> None:
        """Replace the active silences (read from the store)."""
        self.silences = list(silences)

    def covers(self, rule: str, target: str, now: int) -> bool:
        """Return whether a silence covers ``rule`` × ``target`` at ``now``."""
        return any(s.matches(rule, target, now) for s in self.silences)

    def hold(self, key: AlertKey, event: AlertEvent, now: int) -> bool:
        """Apply the silences to one event; return whether its notification is held back.

        A raising under a silence is held back and remembered; an end of a held-back
        raising is never told, whatever the silences are now; a repeat of a held-back
        firing neither.
        """
        raised = RAISES.get(event.kind)
        if raised is not None:
            if event.notify and self.covers(*key, now):
                self.held[(*key, raised)] = event
                return True
            self.held.pop((*key, raised), None)
            return False
        ended = ENDS.get(event.kind)
        if ended is not None:
            was_held = self.held.pop((*key, ended), None) is not None
            return event.notify and (was_held or self.covers(*key, now))
        if event.kind == "repeat" and (*key, "firing") in self.held:
            return True
        return event.notify and self.covers(*key, now)

    def released(self, now: int) -> list[tuple[MuteKey, AlertEvent]]:
        """Forget and return the held-back raisings no silence covers any more."""
        out = [(k, e) for k, e in self.held.items() if not self.covers(k[0], k[1], now)]
        for k, _ in out:
            del self.held[k]
        return out

    def bits(self, key: AlertKey) -> int:
        """Return the ``alert_state.muted`` bits of an alert."""
        return sum(bit for kind, bit in BITS.items() if (*key, kind) in self.held)

    def restore(self, key: AlertKey, bits: int, events: Mapping[MuteKey, AlertEvent]) -> None:
        """Hold back again, after a restart, the raisings stored as muted with their events."""
        for kind, bit in BITS.items():
            event = events.get((*key, kind))
            if bits & bit and event is not None:
                self.held[(*key, kind)] = event

    def keep_only(self, alerts: Container[AlertKey]) -> None:
        """Forget the raisings of alerts that are gone."""
        self.held = {k: e for k, e in self.held.items() if k[:2] in alerts}
