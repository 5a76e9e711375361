"""The Telegram notifier and bot: real python-telegram-bot against a fake Bot API server.

The server (``support.botapi``) is a real HTTP server on loopback; nothing of
python-telegram-bot is patched. The daemon side is a fake ``BotBackend`` (the seam the
daemon implements). Outbox delivery runs through the real ``Dispatcher`` and ``Writer``
on a temporary SQLite file.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest

from pairwatch.config.notifier_settings import TelegramSettings
from pairwatch.daemon.alert_rows import (
    Notification,
    OutboxItem,
    alert_event_payload,
    notice_payload,
)
from pairwatch.daemon.store import open_store
from pairwatch.daemon.writer import Writer
from pairwatch.events import AlertEvent, PairSnapshot
from pairwatch.notifiers.chart import ChartData, render_chart
from pairwatch.notifiers.outbox import DeliveryError, Dispatcher
from pairwatch.notifiers.telegram import TelegramNotifier
from pairwatch.notifiers.telegram_backend import (
    AlertInfo,
    BackendError,
    BotStatus,
    FeedStatus,
    PairInfo,
    RuleInfo,
)
from pairwatch.notifiers.telegram_format import (
    payload_message,
)
from pairwatch.notifiers.telegram_html import (
    plain_text,
)
from pairwatch.notifiers.telegram_redact import TokenRedactor
from support.botapi import USERNAME, ApiCall, FakeBotApi, free_port
from support.secrets import TELEGRAM_TOKEN, TELEGRAM_WRONG_TOKEN, logged_on_purpose

TOKEN = TELEGRAM_TOKEN
ALLOWED = 111
STRANGER = 999
T0 = 1_700_000_000_000


class FakeBackend:
    """The daemon as the bot sees it: fixed answers, and a record of what was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[Any, ...]] = []

    async def status(self) -> BotStatus:
        return BotStatus(
            version="0.1.0", uptime_s=3725, source="simulator", connections_open=1,
            reconnects=2, gaps=3, missed_ids=7, trades_per_s=12.5, bars_closed=1234,
            lag_ms=(45.0, 210.0, 900.0), feeds=(FeedStatus("BTCUSDT", 60123.5, 0.4, 8.0),),
            queues={"bars": 2}, outbox={"telegram": 1}, rejected={"duplicate": 3},
        )  # fmt: skip

    async def pairs(self) -> Sequence[PairInfo]:
        return [PairInfo("ETHUSDT", "BTCUSDT", ("1m", "5m"), (30, 120))]

    def _known(self, y: str, x: str, timeframe: str | None) -> None:
        if (y, x) != ("ETHUSDT", "BTCUSDT"):
            raise BackendError(f"unknown pair {y}/{x}: /pairs lists them")
        if timeframe not in (None, "1m", "5m"):
            raise BackendError(f"no {timeframe} analytics for {y}/{x}")

    async def latest(self, y: str, x: str, timeframe: str | None) -> Sequence[PairSnapshot]:
        self.asked.append(("latest", y, x, timeframe))
        self._known(y, x, timeframe)
        return [
            PairSnapshot(y, x, timeframe or "1m", window, T0,
                         {"zscore": 2.41 / window * 30, "hedge_ratio": 0.0531, "correlation": 0.87})
            for window in (30, 120)
        ]  # fmt: skip

    async def chart(self, y: str, x: str, timeframe: str | None, window: int | None) -> bytes:
        self.asked.append(("chart", y, x, timeframe, window))
        self._known(y, x, timeframe)
        n = 300
        rng = np.random.default_rng(7)
        data = ChartData(
            f"{y}/{x} {timeframe} w{window}", y, x,
            ts=(T0 + np.arange(n) * 60_000).astype(np.int64),
            y=2400 + np.cumsum(rng.normal(size=n)), x=60_000 + np.cumsum(rng.normal(size=n)),
            spread=rng.normal(size=n), zscore=rng.normal(size=n),
        )  # fmt: skip
        return await asyncio.to_thread(render_chart, data)

    async def alerts(self) -> Sequence[AlertInfo]:
        now = T0
        return [
            AlertInfo("ethbtc-z", "ETHUSDT/BTCUSDT", "1m", 30, "firing", now - 720_000,
                      "warning", "zscore", 2.41, 2.0),
            AlertInfo("slow", "SOLUSDT/BTCUSDT", "5m", 60, "pending", now - 60_000, "info",
                      "zscore", 1.9, 2.0),
        ]  # fmt: skip

    async def rules(self) -> Sequence[RuleInfo]:
        return [RuleInfo("ethbtc-z", "warning", "ETHUSDT/BTCUSDT", "1m", 30,
                         "abs(zscore) >= 2 <b>", firing=1)]  # fmt: skip

    async def mute(self, rule: str, duration: timedelta, by: str) -> str:
        self.asked.append(("mute", rule, duration, by))
        if rule not in ("ethbtc-z", "all"):
            raise BackendError(f"no rule named {rule!r}")
        return f"{rule} muted for {duration} <ok>"

    async def unmute(self, rule: str, by: str) -> str:
        self.asked.append(("unmute", rule, by))
        return f"{rule} unmuted"


