"""The daemon's event-loop lag: how late a 50 ms sleep wakes up, over the last minute.

A blocked loop delays everything at once — trades, bars, alerts — so it is worth a number
of its own on /metrics (``pairwatch_event_loop_lag_seconds``) and /healthz (``loop_lag_s``,
the last minute's maximum). The probe costs one timer per 50 ms.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pairwatch.daemon.health import LagWindow

PERIOD_S = 0.05
"""How often the probe sleeps (``Health.loop_lag`` keeps 1,200 samples: a minute)."""


async def watch_loop(
    window: LagWindow,
    *,
    period_s: float = PERIOD_S,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Record, until cancelled, how late each ``period_s`` sleep wakes (µs) into ``window``."""
    while True:
        start = clock()
        await asyncio.sleep(period_s)
        window.add(max(0, round((clock() - start - period_s) * 1e6)))
