"""A recording writer for the alert stage: the events and notifications it queued."""

from __future__ import annotations

from collections.abc import Sequence

from pairwatch.daemon.alert_rows import Notification, StoredState
from pairwatch.events import AlertEvent


class RecordingAlertWriter:
    """The writer seam of ``AlertStage`` (``put_alerts``), recording what it was given."""

    def __init__(self) -> None:
        self.events: list[tuple[AlertEvent, bool]] = []
        self.notifications: list[Notification] = []

    def put_alerts(
        self,
        events: Sequence[tuple[AlertEvent, bool]],
        notifications: Sequence[Notification] = (),
        states: Sequence[StoredState] = (),
        forget: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.events.extend(events)
        self.notifications.extend(notifications)
