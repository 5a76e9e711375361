"""The bot's commands: who may use them, their arguments, and their replies.

Only chats in ``telegram.chat_ids`` are answered; updates from any other chat stop at
a gate before any handler runs, and each such chat is logged once. Arguments are parsed
here; bad ones get the command's usage line. The daemon is read and changed only through
``BotBackend``; the texts come from ``telegram_format``. ``send_text`` sends one HTML
message, and the same text as plain text if Telegram cannot parse its HTML (the alerts
go out through it too).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeAlias

from telegram import Bot, BotCommand, Chat, LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from pairwatch.analytics.timeframes import parse_timeframe
from pairwatch.config.durations import parse_duration
from pairwatch.notifiers.telegram_backend import BackendError, BotBackend
from pairwatch.notifiers.telegram_format import (
    COMMANDS,
    alerts_html,
    chart_caption,
    help_html,
    pairs_html,
    rules_html,
    snapshots_html,
    status_html,
    unknown_command_html,
    usage_html,
)
from pairwatch.notifiers.telegram_html import (
    escape,
    plain_text,
    split_html,
)

logger = logging.getLogger(__name__)

App: TypeAlias = Application[Any, Any, Any, Any, Any, Any]
Context: TypeAlias = ContextTypes.DEFAULT_TYPE

MAX_MUTE = timedelta(days=366)
ALL = "all"
_SYMBOL = re.compile(r"[A-Z0-9]{2,30}")
_RULE = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
_MAX_IGNORED = 10_000
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
_PARSE_ERROR = re.compile(r"can'?t parse", re.IGNORECASE)
"""Telegram's 400 for a text it cannot parse: ``Bad Request: can't parse entities: …``."""


class UsageError(Exception):
    """Arguments a command cannot take; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Text:
    """A reply in HTML (split into several messages when long)."""

    html: str


@dataclass(frozen=True, slots=True)
class Photo:
    """A reply with a PNG and an HTML caption."""

    png: bytes
    caption: str


Reply = Text | Photo
Run = Callable[[list[str], str, int], Awaitable[Reply]]
"""A command's work: (arguments, who asked, now in epoch ms) → its reply."""


def bot_commands() -> list[BotCommand]:
    """Return the command list the bot announces (``setMyCommands``)."""
    return [BotCommand(c.name, c.summary) for c in COMMANDS]


def is_allowed(chat: Chat, allowed: Sequence[str]) -> bool:
    """Return whether ``chat`` is in the allow-list (numeric ids or ``@names``)."""
    if str(chat.id) in allowed:
        return True
    name = chat.username
    return name is not None and f"@{name}".lower() in {a.lower() for a in allowed}


def parse_pair(args: Sequence[str]) -> tuple[str, str, list[str]]:
    """Return (y, x, the other arguments) of ``Y X …`` or ``Y/X …``."""
    if args and "/" in args[0]:
        y, _, x = args[0].partition("/")
        rest = list(args[1:])
    elif len(args) >= 2:
        y, x, rest = args[0], args[1], list(args[2:])
    else:
        raise UsageError("Give a pair: two symbols.")
    y, x = y.upper(), x.upper()
    for symbol in (y, x):
        if not _SYMBOL.fullmatch(symbol):
            raise UsageError(f"{symbol!r} is not a symbol.")
    return y, x, rest


def parse_timeframe_arg(text: str) -> str:
    """Return ``text`` if it is a timeframe label (``1m``, ``1h``)."""
    try:
        parse_timeframe(text)
    except ValueError:
        raise UsageError(f"{text!r} is not a timeframe (e.g. 1m, 5m, 1h).") from None
    return text


def parse_chart_args(args: Sequence[str]) -> tuple[str, str, str | None, int | None]:
    """Return (y, x, timeframe, window) of ``/chart``'s arguments."""
    y, x, rest = parse_pair(args)
    timeframe: str | None = None
    window: int | None = None
    if rest and not rest[0].isdigit():
        timeframe = parse_timeframe_arg(rest.pop(0))
    if rest:
        if not rest[0].isdigit() or int(rest[0]) < 2:
            raise UsageError(f"{rest[0]!r} is not a window (a number of bars).")
        window = int(rest.pop(0))
    if rest:
        raise UsageError("Too many arguments.")
    return y, x, timeframe, window


