"""Every handler the bot registers is behind the chat allow-list.

The notifier is built as the daemon builds it (``build_notifiers`` with a ``DaemonBackend``
over a real store and alert stage) and talks to a fake Bot API on loopback. Each handler
found in the application, in every group, is probed: its command is sent (with arguments
that would act) from chats not on the list; nothing may be sent to them, the backend may
not be asked anything, and no silence may appear. The same probes from the allowed chat
are answered, which shows they reach their handlers. A handler of a kind the probes do not
know fails the test rather than going unchecked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, MessageHandler
from telegram.ext import TypeHandler as TypeHandlerClass

from pairwatch.config.settings import Settings
from pairwatch.daemon.alert_service import AlertRuntime
from pairwatch.daemon.analytics import AnalyticsStage, pair_specs
from pairwatch.daemon.bot_backend import DaemonBackend
from pairwatch.daemon.notifier_setup import build_notifiers, stop_notifiers
from pairwatch.daemon.service import Daemon
from pairwatch.daemon.store import open_store
from pairwatch.daemon.writer import Writer
from pairwatch.notifiers.telegram import TelegramNotifier, build_application
from pairwatch.notifiers.telegram_commands import App, BotCommands
from support.botapi import USERNAME, FakeBotApi
from support.secrets import TELEGRAM_TOKEN

ALLOWED = 111
STRANGERS = [
    (999, None),  # a private chat
    (-100777, ALLOWED),  # a group the allowed user is in: the list names chats, not users
]
NOW = 1_700_000_040_000
PAIR = "ETHUSDT/BTCUSDT"
RULES = """
rules:
  - name: wide
    pair: ETHUSDT/BTCUSDT
    timeframe: 1m
    window: 5
    when: abs(zscore) > 1000
"""
ARGUMENTS = {
    "z": "ETHUSDT BTCUSDT",
    "chart": "ETHUSDT BTCUSDT 1m 5",
    "mute": "all 1d",
    "unmute": "all",
}
"""Arguments that make a command act (a command not named here is sent bare)."""
MESSAGE_PROBES = ["hello there", "/nosuchcommand", f"/nosuchcommand@{USERNAME}"]
"""What a stranger may send that no command handler takes."""


class UnknownHandler(AssertionError):
    """The application has a handler the probes do not cover."""


def probes(app: App) -> tuple[int, list[str]]:
    """Return the gate's group and a message for each handler (raise on an unknown kind)."""
    gates: list[int] = []
    texts: list[str] = []
    for group, handlers in sorted(app.handlers.items()):
        for handler in handlers:
            if type(handler) is TypeHandlerClass and handler.type is Update and not handler.strict:
                gates.append(group)
            elif type(handler) is CommandHandler:
                texts.extend(
                    f"/{c} {ARGUMENTS.get(c, '')}".strip() for c in sorted(handler.commands)
                )
            elif type(handler) is MessageHandler:
                texts.extend(MESSAGE_PROBES)
            else:
                raise UnknownHandler(f"no probe for {handler!r} in group {group}: add one")
    assert len(gates) == 1, f"expected one allow-list gate, found it in groups {gates}"
    [gate] = gates
    # Alone in its group (the first handler that matches in a group is the only one run)
    # and before every other group.
    assert len(app.handlers[gate]) == 1, f"the gate shares group {gate}"
    assert all(group > gate for group in app.handlers if group != gate), "a group runs first"
    return gate, texts


class RecordingBackend:
    """The daemon's backend, recording each method the bot calls on it."""

    def __init__(self, backend: DaemonBackend) -> None:
        self.backend = backend
        self.asked: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.backend, name)

        async def call(*args: Any) -> Any:
            self.asked.append(name)
            return await method(*args)

        return call


@dataclass
class Bot:
    api: FakeBotApi
    daemon: Daemon
    backend: RecordingBackend
    notifier: TelegramNotifier

    @property
    def app(self) -> App:
        return self.notifier._app  # the application the daemon's notifier polls with

    def silences(self) -> list[tuple[object, ...]]:
        conn = open_store(self.daemon.settings.db_path, readonly=True)
        try:
            return conn.execute("SELECT rule, created_by FROM silences").fetchall()
        finally:
            conn.close()

    async def answered(self, text: str) -> None:
        """Send ``text`` from the allowed chat and wait for the bot's (first) reply."""

        def replies() -> int:
            return sum(
                c.method.startswith("send") and c.chat == str(ALLOWED) for c in self.api.calls
            )

        before = replies()
        self.api.push_message(ALLOWED, text)
        async with asyncio.timeout(30):
            while replies() <= before:  # noqa: ASYNC110 (a text or a photo: no one event)
                await asyncio.sleep(0.01)


def settings(tmp_path: Path, api: FakeBotApi) -> Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    return Settings(
        data_dir=tmp_path,
        feed={"source": "simulator", "symbols": ["BTCUSDT", "ETHUSDT"]},
        bars={"timeframes": ["1m"]},
        pairs=[{"y": "ETHUSDT", "x": "BTCUSDT", "windows": [5]}],
        alerts={"rules_file": rules},
        telegram={
            "token": TELEGRAM_TOKEN,
            "chat_ids": [str(ALLOWED)],
            "api_base_url": api.base_url,
            "poll_timeout": "10s",
            "timeout": "5s",
        },
    )


