"""Settings of the notifiers: Telegram, MQTT and the webhook (each enabled when configured)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from pairwatch.config.durations import PositiveDuration
from pairwatch.config.field_types import FilePath, split_list

_SECTION = ConfigDict(extra="forbid", frozen=True, validate_default=True)

Severity = Literal["info", "warning", "critical"]

DEFAULT_TELEGRAM_API = "https://api.telegram.org/bot"
_CHAT_ID = re.compile(r"-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31}")
_TOPIC_FORBIDDEN = re.compile(r"[#+\x00]")


def _http_url(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return url


class TelegramSettings(BaseModel):
    """The Telegram bot: alerts to chats, and commands from them."""

    model_config = _SECTION

    token: SecretStr | None = Field(
        default=None,
        description=(
            "Bot token from @BotFather (secret: PAIRWATCH_TELEGRAM__TOKEN or the credential "
            "telegram_token). Unset: no Telegram."
        ),
    )
    chat_ids: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description=(
            "Chats that may use the bot's commands and get alerts by default: numeric ids "
            "(groups are negative) or @channel names."
        ),
    )
    api_base_url: str = Field(
        default=DEFAULT_TELEGRAM_API,
        description="Bot API base URL (a self-hosted Bot API server); the token is appended.",
    )
    silent: tuple[Severity, ...] = Field(
        default=("info",),
        description="Severities sent without a notification sound (disable_notification).",
    )
    commands: bool = Field(default=True, description="Answer commands (/status, /z, …).")
    poll_timeout: PositiveDuration = Field(
        default=timedelta(seconds=20), description="Long-polling timeout of getUpdates."
    )
    timeout: PositiveDuration = Field(
        default=timedelta(seconds=15), description="Timeout of one Bot API request."
    )

    @field_validator("chat_ids", mode="before")
    @classmethod
    def _chats(cls, value: object) -> object:
        if isinstance(value, str):
            value = split_list(value)
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, list | tuple):
            value = [str(v) if isinstance(v, int) else v for v in value]
            for chat in value:
                if not isinstance(chat, str) or not _CHAT_ID.fullmatch(chat):
                    raise ValueError(f"invalid chat id {chat!r}: a number or an @channel name")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _api(cls, value: str) -> str:
        url = _http_url(value)
        if url is None:
            raise ValueError("expected an http:// or https:// URL")
        if not url.endswith("/bot") and "{token}" not in url:
            raise ValueError(
                f"{url!r}: end it with /bot (the token is appended, e.g. "
                "http://127.0.0.1:8081/bot) or place {token} in it"
            )
        return url

    @model_validator(mode="after")
    def _check(self) -> TelegramSettings:
        if self.token is not None and not self.chat_ids:
            raise ValueError(
                "telegram.token is set but telegram.chat_ids is empty: list the chats that "
                "may use the bot and get alerts"
            )
        return self

    @property
    def enabled(self) -> bool:
        """Return whether Telegram is configured (a token is set)."""
        return self.token is not None


class MqttTlsSettings(BaseModel):
    """TLS to the broker."""

    model_config = _SECTION

    enabled: bool = Field(default=False, description="Connect with TLS.")
    ca_file: FilePath | None = Field(
        default=None, description="CA certificate file (PEM); unset: the system's CAs."
    )
    cert_file: FilePath | None = Field(default=None, description="Client certificate (PEM).")
    key_file: FilePath | None = Field(default=None, description="Client key (PEM).")
    insecure: bool = Field(
        default=False, description="Skip the broker's hostname check (testing only)."
    )


class MqttSettings(BaseModel):
    """The MQTT broker: analytics, bars and alerts as topics."""

    model_config = _SECTION

    host: str | None = Field(default=None, description="Broker host name. Unset: no MQTT.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port (8883 for TLS).")
    username: str | None = Field(default=None, description="User name, if the broker wants one.")
    password: SecretStr | None = Field(
        default=None,
        description="Password (secret: PAIRWATCH_MQTT__PASSWORD or the credential mqtt_password).",
    )
    client_id: str = Field(default="pairwatch", min_length=1, description="MQTT client id.")
    topic_prefix: str = Field(
        default="pairwatch/v1", min_length=1, description="Prefix of every topic."
    )
    qos: Literal[0, 1, 2] = Field(default=1, description="QoS of alert messages.")
    analytics_qos: Literal[0, 1, 2] = Field(
        default=0, description="QoS of analytics, bar and status messages."
    )
    keepalive: PositiveDuration = Field(
        default=timedelta(seconds=60), description="Keepalive interval."
    )
    tls: MqttTlsSettings = Field(default_factory=MqttTlsSettings, description="TLS.")
    publish_analytics: bool = Field(
        default=True, description="Publish a retained analytics snapshot on every bar."
    )
    publish_bars: bool = Field(default=False, description="Publish every closed bar.")
    pairs: tuple[str, ...] = Field(
        default=(), description="Only these pairs' analytics ('Y/X'); empty: every pair."
    )
    ha_discovery: bool = Field(
        default=False, description="Announce Home Assistant sensors (MQTT discovery)."
    )
    discovery_prefix: str = Field(
        default="homeassistant", description="Home Assistant's discovery topic prefix."
    )

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _topic(cls, value: str) -> str:
        prefix = value.strip().strip("/")
        if not prefix or _TOPIC_FORBIDDEN.search(prefix):
            raise ValueError(f"invalid topic prefix {value!r}: no '#', '+' or NUL")
        return prefix

    @model_validator(mode="after")
    def _check(self) -> MqttSettings:
        if self.password is not None and self.username is None:
            raise ValueError("mqtt.password is set but mqtt.username is not")
        tls = self.tls
        if not tls.enabled and (tls.ca_file or tls.cert_file or tls.key_file):
            raise ValueError(
                "mqtt.tls files are set but mqtt.tls.enabled is false: the connection "
                "(and any password) would go in clear; set enabled = true"
            )
        if self.ha_discovery and not self.publish_analytics:
            raise ValueError(
                "mqtt.ha_discovery needs mqtt.publish_analytics: the sensors read the "
                "analytics topics"
            )
        return self

    @property
    def enabled(self) -> bool:
        """Return whether MQTT is configured (a host is set)."""
        return self.host is not None


class WebhookSettings(BaseModel):
    """A generic HTTP POST of every notification as JSON."""

    model_config = _SECTION

    url: str | None = Field(default=None, description="URL to POST to. Unset: no webhook.")
    secret: SecretStr | None = Field(
        default=None,
        description=(
            "HMAC-SHA256 key: the body's signature goes in X-Pairwatch-Signature "
            "(secret: PAIRWATCH_WEBHOOK__SECRET or the credential webhook_secret)."
        ),
    )
    timeout: PositiveDuration = Field(
        default=timedelta(seconds=10), description="Timeout of one POST."
    )

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, value: object) -> object:
        return _http_url(value) if isinstance(value, str) else value

    @property
    def enabled(self) -> bool:
        """Return whether the webhook is configured (a URL is set)."""
        return self.url is not None


NOTIFIER_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "telegram_token": ("telegram", "token"),
    "mqtt_password": ("mqtt", "password"),
    "webhook_secret": ("webhook", "secret"),
}
"""Credential files (systemd ``LoadCredential=``) of the notifiers' secrets."""
