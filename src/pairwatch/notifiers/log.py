"""The ``log`` notifier: every notification as one line in the daemon's log.

Useful on its own (journald keeps it, ``journalctl -u pairwatch -g ALERT`` finds it) and
the notifier that makes the whole alert path run and testable without any service.
"""

from __future__ import annotations

import logging

from pairwatch.daemon.alert_rows import OutboxItem
from pairwatch.notifiers.formatting import plain_text

logger = logging.getLogger("pairwatch.alerts")

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}


class LogNotifier:
    """Deliver notifications to the ``pairwatch.alerts`` logger (never fails)."""

    name = "log"

    def __init__(self) -> None:
        self.delivered = 0

    async def deliver(self, item: OutboxItem) -> None:
        """Log one notification; the level follows its severity."""
        payload = item.payload
        severity = payload.get("severity") or payload.get("event", {}).get("severity", "info")
        logger.log(_LEVELS.get(str(severity), logging.WARNING), "ALERT %s", plain_text(payload))
        self.delivered += 1
