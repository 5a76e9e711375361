"""Time in tests: a clock set by hand, and polling for what a thread makes true."""

from __future__ import annotations

import time
from collections.abc import Callable


class Clock:
    """An injected clock (epoch ms) that moves only when a test sets ``now``."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition the writer thread makes true (it offers no event for it)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)
