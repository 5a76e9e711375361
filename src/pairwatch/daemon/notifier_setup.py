"""Which notifiers run: the log always, Telegram, the webhook (and MQTT) when configured.

Each is built from its settings section; those with a connection of their own are started
on the daemon's loop before delivery begins and stopped after it ended. ``open_notifiers``
stops or closes every notifier it built on exit, also when the daemon never started them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from pairwatch.config.settings import Settings
from pairwatch.notifiers.log import LogNotifier
from pairwatch.notifiers.mqtt import MqttLink
from pairwatch.notifiers.outbox import Notifier
from pairwatch.notifiers.telegram_backend import BotBackend

logger = logging.getLogger(__name__)


def build_notifiers(
    settings: Settings,
    backend: BotBackend | None,
    mqtt_link: MqttLink | None = None,
    *,
    built: list[Notifier] | None = None,
) -> list[Notifier]:
    """Return the notifiers the settings configure (``log`` always).

    Each is appended to ``built`` (returned) as soon as it exists: when a later one fails
    to build, the caller still has those to close.
    """
    notifiers = built if built is not None else []
    notifiers.append(LogNotifier())
    if mqtt_link is not None:
        from pairwatch.notifiers.mqtt import MqttNotifier

        notifiers.append(MqttNotifier(mqtt_link))
    if settings.telegram.enabled:
        from pairwatch.notifiers.telegram import TelegramNotifier

        notifiers.append(TelegramNotifier(settings.telegram, backend))
    if settings.webhook.enabled:
        from pairwatch.notifiers.webhook import WebhookNotifier

        notifiers.append(WebhookNotifier(settings.webhook))
    logger.info("notifiers: %s", ", ".join(n.name for n in notifiers))
    return notifiers


@contextlib.asynccontextmanager
async def open_notifiers(
    settings: Settings, backend: BotBackend | None, mqtt_link: MqttLink | None = None
) -> AsyncIterator[list[Notifier]]:
    """Build the configured notifiers; on exit stop or close each one, started or not."""
    notifiers: list[Notifier] = []
    try:
        notifiers = build_notifiers(settings, backend, mqtt_link, built=notifiers)
        yield notifiers
    finally:
        await stop_notifiers(notifiers)


async def start_notifiers(notifiers: Sequence[Notifier]) -> None:
    """Start the notifiers that connect to something (they connect in the background)."""
    for notifier in notifiers:
        start = getattr(notifier, "start", None)
        if start is not None:
            await start()


async def stop_notifiers(notifiers: Sequence[Notifier]) -> None:
    """Stop or close every notifier that has a connection; never raise."""
    for notifier in notifiers:
        for name in ("stop", "close"):
            method = getattr(notifier, name, None)
            if method is not None:
                try:
                    await method()
                except Exception:
                    logger.exception("stopping the %s notifier failed", notifier.name)
                break
