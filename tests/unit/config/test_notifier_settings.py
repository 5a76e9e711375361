"""Settings of the Telegram, MQTT and webhook notifiers: what is accepted, what is refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pairwatch.config.notifier_settings import MqttSettings, TelegramSettings, WebhookSettings


def test_chat_ids_are_text_from_numbers_lists_or_a_comma_string() -> None:
    assert TelegramSettings(chat_ids=[12345, "-1001234567890", "@desk_alerts"]).chat_ids == (
        "12345",
        "-1001234567890",
        "@desk_alerts",
    )
    assert TelegramSettings(chat_ids="1, -2").chat_ids == ("1", "-2")  # type: ignore[arg-type]
    assert not TelegramSettings().enabled
    assert TelegramSettings(token="1:x", chat_ids=["1"]).enabled  # type: ignore[arg-type]
    assert TelegramSettings(api_base_url="http://h:8081/b{token}/").api_base_url.endswith("/")


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        (TelegramSettings, {"chat_ids": ["12a"]}, "invalid chat id '12a'"),
        (TelegramSettings, {"api_base_url": "ftp://x"}, "expected an http:// or https:// URL"),
        (MqttSettings, {"topic_prefix": "a/#"}, "invalid topic prefix 'a/#'"),
        (MqttSettings, {"port": 0}, "greater than or equal to 1"),
        (MqttSettings, {"password": "p"}, "mqtt.password is set but mqtt.username is not"),
        (MqttSettings, {"qos": 3}, "Input should be 0, 1 or 2"),
        (WebhookSettings, {"url": "example.com/hook"}, "expected an http:// or https:// URL"),
        (TelegramSettings, {"api_base_url": "http://127.0.0.1:8081"}, "end it with /bot"),
        (TelegramSettings, {"token": "1:x"}, "telegram.chat_ids is empty"),
        (MqttSettings, {"tls": {"ca_file": "/ca.pem"}}, "mqtt.tls.enabled is false"),
        (
            MqttSettings,
            {"ha_discovery": True, "publish_analytics": False},
            "mqtt.ha_discovery needs mqtt.publish_analytics",
        ),
    ],
)
def test_bad_values_are_refused_with_a_hint(
    model: type[Any], data: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        model(**data)


def test_topic_prefixes_lose_their_outer_slashes() -> None:
    assert MqttSettings(topic_prefix="/desk/pairwatch/").topic_prefix == "desk/pairwatch"
    assert MqttSettings(host="broker").enabled
    assert WebhookSettings(url=" https://example.com/hook ").url == "https://example.com/hook"
    assert WebhookSettings(url="").url is None
