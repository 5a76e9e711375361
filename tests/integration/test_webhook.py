"""The webhook notifier against a real HTTP server on loopback, and through the outbox."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pairwatch.config.notifier_settings import WebhookSettings
from pairwatch.daemon.alert_rows import Notification, OutboxItem, alert_event_payload
from pairwatch.daemon.store import open_store
from pairwatch.daemon.writer import Writer
from pairwatch.events import AlertEvent
from pairwatch.notifiers.outbox import DeliveryError, Dispatcher
from pairwatch.notifiers.webhook import WebhookNotifier, body_of, signature
from support.receiver import Receiver
from support.secrets import WEBHOOK_SECRET

SECRET = WEBHOOK_SECRET
T0 = 1_700_000_000_000


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def event(n: int) -> AlertEvent:
    return AlertEvent(
        rule="z", target="ETHUSDT/BTCUSDT", timeframe="1m", window=30, kind="firing",
        at=T0 + n, severity="warning", metric="zscore", value=2.5, threshold=2.0,
        message=f"z #{n}", values={"zscore": 2.5}, labels={}, notify=True,
    )  # fmt: skip


def item(n: int, route: dict[str, str] | None = None) -> OutboxItem:
    e = event(n)
    return OutboxItem(n, e.key, "webhook", route or {}, alert_event_payload(e), T0, 0, T0)


async def test_a_signed_post_carries_the_payload_and_the_idempotency_key(
    receiver: Receiver,
) -> None:
    notifier = WebhookNotifier(WebhookSettings(url=receiver.url + "/hook", secret=SECRET))  # type: ignore[arg-type]
    await notifier.deliver(item(1))
    await notifier.close()
    ((path, headers, body),) = receiver.requests
    assert path == "/hook"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Pairwatch-Key"] == event(1).key
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Pairwatch-Signature"] == expected == signature(SECRET, body)
    data = json.loads(body)
    assert data["key"] == event(1).key
    assert data["type"] == "alert"
    assert data["event"]["message"] == "z #1"
    assert body == body_of(item(1))


@pytest.mark.parametrize(
    ("status", "headers", "permanent", "retry_after"),
    [
        (503, {}, False, None),
        (429, {"Retry-After": "7"}, False, 7.0),
        (404, {}, True, None),
    ],
)
async def test_answers_map_to_retry_or_give_up(
    receiver: Receiver,
    status: int,
    headers: dict[str, str],
    permanent: bool,
    retry_after: float | None,
) -> None:
    receiver.answers.append((status, headers))
    notifier = WebhookNotifier(WebhookSettings(url=receiver.url))  # type: ignore[arg-type]
    with pytest.raises(DeliveryError, match=f"HTTP {status} from 127.0.0.1") as caught:
        await notifier.deliver(item(1))
    await notifier.close()
    assert (caught.value.permanent, caught.value.retry_after) == (permanent, retry_after)
    assert "X-Pairwatch-Signature" not in receiver.requests[0][1]  # no secret: no signature


async def test_a_refused_connection_is_retried_and_a_route_url_wins(receiver: Receiver) -> None:
    notifier = WebhookNotifier(WebhookSettings(url="http://127.0.0.1:9/nothing", timeout="2s"))  # type: ignore[arg-type]
    with pytest.raises(DeliveryError) as caught:
        await notifier.deliver(item(1))
    assert not caught.value.permanent
    await notifier.deliver(item(2, {"url": receiver.url + "/desk"}))
    await notifier.close()
    assert [path for path, _, _ in receiver.requests] == ["/desk"]


async def test_through_the_outbox_failures_are_retried_in_order(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.answers += [(502, {}), (429, {"Retry-After": "0"})]
    db = tmp_path / "pairwatch.db"
    writer = Writer(db)
    writer.start()
    notes = [
        Notification(event(n).key, "webhook", {}, alert_event_payload(event(n))) for n in (1, 2)
    ]
    writer.put_alerts([], notes)
    writer.flush().result(10)
    notifier = WebhookNotifier(WebhookSettings(url=receiver.url))  # type: ignore[arg-type]
    dispatcher = Dispatcher([notifier], db, writer, retry_initial=0.01, retry_max=0.05)
    task = asyncio.create_task(dispatcher.run())
    dispatcher.kick()

    await asyncio.wait_for(
        dispatcher.wait_until(lambda counters: counters["webhook"].delivered == 2), 20
    )
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.wrap_future(writer.flush())
    writer.close(10)
    await notifier.close()
    keys = [b["key"] for b in receiver.ok_bodies()]
    assert keys == [event(1).key, event(1).key, event(1).key, event(2).key]
    conn = open_store(db, readonly=True)
    rows = conn.execute("select attempts, delivered_at is not null from outbox order by id")
    assert rows.fetchall() == [(3, 1), (1, 1)]
    conn.close()


async def test_a_url_that_cannot_work_is_given_up_not_retried_for_ever() -> None:
    notifier = WebhookNotifier(WebhookSettings(url="https://example.invalid/hook"))  # type: ignore[arg-type]
    with pytest.raises(DeliveryError, match="bad webhook URL") as caught:
        await notifier.deliver(item(1, {"url": "ftp://127.0.0.1/hook"}))
    await notifier.close()
    assert caught.value.permanent
