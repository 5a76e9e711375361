"""The service settings: one frozen, strictly validated model per TOML table."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ByteSize, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pairwatch.analytics.timeframes import parse_timeframe
from pairwatch.config.durations import Duration, PositiveDuration, format_duration
from pairwatch.config.field_types import (
    FilePath,
    LogLevel,
    Retention,
    SymbolList,
    Timeframe,
    TimeframeList,
    WebsocketUrlOrNone,
)
from pairwatch.config.notifier_settings import (
    NOTIFIER_CREDENTIALS,
    MqttSettings,
    TelegramSettings,
    WebhookSettings,
)
from pairwatch.config.pairs import Pair
from pairwatch.config.sources import (
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    CredentialsSettingsSource,
    EnvironSettingsSource,
    MappingSettingsSource,
    credentials_directory,
    state_directory_data,
)
from pairwatch.config.web_settings import WEB_CREDENTIALS, WebSettings

CREDENTIALS: dict[str, tuple[str, ...]] = {**NOTIFIER_CREDENTIALS, **WEB_CREDENTIALS}
"""Credential file name -> settings path it fills, e.g. ``"telegram_token": ("telegram", "token")``.

Files are read from ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``); such a field
is a ``SecretStr`` so it never shows in repr or logs.
"""

DEFAULT_BASE_URLS: dict[str, str] = {
    "spot": "wss://stream.binance.com:9443",
    "usdm": "wss://fstream.binance.com/market",
}
DEFAULT_MAX_STREAMS: dict[str, int] = {"spot": 1024, "usdm": 200}
DEFAULT_DATA_DIR = Path("pairwatch-data")
DB_FILENAME = "pairwatch.sqlite3"

_SECTION = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class FeedSettings(BaseModel):
    """Where trades come from and how the websocket connections behave."""

    model_config = _SECTION

    source: Literal["binance", "simulator"] = Field(
        default="binance",
        description=(
            "binance: Binance's public streams; simulator: the built-in simulator "
            "(started in-process, or the one at base_url when set)."
        ),
    )
    market: Literal["spot", "usdm"] = Field(
        default="spot", description="spot: Binance spot; usdm: USDⓈ-M perpetual futures."
    )
    stream: Literal["trade", "aggTrade"] = Field(
        default="trade",
        description="Trade stream: every trade (trade) or aggregated trades (aggTrade).",
    )
    symbols: SymbolList = Field(
        default=("BTCUSDT", "ETHUSDT"),
        description="Symbols to follow; upper-cased; a list, JSON list or comma-separated string.",
    )
    base_url: WebsocketUrlOrNone = Field(
        default=None,
        description=(
            "Websocket base URL (ws:// or wss://); unset: the Binance endpoint of the market "
            "(or, with source = simulator, an in-process simulator)."
        ),
    )
    max_streams_per_connection: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Streams per websocket connection; unset: 1024 for spot, 200 for usdm.",
    )
    watchdog: PositiveDuration = Field(
        default=timedelta(seconds=30),
        description="Reconnect a connection that delivered no message for this long.",
    )
    max_connection_age: PositiveDuration = Field(
        default=timedelta(hours=23, minutes=30),
        description="Replace a connection this old, ahead of Binance's 24 h disconnect.",
    )
    overlap: Duration = Field(
        default=timedelta(seconds=5),
        description="On a proactive reconnect, run the old and new connection together this long.",
    )
    backoff_initial: PositiveDuration = Field(
        default=timedelta(seconds=1),
        description="First reconnect delay; grows after each failed attempt.",
    )
    backoff_max: PositiveDuration = Field(
        default=timedelta(seconds=60), description="Longest reconnect delay."
    )
    healthy_after: PositiveDuration = Field(
        default=timedelta(seconds=30),
        description="A connection that stayed up this long resets the reconnect delay.",
    )
    max_clock_skew: PositiveDuration = Field(
        default=timedelta(minutes=5),
        description="Reject live trades whose event time is further than this from the clock.",
    )

    @model_validator(mode="after")
    def _check(self) -> FeedSettings:
        """Check the settings that constrain one another."""
        if self.backoff_initial > self.backoff_max:
            raise ValueError(
                f"backoff_initial ({format_duration(self.backoff_initial)}) must not exceed "
                f"backoff_max ({format_duration(self.backoff_max)})"
            )
        if self.overlap >= self.max_connection_age:
            raise ValueError(
                f"overlap ({format_duration(self.overlap)}) must be shorter than "
                f"max_connection_age ({format_duration(self.max_connection_age)})"
            )
        return self

    @property
    def stream_url_base(self) -> str:
        """Return the websocket base URL in effect, without a trailing slash."""
        url = self.base_url if self.base_url is not None else DEFAULT_BASE_URLS[self.market]
        return url.rstrip("/")

    @property
    def effective_max_streams_per_connection(self) -> int:
        """Return ``max_streams_per_connection``, or the market's limit if it is unset."""
        if self.max_streams_per_connection is not None:
            return self.max_streams_per_connection
        return DEFAULT_MAX_STREAMS[self.market]