def make_settings(api: FakeBotApi, **changes: Any) -> TelegramSettings:
    values: dict[str, Any] = {
        "token": TOKEN, "chat_ids": (str(ALLOWED),), "api_base_url": api.base_url,
        "poll_timeout": timedelta(seconds=10), "timeout": timedelta(seconds=5),
    }  # fmt: skip
    values.update(changes)
    return TelegramSettings(**values)


def event(n: int = 0, **changes: Any) -> AlertEvent:
    fields: dict[str, Any] = {
        "rule": "ethbtc-z", "target": "ETHUSDT/BTCUSDT", "timeframe": "1m", "window": 30,
        "kind": "firing", "at": T0 + n * 60_000, "severity": "warning", "metric": "zscore",
        "value": 2.41, "threshold": 2.0, "message": f"z #{n} <rising> & wide",
        "values": {"zscore": 2.41, "hedge_ratio": 0.0531, "correlation": 0.87,
                   "adf_pvalue": 0.012, "coint_pvalue": math.nan},
        "labels": {"desk": "a&b"}, "notify": True,
    }  # fmt: skip
    fields.update(changes)
    return AlertEvent(**fields)


def item(payload: dict[str, Any], chat: str | None = str(ALLOWED), id_: int = 1) -> OutboxItem:
    route = {"chat": chat} if chat else {}
    return OutboxItem(id_, f"key{id_}", "telegram", route, payload, T0, 0, T0)


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(TOKEN) as server:
        yield server


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


async def started(notifier: TelegramNotifier) -> TelegramNotifier:
    await notifier.start()
    await asyncio.wait_for(notifier.settled.wait(), 10)
    assert notifier.connected
    return notifier


@pytest.fixture
async def bot(api: FakeBotApi, backend: FakeBackend) -> AsyncIterator[TelegramNotifier]:
    notifier = await started(TelegramNotifier(make_settings(api), backend, retry_initial=0.05))
    yield notifier
    await notifier.stop()


async def ask(api: FakeBotApi, text: str, method: str = "sendMessage") -> ApiCall:
    """Send a command from the allowed chat; return the bot's (first) answer."""
    before = len(api.sent(method, str(ALLOWED)))
    api.push_message(ALLOWED, text)
    calls = await api.wait_for(method, before + 1, where=lambda c: c.chat == str(ALLOWED))
    return calls[before]


# --- lifecycle ---------------------------------------------------------------------------


async def test_the_bot_connects_polls_and_announces_its_commands(
    api: FakeBotApi, bot: TelegramNotifier
) -> None:
    calls = [c for c in api.calls if c.method != "getUpdates"]
    assert [c.method for c in calls] == ["getMe", "deleteWebhook", "setMyCommands"]
    assert calls[1].arg("drop_pending_updates") is True
    assert [c["command"] for c in api.commands] == [
        "help", "status", "pairs", "z", "chart", "alerts", "rules", "mute", "unmute"
    ]  # fmt: skip
    polls = await api.wait_for("getUpdates")
    assert polls[0].arg("timeout") == 10
    assert polls[0].arg("allowed_updates") == ["message"]


