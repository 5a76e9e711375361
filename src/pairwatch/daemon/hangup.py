"""SIGHUP reloads the rules: a handler on the daemon's loop, set only in the main thread.

Under systemd the reload is announced: RELOADING=1 when the signal arrives, READY=1 once
the reload it asked for has finished (whether the new rules were taken or refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from pairwatch.daemon.sdnotify import Systemd

logger = logging.getLogger(__name__)

RELOAD_TIMEOUT_S = 60.0
"""READY=1 is sent after this long even if the reload has not reported back."""


class HangupReload:
    """The SIGHUP handler of one daemon run; ``remove`` is a no-op unless it was set."""

    def __init__(self, systemd: Systemd | None = None) -> None:
        self._installed = False
        self._systemd = systemd
        self._waiting: asyncio.Task[None] | None = None

    def install(self, reload: Callable[[], None], done: asyncio.Event | None = None) -> bool:
        """Call ``reload`` on SIGHUP from now; return whether the handler is set.

        ``done`` is set by the reloader after each reload: with it, systemd is told
        RELOADING=1 on the signal and READY=1 when ``done`` is set again.
        """

        def on_hangup() -> None:
            if done is not None and self._systemd is not None:
                self._announce(done)
            reload()

        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_hangup)
        except (RuntimeError, NotImplementedError, ValueError):
            return False  # not the main thread (or no signals here): reload by file watch only
        self._installed = True
        return True

    def remove(self) -> None:
        """Restore SIGHUP's default action (which ends the process): call it last."""
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None
        if self._installed:
            self._installed = False
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    def _announce(self, done: asyncio.Event) -> None:
        """RELOADING=1 now, READY=1 when ``done`` is set (signals during a reload join it)."""
        assert self._systemd is not None
        if self._waiting is not None and not self._waiting.done():
            return
        done.clear()
        self._systemd.reloading()
        self._waiting = asyncio.create_task(self._ready_when(done), name="systemd-reload")

    async def _ready_when(self, done: asyncio.Event) -> None:
        assert self._systemd is not None
        try:
            async with asyncio.timeout(RELOAD_TIMEOUT_S):
                await done.wait()
        except TimeoutError:
            logger.warning("rules reload not finished after %.0f s", RELOAD_TIMEOUT_S)
        self._systemd.reloaded()
