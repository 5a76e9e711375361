"""The settings models: defaults, derived values and validation of single values."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from pairwatch.config.load import load_settings
from pairwatch.config.settings import (
    BarsSettings,
    FeedSettings,
    RetentionSettings,
    Settings,
    StorageSettings,
)


def defaults() -> Settings:
    return load_settings(environ={})


def test_defaults() -> None:
    settings = defaults()
    assert settings.data_dir == Path("pairwatch-data")
    assert settings.log_level == "INFO"
    assert settings.feed == FeedSettings(
        source="binance",
        market="spot",
        stream="trade",
        symbols=("BTCUSDT", "ETHUSDT"),
        base_url=None,
        max_streams_per_connection=None,
        watchdog=timedelta(seconds=30),
        max_connection_age=timedelta(hours=23, minutes=30),
        overlap=timedelta(seconds=5),
        backoff_initial=timedelta(seconds=1),
        backoff_max=timedelta(seconds=60),
        healthy_after=timedelta(seconds=30),
        max_clock_skew=timedelta(minutes=5),
    )
    assert settings.bars == BarsSettings(
        timeframes=("1s", "1m", "5m"),
        fill="carry",
        grace=timedelta(seconds=2),
        checkpoint_interval=timedelta(seconds=1),
    )
    assert settings.storage == StorageSettings(
        sqlite_path=None,
        store_ticks=False,
        batch_max_rows=50_000,
        retention=RetentionSettings(
            ticks=timedelta(days=7),
            bars={"1s": timedelta(days=7)},
            gaps=timedelta(days=90),
            feed_stats=timedelta(days=30),
            sweep_interval=timedelta(hours=1),
        ),
    )


def test_defaults_dump_as_they_are_written_in_toml() -> None:
    assert defaults().model_dump(mode="json") == {
        "data_dir": "pairwatch-data",
        "log_level": "INFO",
        "feed": {
            "source": "binance",
            "market": "spot",
            "stream": "trade",
            "symbols": ["BTCUSDT", "ETHUSDT"],
            "base_url": None,
            "max_streams_per_connection": None,
            "watchdog": "30s",
            "max_connection_age": "23h30m",
            "overlap": "5s",
            "backoff_initial": "1s",
            "backoff_max": "1m",
            "healthy_after": "30s",
            "max_clock_skew": "5m",
        },
        "bars": {
            "timeframes": ["1s", "1m", "5m"],
            "fill": "carry",
            "max_fill": "1h",
            "grace": "2s",
            "checkpoint_interval": "1s",
        },
        "storage": {
            "sqlite_path": None,
            "store_ticks": False,
            "batch_max_rows": 50000,
            "max_size": None,
            "retention": {
                "ticks": "7d",
                "bars": {"1s": "7d"},
                "gaps": "90d",
                "feed_stats": "30d",
                "alerts": "365d",
                "sweep_interval": "1h",
            },
        },
        "alerts": {
            "rules_file": None,
            "watch_interval": "1s",
            "admin_notify": ["log"],
            "retry_initial": "1s",
            "retry_max": "5m",
        },
        "telegram": {
            "token": None,
            "chat_ids": [],
            "api_base_url": "https://api.telegram.org/bot",
            "silent": ["info"],
            "commands": True,
            "poll_timeout": "20s",
            "timeout": "15s",
        },
        "mqtt": {
            "host": None,
            "port": 1883,
            "username": None,
            "password": None,
            "client_id": "pairwatch",
            "topic_prefix": "pairwatch/v1",
            "qos": 1,
            "analytics_qos": 0,
            "keepalive": "1m",
            "tls": {
                "enabled": False,
                "ca_file": None,
                "cert_file": None,
                "key_file": None,
                "insecure": False,
            },
            "publish_analytics": True,
            "publish_bars": False,
            "pairs": [],
            "ha_discovery": False,
            "discovery_prefix": "homeassistant",
        },
        "webhook": {"url": None, "secret": None, "timeout": "10s"},
        "web": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": 5006,
            "prefix": "",
            "password": None,
            "cookie_secret": None,
            "allow_remote_without_auth": False,
            "websocket_origins": [],
            "live_interval": None,
        },
        "pairs": [],
    }


def test_models_are_frozen() -> None:
    settings = defaults()
    with pytest.raises(ValidationError, match="frozen"):
        settings.log_level = "DEBUG"
    with pytest.raises(ValidationError, match="frozen"):
        settings.feed.market = "usdm"


@pytest.mark.parametrize(
    ("market", "base_url", "expected"),
    [
        ("spot", None, "wss://stream.binance.com:9443"),
        ("usdm", None, "wss://fstream.binance.com/market"),
        ("spot", "ws://127.0.0.1:9001/", "ws://127.0.0.1:9001"),
        ("usdm", "wss://example.test/base//", "wss://example.test/base"),
        ("spot", "", "wss://stream.binance.com:9443"),
    ],
)
def test_stream_url_base_defaults_per_market_without_trailing_slash(
    market: str, base_url: str | None, expected: str
) -> None:
    feed = FeedSettings.model_validate({"market": market, "base_url": base_url})
    assert feed.stream_url_base == expected


@pytest.mark.parametrize(
    ("market", "configured", "expected"),
    [("spot", None, 1024), ("usdm", None, 200), ("usdm", 50, 50), ("spot", 1, 1)],
)
def test_effective_max_streams_per_connection(
    market: str, configured: int | None, expected: int
) -> None:
    feed = FeedSettings.model_validate({"market": market, "max_streams_per_connection": configured})
    assert feed.effective_max_streams_per_connection == expected


@pytest.mark.parametrize(
    "url", ["http://example.test", "wss://", "ws://host/x?a=1", "ws://host#f", "ws://h:99999"]
)
def test_base_url_must_be_a_websocket_url(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FeedSettings.model_validate({"base_url": url})
    assert str(caught.value.errors()[0]["ctx"]["error"]) == (
        f"invalid URL {url!r}: expected ws:// or wss://, a host, an optional port and path, "
        "e.g. wss://stream.binance.com:9443"
    )


def test_symbols_are_upper_cased_and_stripped() -> None:
    feed = FeedSettings.model_validate({"symbols": [" btcusdt", "EthUsdt", "1000PEPEUSDT"]})
    assert feed.symbols == ("BTCUSDT", "ETHUSDT", "1000PEPEUSDT")


@pytest.mark.parametrize(
    ("symbols", "message"),
    [
        (
            ["BTC-USDT"],
            "invalid symbol 'BTC-USDT': expected 2 to 30 letters or digits, e.g. BTCUSDT",
        ),
        (["B"], "invalid symbol 'B': expected 2 to 30 letters or digits, e.g. BTCUSDT"),
        (
            ["A" * 31],
            f"invalid symbol '{'A' * 31}': expected 2 to 30 letters or digits, e.g. BTCUSDT",
        ),
        (["btcusdt", "BTCUSDT", "ETHUSDT", "ethusdt"], "duplicate symbol BTCUSDT, ETHUSDT"),
        ([], "list at least one symbol"),
    ],
)
def test_symbols_are_validated(symbols: list[str], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FeedSettings.model_validate({"symbols": symbols})
    assert [str(error["ctx"]["error"]) for error in caught.value.errors()] == [message]


def test_timeframe_lengths_are_sorted_by_length() -> None:
    bars = BarsSettings.model_validate({"timeframes": ["1h", "5m", "1s", "15m", "1d"]})
    assert bars.timeframes == ("1h", "5m", "1s", "15m", "1d")
    assert bars.timeframe_lengths == [
        ("1s", 1_000),
        ("5m", 300_000),
        ("15m", 900_000),
        ("1h", 3_600_000),
        ("1d", 86_400_000),
    ]


@pytest.mark.parametrize(
    ("timeframes", "message"),
    [
        (["1m", "60s"], "'1m' and '60s' are the same timeframe"),
        (["1m", "1m"], "'1m' and '1m' are the same timeframe"),
        ([], "list at least one timeframe"),
    ],
)
def test_timeframes_must_be_distinct(timeframes: list[str], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        BarsSettings.model_validate({"timeframes": timeframes})
    assert [str(error["ctx"]["error"]) for error in caught.value.errors()] == [message]


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ("forever", None),
        ("Forever", None),
        (0, None),
        ("0s", None),
        ("12h", timedelta(hours=12)),
        (3600, timedelta(hours=1)),
    ],
)
def test_retention_zero_or_forever_keeps_for_ever(written: object, kept: timedelta | None) -> None:
    retention = RetentionSettings.model_validate(
        {"ticks": written, "bars": {"1m": written}, "gaps": written, "feed_stats": written}
    )
    assert (retention.ticks, retention.gaps, retention.feed_stats) == (kept, kept, kept)
    assert retention.for_bars("1m") == kept
    assert retention.for_bars("5m") is None


def test_forever_is_written_back_as_forever() -> None:
    retention = RetentionSettings.model_validate({"ticks": "forever", "bars": {"1m": 0}})
    dumped = retention.model_dump(mode="json")
    assert (dumped["ticks"], dumped["bars"]) == ("forever", {"1m": "forever"})


@pytest.mark.parametrize(
    ("sqlite_path", "expected"),
    [
        (None, Path("/var/lib/pw/pairwatch.sqlite3")),
        ("db/x.sqlite3", Path("/var/lib/pw/db/x.sqlite3")),
        ("/srv/other.sqlite3", Path("/srv/other.sqlite3")),
    ],
)
def test_db_path_is_resolved_against_data_dir(sqlite_path: str | None, expected: Path) -> None:
    environ = {"PAIRWATCH_DATA_DIR": "/var/lib/pw"}
    if sqlite_path is not None:
        environ["PAIRWATCH_STORAGE__SQLITE_PATH"] = sqlite_path
    assert load_settings(environ=environ).db_path == expected


def test_paths_expand_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/trader")
    settings = load_settings(environ={"PAIRWATCH_DATA_DIR": "~/pw"})
    assert settings.data_dir == Path("/home/trader/pw")


@pytest.mark.parametrize("level", ["debug", "Warning", "ERROR", "info"])
def test_log_level_is_case_insensitive(level: str) -> None:
    assert load_settings(environ={"PAIRWATCH_LOG_LEVEL": level}).log_level == level.upper()


def test_every_field_has_a_description() -> None:
    models: list[type[BaseModel]] = [
        Settings,
        FeedSettings,
        BarsSettings,
        StorageSettings,
        RetentionSettings,
    ]
    undocumented = [
        f"{model.__name__}.{name}"
        for model in models
        for name, field in model.model_fields.items()
        if not field.description
    ]
    assert undocumented == []


def test_every_model_forbids_unknown_keys_and_is_frozen() -> None:
    for model in (Settings, FeedSettings, BarsSettings, StorageSettings, RetentionSettings):
        assert model.model_config.get("extra") == "forbid", model
        assert model.model_config.get("frozen") is True, model


def test_admin_notices_may_go_to_every_configured_notifier() -> None:
    assert Settings(alerts={"admin_notify": ["all"]}).alerts.admin_notify == ("all",)
    with pytest.raises(ValidationError, match="admin_notify"):
        Settings(alerts={"admin_notify": ["pager"]})
