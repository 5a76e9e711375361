"""Capped exponential backoff with jitter, reset after a healthy connection."""

from __future__ import annotations

import random


class Backoff:
    """Delays of ``initial · 2^n`` capped at ``maximum``, each jittered into its upper half."""

    def __init__(self, initial: float, maximum: float, *, rng: random.Random | None = None) -> None:
        self._initial = initial
        self._maximum = maximum
        self._attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """Return the next delay in seconds and count the attempt."""
        ceiling = min(self._maximum, self._initial * 2.0 ** min(self._attempt, 62))
        self._attempt += 1
        return self._rng.uniform(ceiling / 2.0, ceiling)

    def reset(self) -> None:
        """Start again from the initial delay (after a connection proved healthy)."""
        self._attempt = 0