def parse_rule(text: str) -> str:
    """Return a rule name (or ``all``) argument."""
    if not _RULE.fullmatch(text):
        raise UsageError(f"{text!r} is not a rule name.")
    return ALL if text.lower() == ALL else text


def parse_mute_duration(text: str) -> timedelta:
    """Return the duration of ``/mute``: more than 0, at most 366 days."""
    try:
        value = parse_duration(text)
    except ValueError:
        raise UsageError(f"{text!r} is not a duration (e.g. 30m, 2h, 1d).") from None
    if not timedelta(0) < value <= MAX_MUTE:
        raise UsageError("The duration must be more than 0 and at most 366 days.")
    return value


def _no_args(args: Sequence[str]) -> None:
    if args:
        raise UsageError("This command takes no arguments.")


class BotCommands:
    """The command handlers of one bot, answering allow-listed chats from ``backend``."""

    def __init__(
        self,
        backend: BotBackend,
        allowed: Sequence[str],
        clock: Callable[[], int],
        describe: Callable[[BaseException], str] = repr,
    ) -> None:
        self._backend = backend
        self._allowed = tuple(allowed)
        self._clock = clock
        self._describe = describe
        self._ignored: set[int] = set()

    def register(self, app: App) -> None:
        """Add the gate, the command handlers and the error handler to ``app``."""
        app.add_handler(TypeHandler(Update, self._gate), group=-1)
        runs: dict[str, Run] = {
            "help": self._help,
            "start": self._help,
            "status": self._status,
            "pairs": self._pairs,
            "z": self._z,
            "chart": self._chart,
            "alerts": self._alerts,
            "rules": self._rules,
            "mute": self._mute,
            "unmute": self._unmute,
        }
        for name, run in runs.items():
            app.add_handler(CommandHandler(name, self._handler(name, run)))
        app.add_handler(MessageHandler(filters.COMMAND, self._unknown))
        app.add_error_handler(self._error)

    async def _gate(self, update: Update, context: Context) -> None:
        """Stop every update that is not from an allow-listed chat (log each chat once)."""
        chat = update.effective_chat
        if chat is not None and is_allowed(chat, self._allowed):
            return
        chat_id = chat.id if chat is not None else 0
        if chat_id not in self._ignored and len(self._ignored) < _MAX_IGNORED:
            self._ignored.add(chat_id)
            user = update.effective_user
            logger.warning(
                "ignoring Telegram chat %d (%s %r, from user %s): not in telegram.chat_ids",
                chat_id,
                chat.type if chat else "?",
                chat.effective_name if chat else None,
                user.id if user else "?",
            )
        raise ApplicationHandlerStop

    def _handler(
        self, name: str, run: Run
    ) -> Callable[[Update, Context], Coroutine[Any, Any, None]]:
        async def handle(update: Update, context: Context) -> None:
            chat = update.effective_chat
            if chat is None:
                return
            user = update.effective_user
            who = "telegram:" + (
                f"@{user.username}" if user and user.username else str(user.id if user else chat.id)
            )
            args = list(context.args or ())
            try:
                reply = await run(args, who, self._clock())
            except UsageError as exc:
                reply = Text(usage_html(name, str(exc)))
            except BackendError as exc:
                reply = Text(f"⚠️ {escape(exc)}")
            except Exception:
                logger.exception("the Telegram command /%s %s failed", name, " ".join(args))
                reply = Text(f"⚠️ /{name} failed: internal error (the daemon's log has it).")
            await send_reply(context.bot, chat.id, reply)

        return handle

    async def _unknown(self, update: Update, context: Context) -> None:
        message, chat = update.effective_message, update.effective_chat
        if message is None or chat is None or not message.text:
            return
        command = message.text.split(maxsplit=1)[0].removeprefix("/")
        name, _, mention = command.partition("@")
        if mention and mention.lower() != (context.bot.username or "").lower():
            return  # a command to another bot in a group
        await send_reply(context.bot, chat.id, Text(unknown_command_html(name)))

    async def _error(self, update: object, context: Context) -> None:
        error = context.error
        if isinstance(error, TelegramError):
            logger.warning("a Telegram reply failed: %s", self._describe(error))
        elif error is not None:
            logger.error("a Telegram update failed: %s", self._describe(error), exc_info=error)

    # --- the commands ---------------------------------------------------------------

    async def _help(self, args: list[str], who: str, now: int) -> Reply:
        return Text(help_html())

    async def _status(self, args: list[str], who: str, now: int) -> Reply:
        _no_args(args)
        return Text(status_html(await self._backend.status()))

    async def _pairs(self, args: list[str], who: str, now: int) -> Reply:
        _no_args(args)
        return Text(pairs_html(await self._backend.pairs()))

    async def _z(self, args: list[str], who: str, now: int) -> Reply:
        y, x, rest = parse_pair(args)
        if len(rest) > 1:
            raise UsageError("Too many arguments.")
        timeframe = parse_timeframe_arg(rest[0]) if rest else None
        return Text(snapshots_html(await self._backend.latest(y, x, timeframe)))

    async def _chart(self, args: list[str], who: str, now: int) -> Reply:
        y, x, timeframe, window = parse_chart_args(args)
        png = await self._backend.chart(y, x, timeframe, window)
        return Photo(png, chart_caption(y, x, timeframe, window))

    async def _alerts(self, args: list[str], who: str, now: int) -> Reply:
        _no_args(args)
        return Text(alerts_html(await self._backend.alerts(), now))

    async def _rules(self, args: list[str], who: str, now: int) -> Reply:
        _no_args(args)
        return Text(rules_html(await self._backend.rules(), now))

    async def _mute(self, args: list[str], who: str, now: int) -> Reply:
        if len(args) != 2:
            raise UsageError("Give a rule (or 'all') and a duration.")
        rule, duration = parse_rule(args[0]), parse_mute_duration(args[1])
        return Text(f"🔇 {escape(await self._backend.mute(rule, duration, who))}")

    async def _unmute(self, args: list[str], who: str, now: int) -> Reply:
        if len(args) != 1:
            raise UsageError("Give a rule (or 'all').")
        return Text(f"🔔 {escape(await self._backend.unmute(parse_rule(args[0]), who))}")


