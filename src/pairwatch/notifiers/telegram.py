"""The Telegram notifier and bot: python-telegram-bot on the daemon's own event loop.

``start`` returns at once: a background task connects to the Bot API (``initialize →
start → updater.start_polling``, then ``setMyCommands``), retrying with backoff while the
API is unreachable, so the daemon never waits for Telegram. Until it is connected,
``deliver`` raises a retryable ``DeliveryError`` and the outbox keeps the rows. ``stop``
runs the reverse. No thread, no second loop.

Delivery errors say whether a retry can help: a 429 carries Telegram's ``retry_after``;
network errors, timeouts and 5xx are retried; a chat that does not exist or a bot that
was blocked is given up. A text whose HTML Telegram cannot parse is sent again as plain
text (``telegram_commands.send_text``) rather than given up. The bot token is in every
Bot API URL, which python-telegram-bot and httpx log: ``telegram_redact`` keeps it out
of the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence

from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
)
from telegram.ext import AIORateLimiter, Application

from pairwatch.config.notifier_settings import TelegramSettings
from pairwatch.daemon.alert_rows import OutboxItem
from pairwatch.notifiers.outbox import DeliveryError
from pairwatch.notifiers.telegram_backend import BotBackend
from pairwatch.notifiers.telegram_commands import App, BotCommands, bot_commands, send_text
from pairwatch.notifiers.telegram_format import payload_message
from pairwatch.notifiers.telegram_redact import HandledRateLimit, TokenRedactor

# python-telegram-bot 22 warns (PTBDeprecationWarning) whenever an int time period is read,
# e.g. when it builds a RetryAfter, unless timedeltas are opted into: opt in (read per call).
os.environ.setdefault("PTB_TIMEDELTA", "true")

logger = logging.getLogger(__name__)

RECONNECT_RECHECK_S = 5.0
"""While the bot is not connected, a delivery is tried again this soon."""

NAME = "telegram"
_NUMERIC_CHAT = re.compile(r"-?\d+")


def build_application(settings: TelegramSettings, token: str) -> App:
    """Return the python-telegram-bot ``Application`` of ``settings`` (not yet initialized)."""
    timeout = settings.timeout.total_seconds()
    return (
        Application.builder()
        .token(token)
        .base_url(settings.api_base_url)
        .rate_limiter(AIORateLimiter(max_retries=0))
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .write_timeout(timeout)
        .media_write_timeout(timeout)
        .pool_timeout(timeout)
        .get_updates_connect_timeout(timeout)
        .get_updates_read_timeout(timeout)  # the long-poll timeout is added to it
        .get_updates_write_timeout(timeout)
        .get_updates_pool_timeout(timeout)
        .job_queue(None)
        .build()
    )


def _chat_id(chat: str) -> int | str:
    return int(chat) if _NUMERIC_CHAT.fullmatch(chat) else chat


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class TelegramNotifier:
    """Deliver outbox rows to Telegram chats and answer the bot's commands.

    ``backend`` serves the commands; without it (or with ``telegram.commands`` off) the
    bot only sends and does not poll for updates.
    """

    name = NAME

    def __init__(
        self,
        settings: TelegramSettings,
        backend: BotBackend | None = None,
        *,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
        connect_wait: float | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        if settings.token is None:
            raise ValueError("telegram.token is not set")
        self._settings = settings
        self._redactor = TokenRedactor(settings.token.get_secret_value())
        self._redactor.install()  # python-telegram-bot logs its URL as it builds the bot
        self._rate_limit_filter = HandledRateLimit()
        logging.getLogger("telegram.ext.AIORateLimiter").addFilter(self._rate_limit_filter)
        self._app = build_application(settings, settings.token.get_secret_value())
        self._polls = settings.commands and backend is not None
        if backend is not None and settings.commands:
            BotCommands(backend, settings.chat_ids, clock, self._redactor.describe).register(
                self._app
            )
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._connect_wait = (
            settings.timeout.total_seconds() if connect_wait is None else connect_wait
        )
        self._connected = False
        self._refused = False
        self._decided = asyncio.Event()
        """Set once connected, or once the token was refused."""
        self._settled = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._progress: dict[tuple[int, str], int] = {}
        """(outbox id, chat) → parts of a split message already sent (resumed on retry)."""

    @property
    def connected(self) -> bool:
        """Return whether the bot is connected to the Bot API (deliveries can go out)."""
        return self._connected

    @property
    def settled(self) -> asyncio.Event:
        """Return the event set once connecting is over.

        That is: connected and (with commands) polling, or the token was refused (then
        ``connected`` stays false). While the API is unreachable it stays unset.
        """
        return self._settled

    async def start(self) -> None:
        """Start connecting in the background; return at once."""
        self._task = asyncio.create_task(self._connect(), name="telegram-connect")
        self._task.add_done_callback(self._connect_done)

    async def stop(self) -> None:
        """Stop polling and the application, and close its connections."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        app = self._app
        try:
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()
            await app.shutdown()
            await app.bot.shutdown()  # its HTTP clients, also when initialize failed half-way
        except TelegramError as exc:
            logger.warning("stopping the Telegram bot: %s", self._redactor.describe(exc))
        finally:
            self._connected = False
            self._decided.clear()
            logging.getLogger("telegram.ext.AIORateLimiter").removeFilter(self._rate_limit_filter)
            self._redactor.uninstall()

    async def deliver(self, item: OutboxItem) -> None:
        """Send one notification to its chat (or to every configured chat)."""
        if not self._connected:
            # At start-up rows are due before getMe is answered: wait a little for it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._decided.wait(), self._connect_wait)
        if not self._connected:
            reason = "the bot token was refused" if self._refused else "not connected yet"
            # Come back soon rather than after the outbox's growing backoff: the bot
            # retries its connection every few seconds and deliveries should follow.
            raise DeliveryError(f"Telegram Bot API: {reason}", retry_after=RECONNECT_RECHECK_S)
        try:
            message = payload_message(item.payload)
        except (ValueError, KeyError, TypeError) as exc:
            raise DeliveryError(f"unreadable payload: {exc}", permanent=True) from None
        route_chat = item.route.get("chat")
        chats: Sequence[str] = [route_chat] if route_chat else self._settings.chat_ids
        if not chats:
            raise DeliveryError(
                "no chat: the route names none and telegram.chat_ids is empty", permanent=True
            )
        silent = message.severity in self._settings.silent
        refused: list[str] = []
        for chat in chats:
            try:
                await self._send_parts(item.id, chat, message.parts, silent)
            except DeliveryError as exc:
                if not exc.permanent:
                    raise
                refused.append(f"chat {chat}: {exc}")
        for chat in chats:
            self._progress.pop((item.id, chat), None)
        if refused:
            raise DeliveryError("; ".join(refused), permanent=True)

    async def _send_parts(
        self, item_id: int, chat: str, parts: Sequence[str], silent: bool
    ) -> None:
        key = (item_id, chat)
        for index in range(self._progress.get(key, 0), len(parts)):
            await self._send(_chat_id(chat), parts[index], silent)
            self._progress[key] = index + 1

    async def _send(self, chat: int | str, text: str, silent: bool) -> None:
        bot = self._app.bot
        try:
            try:
                await send_text(bot, chat, text, silent=silent)
            except ChatMigrated as exc:
                logger.warning(
                    "Telegram chat %s is now %s: update the settings or rules",
                    chat,
                    exc.new_chat_id,
                )
                await send_text(bot, exc.new_chat_id, text, silent=silent)
        except TelegramError as exc:
            raise self._delivery_error(exc) from None

    def _delivery_error(self, exc: TelegramError) -> DeliveryError:
        """Return what the outbox should do about a failed send."""
        text = self._redactor.describe(exc)
        if isinstance(exc, RetryAfter):
            wait = exc.retry_after
            seconds = wait if isinstance(wait, int | float) else wait.total_seconds()
            return DeliveryError(text, retry_after=float(seconds))
        if isinstance(exc, Forbidden | BadRequest):
            return DeliveryError(text, permanent=True)  # no chat, blocked, a bad text: for good
        return DeliveryError(text)  # network, timeout, 5xx, a revoked token: later

    async def _connect(self) -> None:
        """Initialize, start, poll and announce the commands, retrying while unreachable."""
        app = self._app
        if not await self._retrying("connect to the Telegram Bot API", app.initialize):
            self._decided.set()
            self._settled.set()
            return
        self._connected = True
        self._decided.set()
        logger.info("Telegram bot @%s connected", app.bot.username)
        await app.start()
        if self._polls:
            updater = app.updater
            assert updater is not None

            async def poll() -> None:
                await updater.start_polling(
                    timeout=self._settings.poll_timeout,
                    drop_pending_updates=True,
                    allowed_updates=["message"],
                    error_callback=self._polling_error,
                )

            if not await self._retrying("start polling Telegram", poll):
                self._settled.set()
                return
            try:
                await app.bot.set_my_commands(bot_commands())
            except TelegramError as exc:
                logger.warning(
                    "could not set the bot's command list: %s", self._redactor.describe(exc)
                )
        self._settled.set()

    async def _retrying(self, what: str, action: Callable[[], Awaitable[None]]) -> bool:
        """Run ``action`` until it succeeds (True) or the token is refused (False)."""
        delay = self._retry_initial
        while True:
            try:
                await action()
            except InvalidToken as exc:
                self._refused = True
                logger.error(
                    "Telegram refused the bot token (%s): fix telegram.token and restart",
                    self._redactor.describe(exc),
                )
                return False
            except TelegramError as exc:
                wait = delay * random.uniform(0.8, 1.2)
                logger.warning(
                    "could not %s (%s); retrying in %.1f s",
                    what,
                    self._redactor.describe(exc),
                    wait,
                )
                await asyncio.sleep(wait)
                delay = min(delay * 2, self._retry_max)
            else:
                return True

    def _polling_error(self, exc: TelegramError) -> None:
        logger.warning("polling Telegram failed (%s); retrying", self._redactor.describe(exc))

    def _connect_done(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            logger.error(
                "the Telegram bot failed to start: %s",
                self._redactor.describe(error),
                exc_info=error,
            )