@pytest.fixture
def writer_daemon(tmp_path: Path, api: FakeBotApi) -> Iterator[Daemon]:
    daemon = Daemon(settings(tmp_path, api), clock=lambda: NOW)
    writer = daemon.writer = Writer(daemon.settings.db_path, clock=lambda: NOW)
    writer.start()
    daemon.analytics = AnalyticsStage(pair_specs(daemon.settings), writer)
    alerts = daemon.alerts = AlertRuntime(daemon.settings, writer, daemon.health, clock=lambda: NOW)
    conn = open_store(daemon.settings.db_path)
    try:
        alerts.load(conn)
    finally:
        conn.close()
    try:
        yield daemon
    finally:
        writer.close(10)


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(TELEGRAM_TOKEN) as server:
        yield server


@pytest.fixture
async def bot(api: FakeBotApi, writer_daemon: Daemon) -> AsyncIterator[Bot]:
    backend = RecordingBackend(DaemonBackend(writer_daemon, writer_daemon.clock))
    notifiers = build_notifiers(writer_daemon.settings, backend)  # type: ignore[arg-type]
    [notifier] = [n for n in notifiers if isinstance(n, TelegramNotifier)]
    try:
        await notifier.start()
        await asyncio.wait_for(notifier.settled.wait(), 10)
        assert notifier.connected
        yield Bot(api, writer_daemon, backend, notifier)
    finally:
        await stop_notifiers(notifiers)
        backend.backend.close()


async def test_no_handler_answers_or_acts_for_a_chat_not_on_the_list(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gate, texts = probes(bot.app)
    assert gate == -1
    assert {t.split()[0] for t in texts} >= {
        "/help", "/start", "/status", "/pairs", "/z", "/chart", "/alerts", "/rules", "/mute",
        "/unmute", "/nosuchcommand", "hello",
    }  # fmt: skip
    connected = len(bot.api.calls)

    for chat, user in STRANGERS:
        for text in texts:
            bot.api.push_message(chat, text, user_id=user, title="strangers")
    await bot.answered("/help")  # updates are handled in order: the strangers' went first

    after = [(c.method, c.chat) for c in bot.api.calls[connected:] if c.method != "getUpdates"]
    assert after == [("sendMessage", str(ALLOWED))]  # the reply to /help, nothing else
    assert bot.backend.asked == []
    assert bot.silences() == []
    assert not bot.daemon.alerts.stage.silencer.covers("wide", PAIR, NOW)  # type: ignore[union-attr]
    ignored = [r.getMessage() for r in caplog.records if "ignoring Telegram chat" in r.getMessage()]
    assert ignored == [  # each chat once, however many updates it sent
        "ignoring Telegram chat 999 (private 'Alice', from user 999): not in telegram.chat_ids",
        "ignoring Telegram chat -100777 (group 'strangers', from user 111): "
        "not in telegram.chat_ids",
    ]


async def test_the_same_probes_from_the_allowed_chat_reach_their_handlers(bot: Bot) -> None:
    _, texts = probes(bot.app)
    for text in texts:
        if text != "hello there":  # plain text is not answered, from anyone
            await bot.answered(text)
    assert set(bot.backend.asked) >= {
        "status", "pairs", "latest", "chart", "alerts", "rules", "mute", "unmute",
    }  # fmt: skip
    assert bot.silences() == [("*", f"telegram:@{'alice'}")]  # /mute all 1d, then /unmute all


def test_a_handler_the_probes_do_not_know_fails_the_check() -> None:
    app = build_application(
        Settings.model_validate(
            {"telegram": {"token": TELEGRAM_TOKEN, "chat_ids": [str(ALLOWED)]}}
        ).telegram,
        TELEGRAM_TOKEN,
    )
    BotCommands(backend=None, allowed=[str(ALLOWED)], clock=lambda: NOW).register(app)  # type: ignore[arg-type]
    assert probes(app)[0] == -1

    async def nothing(update: object, context: object) -> None:
        return None

    extra: list[BaseHandler[Any, Any, Any]] = [
        CallbackQueryHandler(nothing),
        TypeHandlerClass(dict, nothing),
    ]
    for handler in extra:
        app.add_handler(handler, group=1)
        with pytest.raises(UnknownHandler, match="no probe for"):
            probes(app)
        app.remove_handler(handler, group=1)
    app.add_handler(TypeHandlerClass(Update, nothing), group=-2)  # a second gate-like handler
    with pytest.raises(AssertionError, match="expected one allow-list gate"):
        probes(app)


def test_the_mute_duration_probe_would_mute() -> None:
    # The probe's arguments are valid: a stranger's /mute was stopped by the gate, not by
    # a usage error.
    from pairwatch.notifiers.telegram_commands import parse_mute_duration, parse_rule

    rule, duration = ARGUMENTS["mute"].split()
    assert parse_rule(rule) == "all"
    assert parse_mute_duration(duration) == timedelta(days=1)