async def test_the_daemon_starts_while_the_api_is_unreachable_and_connects_later(
    backend: FakeBackend,
) -> None:
    port = free_port()
    server = FakeBotApi(TOKEN, port=port)
    notifier = TelegramNotifier(
        make_settings(server), backend, retry_initial=0.05, connect_wait=0.05
    )
    await asyncio.wait_for(notifier.start(), 1)  # returns at once, nothing listens yet
    try:
        with pytest.raises(DeliveryError, match="not connected") as refused:
            await notifier.deliver(item(alert_event_payload(event())))
        assert not refused.value.permanent
        await server.start()
        await asyncio.wait_for(notifier.settled.wait(), 10)
        await notifier.deliver(item(alert_event_payload(event())))
        assert len(server.sent("sendMessage", str(ALLOWED))) == 1
    finally:
        await notifier.stop()
        await server.close()


async def test_a_delivery_due_at_start_up_waits_for_the_connection(api: FakeBotApi) -> None:
    notifier = TelegramNotifier(make_settings(api))
    await notifier.start()
    try:
        await notifier.deliver(item(alert_event_payload(event())))  # before getMe is answered
    finally:
        await notifier.stop()
    assert [(c.method, c.status) for c in api.calls] == [("getMe", 200), ("sendMessage", 200)]


async def test_without_a_backend_the_bot_sends_but_does_not_poll(api: FakeBotApi) -> None:
    notifier = await started(TelegramNotifier(make_settings(api)))
    try:
        await notifier.deliver(item(alert_event_payload(event())))
    finally:
        await notifier.stop()
    assert [c.method for c in api.calls] == ["getMe", "sendMessage"]


# --- alerts ------------------------------------------------------------------------------


async def test_an_alert_is_sent_in_html_with_its_values_and_user_text_escaped(
    api: FakeBotApi, bot: TelegramNotifier
) -> None:
    await bot.deliver(item(alert_event_payload(event())))
    [call] = api.sent("sendMessage")
    assert call.chat == str(ALLOWED)
    assert call.params["parse_mode"] == "HTML"
    assert call.params["text"].splitlines() == [
        "🟠 <b>FIRING</b> · <b>ethbtc-z</b> · warning",
        "<b>ETHUSDT/BTCUSDT</b> · 1m · window 30",
        "zscore <b>+2.41</b> · threshold +2.00",
        "β 0.0531 · ρ 0.87 · ADF p 0.012",
        "<i>z #0 &lt;rising&gt; &amp; wide</i>",
        "2023-11-14 22:13:20 UTC · desk=a&amp;b",
    ]
    assert call.arg("disable_notification") is False
    assert call.arg("link_preview_options") == {"is_disabled": True}


async def test_severities_listed_as_silent_are_sent_without_notification(
    api: FakeBotApi, bot: TelegramNotifier
) -> None:
    await bot.deliver(item(alert_event_payload(event(severity="info")), id_=1))
    await bot.deliver(item(alert_event_payload(event(severity="critical")), id_=2))
    await bot.deliver(item(notice_payload("rules reload failed", "a\nb", "info"), id_=3))
    await bot.deliver(item(notice_payload("rules reload failed", "a\nb", "warning"), id_=4))
    flags = [c.arg("disable_notification") for c in api.sent("sendMessage")]
    assert flags == [True, False, True, False]
    assert api.sent("sendMessage")[3].params["text"] == (
        "🟠 <b>rules reload failed</b>\n<pre>a\nb</pre>"
    )


async def test_a_route_without_a_chat_goes_to_every_configured_chat(api: FakeBotApi) -> None:
    notifier = await started(
        TelegramNotifier(make_settings(api, chat_ids=("111", "-100222", "@alerts_channel")))
    )
    try:
        await notifier.deliver(item(alert_event_payload(event()), chat=None))
    finally:
        await notifier.stop()
    assert [c.chat for c in api.sent("sendMessage")] == ["111", "-100222", "@alerts_channel"]


