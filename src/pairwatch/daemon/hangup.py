"""SIGHUP reloads the rules: a handler on the daemon's loop, set only in the main thread."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable


class HangupReload:
    """The SIGHUP handler of one daemon run; ``remove`` is a no-op unless it was set."""

    def __init__(self) -> None:
        self._installed = False

    def install(self, reload: Callable[[], None]) -> bool:
        """Call ``reload`` on SIGHUP from now; return whether the handler is set."""
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
        except (RuntimeError, NotImplementedError, ValueError):
            return False  # not the main thread (or no signals here): reload by file watch only
        self._installed = True
        return True

    def remove(self) -> None:
        """Restore SIGHUP's default action (which ends the process): call it last."""
        if self._installed:
            self._installed = False
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