class BarsSettings(BaseModel):
    """Which bars are built from trades and how idle bars are closed."""

    model_config = _SECTION

    timeframes: TimeframeList = Field(
        default=("1s", "1m", "5m"),
        description="Bar lengths: a number and s, m, h or d; a list, JSON list or comma-separated.",
    )
    fill: Literal["carry", "none"] = Field(
        default="carry",
        description="Bars without trades: carry (flat bar at the last close, filled) or none.",
    )
    max_fill: Duration = Field(
        default=timedelta(hours=1),
        description=(
            "Carry the last close into empty intervals for at most this long after the last "
            "trade; a longer silence leaves a hole."
        ),
    )
    grace: Duration = Field(
        default=timedelta(seconds=2),
        description="Wall-clock time after a bar's end before an idle bar is closed.",
    )
    checkpoint_interval: PositiveDuration = Field(
        default=timedelta(seconds=1),
        description="How often open bars and last trade ids are saved.",
    )

    @property
    def max_fill_ms(self) -> int:
        """Return ``max_fill`` in milliseconds."""
        return int(self.max_fill.total_seconds() * 1000)

    @property
    def timeframe_lengths(self) -> list[tuple[str, int]]:
        """Return ``(label, length in ms)`` for each timeframe, shortest first."""
        return sorted(
            ((label, parse_timeframe(label)) for label in self.timeframes), key=lambda item: item[1]
        )


def _default_bar_retention() -> dict[str, timedelta | None]:
    """Return the default bar retention: 1s bars for a week, longer bars for ever."""
    return {"1s": timedelta(days=7)}


class RetentionSettings(BaseModel):
    """How long stored rows are kept; ``0`` or ``"forever"`` keeps them for ever."""

    model_config = _SECTION

    ticks: Retention = Field(
        default=timedelta(days=7), description="Raw trades (only stored with store_ticks = true)."
    )
    bars: dict[Timeframe, Retention] = Field(
        default_factory=_default_bar_retention,
        description=(
            "Bars per timeframe label; timeframes not listed are kept for ever. "
            "Setting this table replaces the default as a whole."
        ),
    )
    gaps: Retention = Field(default=timedelta(days=90), description="Recorded gaps in trade ids.")
    feed_stats: Retention = Field(
        default=timedelta(days=30), description="Per-connection feed statistics."
    )
    alerts: Retention = Field(
        default=timedelta(days=365),
        description="Alert events, delivered notifications and ended silences.",
    )
    sweep_interval: PositiveDuration = Field(
        default=timedelta(hours=1), description="How often expired rows are deleted."
    )

    def for_bars(self, timeframe: str) -> timedelta | None:
        """Return how long bars of ``timeframe`` are kept, ``None`` for ever."""
        return self.bars.get(timeframe)


MIN_MAX_SIZE = 1_000_000
"""The smallest ``storage.max_size`` (1MB): the schema alone takes a few hundred kB."""


def _unset_if_blank(value: object) -> object:
    """Treat an empty string (e.g. ``PAIRWATCH_STORAGE__MAX_SIZE=``) as unset."""
    return None if isinstance(value, str) and not value.strip() else value


MaxSize = Annotated[ByteSize | None, BeforeValidator(_unset_if_blank)]
"""A size in bytes: a whole number, or a number and a unit (``500MB``, ``2GB``, ``2GiB``)."""


class StorageSettings(BaseModel):
    """The SQLite store."""

    model_config = _SECTION

    sqlite_path: FilePath | None = Field(
        default=None,
        description=(
            "SQLite database file; relative paths are under data_dir; "
            f"unset: data_dir/{DB_FILENAME}."
        ),
    )
    store_ticks: bool = Field(default=False, description="Also store every raw trade (large).")
    batch_max_rows: int = Field(
        default=50_000, ge=1, le=10_000_000, description="Most rows written in one transaction."
    )
    max_size: MaxSize = Field(
        default=None,
        ge=MIN_MAX_SIZE,
        description=(
            "Largest size of the database file, e.g. '500MB' or '2GB' (at least 1MB); past "
            "it writes wait as on a full disk. Unset: no cap."
        ),
    )
    retention: RetentionSettings = Field(
        default_factory=RetentionSettings, description="How long rows are kept."
    )