async def test_a_long_alert_is_split_into_messages_telegram_accepts(
    api: FakeBotApi, bot: TelegramNotifier
) -> None:
    long = " ".join(f"<{n}> & word{n}" for n in range(1500))
    await bot.deliver(item(alert_event_payload(event(message=long))))
    calls = [c for c in api.calls if c.method == "sendMessage"]
    assert len(calls) >= 4
    assert all(c.status == 200 for c in calls)  # the server parses each like Telegram
    assert all(len(c.params["text"]) <= 4096 for c in calls)
    assert calls[0].params["text"].startswith("🟠 <b>FIRING</b>")
    assert "&lt;1499&gt; &amp; word1499" in calls[-1].params["text"]


async def test_a_retried_split_message_resumes_after_the_parts_already_sent(
    api: FakeBotApi, bot: TelegramNotifier
) -> None:
    payload = alert_event_payload(event(message=" ".join(f"word{n}" for n in range(2000))))
    parts = payload_message(payload).parts
    assert len(parts) >= 4
    api.fail_next("sendMessage", 1, status=502, after=1)
    with pytest.raises(DeliveryError, match="Bad Gateway"):
        await bot.deliver(item(payload))
    await bot.deliver(item(payload))  # the outbox's retry of the same row
    calls = [c for c in api.calls if c.method == "sendMessage"]
    assert [c.status for c in calls] == [200, 502] + [200] * (len(parts) - 1)
    assert [c.params["text"] for c in api.sent("sendMessage")] == list(parts)  # each once


# --- delivery errors ---------------------------------------------------------------------


async def test_a_429_becomes_a_retry_after_the_wait_telegram_asks_for(
    api: FakeBotApi, bot: TelegramNotifier
) -> None:
    api.fail_next("sendMessage", 1, status=429, retry_after=7)
    with pytest.raises(DeliveryError) as raised:
        await bot.deliver(item(alert_event_payload(event())))
    assert raised.value.retry_after == 7.0
    assert not raised.value.permanent
    await bot.deliver(item(alert_event_payload(event())))
    assert len(api.sent("sendMessage")) == 1


@pytest.mark.parametrize(
    ("status", "description", "permanent"),
    [
        (500, "Internal Server Error", False),
        (502, "Bad Gateway", False),
        (400, "Bad Request: chat not found", True),
        (403, "Forbidden: bot was blocked by the user", True),
    ],
)
async def test_server_errors_are_retried_and_refusals_are_given_up(
    api: FakeBotApi, bot: TelegramNotifier, status: int, description: str, permanent: bool
) -> None:
    api.fail_next("sendMessage", 1, status=status, description=description)
    with pytest.raises(DeliveryError) as raised:
        await bot.deliver(item(alert_event_payload(event())))
    assert raised.value.permanent is permanent
    assert raised.value.retry_after is None
    assert (
        description.partition(": ")[2 if ": " in description else 0].lower()
        in str(raised.value).lower()
    )


# --- HTML Telegram cannot parse ----------------------------------------------------------