async def send_reply(bot: Bot, chat_id: int, reply: Reply) -> None:
    """Send a command's reply: a text in as many messages as it needs, or a photo."""
    if isinstance(reply, Photo):
        try:
            await bot.send_photo(
                chat_id,
                photo=reply.png,
                caption=reply.caption,
                parse_mode=ParseMode.HTML,
                filename="chart.png",
            )
        except BadRequest as exc:
            if not is_parse_error(exc):
                raise
            _log_fallback(exc)
            await bot.send_photo(
                chat_id, photo=reply.png, caption=plain_text(reply.caption), filename="chart.png"
            )
        return
    for part in split_html(reply.html):
        await send_text(bot, chat_id, part)


def is_parse_error(exc: TelegramError) -> bool:
    """Return whether ``exc`` is Telegram refusing a text's HTML (not its chat or size)."""
    return isinstance(exc, BadRequest) and _PARSE_ERROR.search(exc.message) is not None


async def send_text(bot: Bot, chat_id: int | str, html: str, *, silent: bool = False) -> None:
    """Send one HTML message; as plain text when Telegram cannot parse its HTML.

    Other errors are raised as they are. The plain text is never longer than the HTML.
    """
    try:
        await bot.send_message(
            chat_id,
            html,
            parse_mode=ParseMode.HTML,
            disable_notification=silent,
            link_preview_options=_NO_PREVIEW,
        )
    except BadRequest as exc:
        if not is_parse_error(exc):
            raise
        _log_fallback(exc)
        await bot.send_message(
            chat_id,
            plain_text(html),
            disable_notification=silent,
            link_preview_options=_NO_PREVIEW,
        )


def _log_fallback(exc: BadRequest) -> None:
    logger.warning("Telegram could not parse a message's HTML (%s): sent as plain text", exc)
