"""Wait for a burst to settle: until an event stayed clear for a quiet time, with a cap.

A bar close hands over its pairs' snapshots and alerts over some tens of milliseconds; the
retained analytics snapshots, which share the event loop, the GIL and the cores with the
alerts, wait until the burst is over (``mqtt_publish``), so the alerts go first; the cap
keeps a stream without pauses flowing.
"""

from __future__ import annotations

import asyncio


async def settle(wake: asyncio.Event, quiet: float, most: float) -> None:
    """Return once ``wake`` was not set for ``quiet`` seconds, or ``most`` seconds passed.

    ``wake`` is cleared as it is waited on: set it for each new value of the burst.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + most
    while (left := deadline - loop.time()) > 0:
        wake.clear()
        try:
            async with asyncio.timeout(min(quiet, left)):
                await wake.wait()
        except TimeoutError:
            return
