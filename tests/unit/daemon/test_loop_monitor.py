"""The event-loop lag probe: how late each sleep wakes, recorded in µs."""

from __future__ import annotations

import asyncio

from pairwatch.daemon.health import LagWindow
from pairwatch.daemon.loop_monitor import watch_loop


async def test_each_wake_up_records_its_lateness_in_microseconds() -> None:
    # (start, woke) readings of the clock around four 50 ms sleeps: on time, 30 ms late,
    # 2.5 ms late, and early (a coarse clock): recorded as 0.
    times = iter([0.0, 0.05, 1.0, 1.08, 2.0, 2.0525, 3.0, 3.04])
    read_all = asyncio.Event()
    window = LagWindow(16)

    def clock() -> float:
        try:
            return next(times)
        except StopIteration:
            read_all.set()
            return 10.0

    task = asyncio.create_task(watch_loop(window, period_s=0.05, clock=clock))
    await asyncio.wait_for(read_all.wait(), 10)
    task.cancel()
    assert window._values[:4] == [0, 30_000, 2_500, 0]
    assert window.percentiles()[2] == 30_000