async def test_an_alert_whose_html_is_refused_is_sent_again_as_plain_text(
    api: FakeBotApi, bot: TelegramNotifier, caplog: pytest.LogCaptureFixture
) -> None:
    api.refuse_html()
    await bot.deliver(item(alert_event_payload(event(severity="info"))))
    calls = [c for c in api.calls if c.method == "sendMessage"]
    assert [(c.status, c.params.get("parse_mode")) for c in calls] == [(400, "HTML"), (200, None)]
    assert calls[1].params["text"].splitlines() == [
        "🔵 FIRING · ethbtc-z · info",
        "ETHUSDT/BTCUSDT · 1m · window 30",
        "zscore +2.41 · threshold +2.00",
        "β 0.0531 · ρ 0.87 · ADF p 0.012",
        "z #0 <rising> & wide",
        "2023-11-14 22:13:20 UTC · desk=a&b",
    ]
    assert [c.arg("disable_notification") for c in calls] == [True, True]  # still silent
    assert calls[1].arg("link_preview_options") == {"is_disabled": True}
    [warning] = [r for r in caplog.records if "sent as plain text" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert '(Can\'t parse entities: unsupported tag "x")' in warning.getMessage()


async def test_each_refused_part_of_a_split_alert_falls_back_on_its_own(
    api: FakeBotApi, bot: TelegramNotifier
) -> None:
    payload = alert_event_payload(event(message=" ".join(f"<w{n}>" for n in range(1500))))
    parts = payload_message(payload).parts
    assert len(parts) >= 3
    api.refuse_html(count=2)
    await bot.deliver(item(payload))
    sent = api.sent("sendMessage")
    assert [c.params.get("parse_mode") for c in sent] == [None, None] + ["HTML"] * (len(parts) - 2)
    assert [c.params["text"] for c in sent] == [plain_text(p) for p in parts[:2]] + list(parts[2:])
    assert sent[0].params["text"].startswith("🟠 FIRING · ethbtc-z · warning\n")
    assert sent[1].params["text"].startswith("<w0> <w1> <w2>")


async def test_an_alert_refused_as_html_and_as_plain_text_is_given_up(
    api: FakeBotApi, bot: TelegramNotifier
) -> None:
    api.refuse_html()
    api.fail_next("sendMessage", status=400, description="Bad Request: message is too long",
                  after=1)  # fmt: skip
    with pytest.raises(DeliveryError) as raised:
        await bot.deliver(item(alert_event_payload(event())))
    assert raised.value.permanent
    assert str(raised.value) == "chat 111: BadRequest: Message is too long"
    calls = [c for c in api.calls if c.method == "sendMessage"]
    assert [(c.status, c.params.get("parse_mode")) for c in calls] == [(400, "HTML"), (400, None)]


async def test_a_command_reply_whose_html_is_refused_is_sent_as_plain_text(
    api: FakeBotApi, bot: TelegramNotifier
) -> None:
    api.refuse_html()
    api.push_message(ALLOWED, "/status")
    [reply] = await api.wait_for("sendMessage", where=lambda c: c.status == 200)
    assert "parse_mode" not in reply.params
    assert reply.params["text"].splitlines()[:3] == [
        "pairwatch 0.1.0 · up 1h02m · simulator",
        "Feed: 1 open · 2 reconnects · 3 gaps (7 ids missed)",
        "Trades 12.5/s · bars closed 1,234",
    ]
    assert [c.status for c in api.calls if c.method == "sendMessage"] == [400, 200]


async def test_a_chart_whose_caption_is_refused_is_sent_with_a_plain_caption(
    api: FakeBotApi, bot: TelegramNotifier
) -> None:
    api.refuse_html("sendPhoto")
    api.push_message(ALLOWED, "/chart ETHUSDT BTCUSDT 1m 30")
    [photo] = await api.wait_for("sendPhoto", where=lambda c: c.status == 200)
    assert "parse_mode" not in photo.params
    assert photo.params["caption"] == "ETHUSDT/BTCUSDT · 1m · window 30"
    assert photo.files["photo"].data[:8] == b"\x89PNG\r\n\x1a\n"
    assert [c.status for c in api.calls if c.method == "sendPhoto"] == [400, 200]


# --- through the outbox ------------------------------------------------------------------


class Probe:
    """The real notifier, with an event per delivery (the test's only hook)."""

    def __init__(self, inner: TelegramNotifier, expected: int) -> None:
        self.name = inner.name
        self.inner = inner
        self.expected = expected
        self.done = asyncio.Event()
        self.delivered: list[str] = []

    async def deliver(self, outbox_item: OutboxItem) -> None:
        await self.inner.deliver(outbox_item)
        self.delivered.append(outbox_item.key)
        if len(self.delivered) >= self.expected:
            self.done.set()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "pairwatch.db"


@pytest.fixture
def writer(db: Path) -> Iterator[Writer]:
    w = Writer(db)
    w.start()
    yield w
    w.close(10)


def store(writer: Writer, notes: list[Notification]) -> None:
    writer.put_alerts([], notes)
    writer.flush().result(10)


def note(n: int, chat: str = str(ALLOWED)) -> Notification:
    e = event(n)
    return Notification(e.key, "telegram", {"chat": chat}, alert_event_payload(e))


def outbox_rows(db: Path) -> list[tuple[Any, ...]]:
    conn = open_store(db, readonly=True)
    try:
        return conn.execute(
            "SELECT key, attempts, delivered_at IS NOT NULL, failed_at IS NOT NULL, last_error "
            "FROM outbox ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


async def dispatch(probe: Probe, db: Path, writer: Writer, retry_max: float = 0.05) -> Dispatcher:
    dispatcher = Dispatcher([probe], db, writer, retry_initial=0.02, retry_max=retry_max)
    task = asyncio.create_task(dispatcher.run())
    dispatcher.kick()
    try:
        await asyncio.wait_for(probe.done.wait(), 15)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await asyncio.wrap_future(writer.flush())
    return dispatcher


async def test_the_outbox_waits_telegram_s_retry_after_and_keeps_the_order(
    api: FakeBotApi, bot: TelegramNotifier, db: Path, writer: Writer
) -> None:
    store(writer, [note(0), note(1)])
    api.fail_next("sendMessage", 1, status=429, retry_after=1)
    probe = Probe(bot, expected=2)
    dispatcher = await dispatch(probe, db, writer, retry_max=5.0)
    calls = [c for c in api.calls if c.method == "sendMessage"]
    assert [c.status for c in calls] == [429, 200, 200]
    assert ["z #0" in calls[0].params["text"], "z #0" in calls[1].params["text"],
            "z #1" in calls[2].params["text"]] == [True, True, True]  # fmt: skip
    assert calls[1].at - calls[0].at >= 0.95  # Telegram's wait, not the 20 ms backoff
    assert probe.delivered == [event(0).key, event(1).key]
    assert [r[1:4] for r in outbox_rows(db)] == [(2, 1, 0), (1, 1, 0)]
    assert dispatcher.counters()["telegram"].retried == 1


async def test_the_outbox_retries_5xx_and_gives_up_on_a_chat_that_does_not_exist(
    api: FakeBotApi, bot: TelegramNotifier, db: Path, writer: Writer
) -> None:
    store(writer, [note(0), note(1, chat="555"), note(2)])
    api.fail_next("sendMessage", 2, status=502)
    api.fail_chat("555")
    probe = Probe(bot, expected=2)
    await dispatch(probe, db, writer)
    assert probe.delivered == [event(0).key, event(2).key]
    rows = outbox_rows(db)
    assert [r[1:4] for r in rows] == [(3, 1, 0), (1, 0, 1), (1, 1, 0)]
    assert rows[1][4] == "DeliveryError: chat 555: BadRequest: Chat not found"
    assert [(c.chat, c.status) for c in api.calls if c.method == "sendMessage"] == [
        ("111", 502), ("111", 502), ("111", 200), ("555", 400), ("111", 200)
    ]  # fmt: skip


# --- commands ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/help", ["/z &lt;y&gt; &lt;x&gt; [tf] — latest snapshot", "/mute &lt;rule|all&gt;"]),
        ("/start", ["<b>pairwatch</b> commands:"]),
        ("/status", ["<b>pairwatch 0.1.0</b> · up 1h02m · simulator", "2 reconnects",
                     "3 gaps (7 ids missed)", "Trades 12.5/s", "p99 210 ms", "BTCUSDT",
                     "Outbox: telegram 1", "Rejected: duplicate 3"]),
        ("/pairs", ["<code>ETHUSDT BTCUSDT</code> · 1m, 5m · windows 30, 120"]),
        ("/z ETHUSDT BTCUSDT", ["<b>ETHUSDT/BTCUSDT</b> · 1m", "<b>window 30</b>",
                                "zscore       +2.41", "<b>window 120</b>", "zscore       +0.60"]),
        ("/z ethusdt/btcusdt 5m", ["<b>ETHUSDT/BTCUSDT</b> · 5m"]),
        (f"/z@{USERNAME} ETHUSDT BTCUSDT", ["<b>ETHUSDT/BTCUSDT</b> · 1m"]),
        ("/alerts", ["1 firing, 1 pending", "<b>ethbtc-z</b>", "· firing ", "⏳ <b>slow</b>"]),
        ("/rules", ["<b>ethbtc-z</b> · warning", "<code>abs(zscore) &gt;= 2 &lt;b&gt;</code>"]),
        ("/mute ethbtc-z 30m", ["🔇 ethbtc-z muted for 0:30:00 &lt;ok&gt;"]),
        ("/unmute all", ["🔔 all unmuted"]),
    ],
)  # fmt: skip
async def test_each_command_answers_from_the_backend(
    api: FakeBotApi, bot: TelegramNotifier, command: str, expected: list[str]
) -> None:
    reply = await ask(api, command)
    assert reply.params["parse_mode"] == "HTML"
    for text in expected:
        assert text in reply.params["text"]