class AlertsSettings(BaseModel):
    """Alert rules and the delivery of their notifications."""

    model_config = _SECTION

    rules_file: FilePath | None = Field(
        default=None,
        description=(
            "YAML alert rules (docs/rules.md), reloaded when saved and on SIGHUP; a relative "
            "path is from the working directory. Unset: no rules."
        ),
    )
    watch_interval: PositiveDuration = Field(
        default=timedelta(seconds=1),
        description="How often the rules file is checked for a change.",
    )
    admin_notify: tuple[Literal["telegram", "mqtt", "webhook", "log", "all"], ...] = Field(
        default=("log",),
        description="Notifiers that get the daemon's own notices (e.g. rules reload failed).",
    )
    retry_initial: PositiveDuration = Field(
        default=timedelta(seconds=1),
        description="First wait before a failed delivery is retried; doubles per failure.",
    )
    retry_max: PositiveDuration = Field(
        default=timedelta(minutes=5), description="Longest wait between delivery attempts."
    )


class Settings(BaseSettings):
    """All pairwatch settings: defaults < TOML file < credentials < ``PAIRWATCH_*`` variables."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    credential_files: ClassVar[Mapping[str, tuple[str, ...]]] = CREDENTIALS
    """Credential registry read by ``CredentialsSettingsSource``; subclasses may extend it."""

    data_dir: FilePath = Field(
        default=DEFAULT_DATA_DIR,
        description=(
            "Directory for the database and other state; unset: $STATE_DIRECTORY "
            "(systemd StateDirectory=) if set, else ./pairwatch-data."
        ),
    )
    log_level: LogLevel = Field(
        default="INFO", description="Lowest level logged: DEBUG, INFO, WARNING or ERROR."
    )
    feed: FeedSettings = Field(default_factory=FeedSettings, description="The trade feed.")
    bars: BarsSettings = Field(default_factory=BarsSettings, description="Bar building.")
    storage: StorageSettings = Field(
        default_factory=StorageSettings, description="The SQLite store."
    )
    alerts: AlertsSettings = Field(
        default_factory=AlertsSettings, description="Alert rules and notification delivery."
    )
    telegram: TelegramSettings = Field(
        default_factory=TelegramSettings, description="The Telegram bot."
    )
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="The MQTT broker.")
    webhook: WebhookSettings = Field(
        default_factory=WebhookSettings, description="The webhook notifier."
    )
    web: WebSettings = Field(
        default_factory=WebSettings, description="The web page and /healthz, /metrics."
    )
    pairs: tuple[Pair, ...] = Field(
        default=(), description="Pairs the analytics follow: [[pairs]] tables or 'Y/X' strings."
    )

    @model_validator(mode="after")
    def _check_pairs(self) -> Settings:
        """Pairs may only use configured symbols and timeframes, each pair once."""
        symbols = set(self.feed.symbols)
        timeframes = set(self.bars.timeframes)
        seen: set[str] = set()
        for pair in self.pairs:
            missing = [s for s in (pair.y, pair.x) if s not in symbols]
            if missing:
                raise ValueError(f"pair {pair.name}: {', '.join(missing)} not among feed.symbols")
            unknown = [t for t in pair.timeframes or () if t not in timeframes]
            if unknown:
                raise ValueError(
                    f"pair {pair.name}: timeframes {', '.join(unknown)} not among bars.timeframes"
                )
            if pair.name in seen:
                raise ValueError(f"pair {pair.name} is listed twice")
            seen.add(pair.name)
        unknown = [p for p in self.mqtt.pairs if p.upper() not in seen]
        if unknown:
            raise ValueError(
                f"mqtt.pairs: {', '.join(unknown)} not among the configured pairs "
                f"({', '.join(sorted(seen)) or 'none'})"
            )
        return self

    @property
    def db_path(self) -> Path:
        """Return the SQLite file in effect: ``storage.sqlite_path`` resolved against data_dir."""
        if self.storage.sqlite_path is None:
            return self.data_dir / DB_FILENAME
        # An absolute sqlite_path replaces data_dir entirely.
        return self.data_dir / self.storage.sqlite_path

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read keyword arguments, then ``os.environ``; ``load_settings`` adds the TOML file."""
        return (init_settings, *settings_sources(cls, os.environ, {}))


def settings_sources(
    settings_cls: type[Settings], environ: Mapping[str, str], file_data: Mapping[str, Any]
) -> tuple[PydanticBaseSettingsSource, ...]:
    """Return the sources of ``settings_cls``, highest priority first."""
    return (
        EnvironSettingsSource(settings_cls, environ),
        CredentialsSettingsSource(
            settings_cls, credentials_directory(environ), settings_cls.credential_files
        ),
        MappingSettingsSource(settings_cls, file_data),
        MappingSettingsSource(settings_cls, state_directory_data(environ)),
    )