async def test_commands_pass_their_arguments_to_the_backend(
    api: FakeBotApi, bot: TelegramNotifier, backend: FakeBackend
) -> None:
    await ask(api, "/z ethusdt/btcusdt 5m")
    await ask(api, "/mute ethbtc-z 1h30m")
    await ask(api, "/unmute ALL")
    assert backend.asked == [
        ("latest", "ETHUSDT", "BTCUSDT", "5m"),
        ("mute", "ethbtc-z", timedelta(hours=1, minutes=30), "telegram:@alice"),
        ("unmute", "all", "telegram:@alice"),
    ]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/z ETHUSDT", "Give a pair: two symbols.\nUsage: <code>/z &lt;y&gt; &lt;x&gt;"),
        ("/z ETHUSDT BTCUSDT 7x", "'7x' is not a timeframe"),
        ("/z ETHUSDT BTCUSDT 1m extra", "Too many arguments.\nUsage: <code>/z"),
        ("/chart ETHUSDT BTCUSDT 1m abc", "'abc' is not a window"),
        ("/chart ETH-USDT BTCUSDT", "'ETH-USDT' is not a symbol"),
        ("/mute ethbtc-z", "Give a rule (or 'all') and a duration.\nUsage: <code>/mute"),
        ("/mute ethbtc-z forever", "'forever' is not a duration"),
        ("/mute ethbtc-z 400d", "at most 366 days"),
        ("/unmute", "Usage: <code>/unmute &lt;rule|all&gt;</code>"),
        ("/status now", "This command takes no arguments.\nUsage: <code>/status</code>"),
        ("/z DOGEUSDT BTCUSDT", "⚠️ unknown pair DOGEUSDT/BTCUSDT: /pairs lists them"),
        ("/mute nosuch 1h", "⚠️ no rule named 'nosuch'"),
        ("/nosuch 1 2", "Unknown command /nosuch. /help lists the commands."),
    ],
)  # fmt: skip
async def test_bad_arguments_get_a_usage_line(
    api: FakeBotApi, bot: TelegramNotifier, command: str, expected: str
) -> None:
    reply = await ask(api, command)
    assert expected in reply.params["text"]


async def test_a_backend_failure_is_reported_to_the_user_and_logged(
    api: FakeBotApi, bot: TelegramNotifier, backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> BotStatus:
        raise RuntimeError("database is locked")

    backend.status = broken  # type: ignore[method-assign]
    reply = await ask(api, "/status")
    assert reply.params["text"] == "⚠️ /status failed: internal error (the daemon's log has it)."
    [record] = [r for r in caplog.records if "command /status" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "database is locked"


async def test_chart_sends_a_png_rendered_off_the_loop(
    api: FakeBotApi, bot: TelegramNotifier, backend: FakeBackend
) -> None:
    photo = await ask(api, "/chart ETHUSDT BTCUSDT 1m 30", method="sendPhoto")
    upload = photo.files["photo"]
    assert upload.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < len(upload.data) < 2_000_000
    width, height = struct.unpack(">II", upload.data[16:24])  # the IHDR chunk
    assert (width, height) == (1000, 750)
    assert upload.filename == "chart.png"
    assert photo.params["caption"] == "<b>ETHUSDT/BTCUSDT</b> · 1m · window 30"
    assert backend.asked == [("chart", "ETHUSDT", "BTCUSDT", "1m", 30)]


async def test_a_command_to_another_bot_in_a_group_is_not_answered(
    api: FakeBotApi, backend: FakeBackend
) -> None:
    notifier = await started(TelegramNotifier(make_settings(api, chat_ids=("-100222",)), backend))
    try:
        api.push_message(-100222, "/nosuch@other_bot")
        api.push_message(-100222, f"/help@{USERNAME}")
        await api.wait_for("sendMessage", where=lambda c: c.chat == "-100222")
    finally:
        await notifier.stop()
    [reply] = api.sent("sendMessage")
    assert reply.params["text"].startswith("<b>pairwatch</b> commands:")


async def test_unknown_chats_get_nothing_and_are_logged_once(
    api: FakeBotApi, bot: TelegramNotifier, caplog: pytest.LogCaptureFixture
) -> None:
    api.push_message(STRANGER, "/status")
    api.push_message(STRANGER, "/mute all 1d")
    api.push_message(-100777, "hello", title="spam group")
    await ask(api, "/help")  # handled after the others: updates are processed in order
    assert {c.chat for c in api.calls if c.method.startswith("send")} == {str(ALLOWED)}
    ignored = [r.getMessage() for r in caplog.records if "ignoring Telegram chat" in r.getMessage()]
    assert ignored == [
        "ignoring Telegram chat 999 (private 'Alice', from user 999): not in telegram.chat_ids",
        "ignoring Telegram chat -100777 (group 'spam group', from user 100777): "
        "not in telegram.chat_ids",
    ]


# --- the token ---------------------------------------------------------------------------


def test_the_redactor_covers_messages_arguments_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    redactor = TokenRedactor(TOKEN)
    redactor.install()
    try:
        try:
            raise RuntimeError(f"POST https://api.telegram.org/bot{TOKEN}/getMe failed")
        except RuntimeError:
            url = f"https://api.telegram.org/bot{quote(TOKEN, safe='')}/getMe"
            logging.getLogger("telegram.ext.Updater").exception("polling %s failed", url)
        logging.getLogger("httpx").info("HTTP Request: POST %s", f"http://x/bot{TOKEN}/getMe")
    finally:
        redactor.uninstall()
    with logged_on_purpose():
        logging.getLogger("httpx").info("after uninstall: bot%s", TOKEN)
    after = caplog.records[-1]
    assert after.getMessage() == f"after uninstall: bot{TOKEN}"  # the filter is gone
    text = "\n".join(caplog.text.splitlines()[:-1])
    assert TOKEN not in text
    assert quote(TOKEN, safe="") not in text
    assert text.count("bot<token>/getMe") == 3  # the message, the traceback, httpx's line
    assert redactor.describe(RuntimeError(f"bad {TOKEN}")) == "RuntimeError: bad <token>"


async def test_the_token_never_appears_in_logs(
    api: FakeBotApi, backend: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = TELEGRAM_WRONG_TOKEN
    refused = TelegramNotifier(make_settings(api, token=wrong), backend, retry_initial=0.05)
    await refused.start()
    await asyncio.wait_for(refused.settled.wait(), 10)
    assert not refused.connected
    with pytest.raises(DeliveryError, match="token was refused"):
        await refused.deliver(item(alert_event_payload(event())))
    await refused.stop()
    assert [(c.method, c.status) for c in api.calls] == [("getMe", 401)]

    notifier = await started(TelegramNotifier(make_settings(api), backend, retry_initial=0.05))
    try:
        await ask(api, "/status")
        await ask(api, "/chart ETHUSDT BTCUSDT", method="sendPhoto")
        api.fail_next("sendMessage", 1, status=429, retry_after=3)
        with pytest.raises(DeliveryError):
            await notifier.deliver(item(alert_event_payload(event())))
        api.fail_next("sendMessage", 1, status=502)
        with pytest.raises(DeliveryError):
            await notifier.deliver(item(alert_event_payload(event())))
        await notifier.deliver(item(alert_event_payload(event())))
    finally:
        await notifier.stop()

    messages = [r.getMessage() for r in caplog.records]
    assert any("refused the bot token" in m for m in messages)
    assert any(m.startswith("Set Bot API URL: ") and m.endswith("/bot<token>") for m in messages)
    assert any("/bot<token>/sendPhoto" in m for m in messages)  # httpx's request line
    for secret in (TOKEN, wrong):
        assert secret not in caplog.text
        for record in caplog.records:
            assert secret not in record.getMessage()
            assert secret not in (record.exc_text or "")
