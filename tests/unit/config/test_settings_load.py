"""Loading settings from a TOML file, PAIRWATCH_* variables and systemd credentials."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pairwatch.config.load import load_settings
from pairwatch.config.settings import CREDENTIALS, Settings
from pairwatch.errors import ConfigError
from support.secrets import CREDENTIAL_MQTT_PASSWORD, CREDENTIAL_TELEGRAM_TOKEN

FILE = """\
log_level = "warning"
data_dir = "/srv/pw"

[feed]
market = "usdm"
stream = "aggTrade"
symbols = ["solusdt", "BNBUSDT"]
watchdog = 10
max_connection_age = "12h"

[bars]
timeframes = ["1m", "15m"]
fill = "none"

[storage]
store_ticks = true

[storage.retention]
ticks = "forever"

[storage.retention.bars]
1m = "30d"
"""


def write(tmp_path: Path, text: str, name: str = "pairwatch.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_file_sets_values_and_leaves_the_rest_default(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, FILE), environ={})
    assert settings.log_level == "WARNING"
    assert settings.data_dir == Path("/srv/pw")
    assert settings.feed.market == "usdm"
    assert settings.feed.stream == "aggTrade"
    assert settings.feed.symbols == ("SOLUSDT", "BNBUSDT")
    assert settings.feed.watchdog == timedelta(seconds=10)
    assert settings.feed.max_connection_age == timedelta(hours=12)
    assert settings.feed.backoff_max == timedelta(seconds=60)
    assert settings.feed.stream_url_base == "wss://fstream.binance.com/market"
    assert settings.bars.timeframes == ("1m", "15m")
    assert settings.bars.fill == "none"
    assert settings.storage.store_ticks is True
    assert settings.storage.retention.ticks is None
    assert settings.storage.retention.bars == {"1m": timedelta(days=30)}
    assert settings.storage.retention.gaps == timedelta(days=90)
    assert settings.db_path == Path("/srv/pw/pairwatch.sqlite3")


def test_environment_beats_file(tmp_path: Path) -> None:
    environ = {
        "PAIRWATCH_LOG_LEVEL": "debug",
        "PAIRWATCH_FEED__MARKET": "spot",
        "PAIRWATCH_FEED__WATCHDOG": "45s",
        "PAIRWATCH_STORAGE__RETENTION__TICKS": "3d",
    }
    settings = load_settings(write(tmp_path, FILE), environ=environ)
    assert settings.log_level == "DEBUG"
    assert settings.feed.market == "spot"
    assert settings.feed.watchdog == timedelta(seconds=45)
    assert settings.storage.retention.ticks == timedelta(days=3)
    # Keys the environment does not name keep the file's values.
    assert settings.feed.stream == "aggTrade"
    assert settings.storage.retention.bars == {"1m": timedelta(days=30)}


def test_nested_variables_use_double_underscore_and_any_case() -> None:
    settings = load_settings(
        environ={
            "PAIRWATCH_STORAGE__RETENTION__BARS__1M": "2d",
            "pairwatch_feed__max_streams_per_connection": "10",
            "PAIRWATCH_STORAGE__STORE_TICKS": "true",
            "PAIRWATCH_FEED__BASE_URL": "ws://127.0.0.1:9001",
        }
    )
    assert settings.storage.retention.bars == {"1m": timedelta(days=2)}
    assert settings.feed.effective_max_streams_per_connection == 10
    assert settings.storage.store_ticks is True
    assert settings.feed.stream_url_base == "ws://127.0.0.1:9001"


def test_a_whole_table_can_be_given_as_json() -> None:
    settings = load_settings(
        environ={"PAIRWATCH_FEED": '{"market": "usdm", "symbols": ["ethusdt"]}'}
    )
    assert (settings.feed.market, settings.feed.symbols) == ("usdm", ("ETHUSDT",))


@pytest.mark.parametrize(
    "written",
    [
        '["BTCUSDT","ETHUSDT","SOLUSDT"]',
        '[ "btcusdt", "ethusdt", "solusdt" ]',
        "BTCUSDT,ETHUSDT,SOLUSDT",
        " btcusdt , ethusdt,solusdt ",
    ],
)
def test_list_variables_accept_json_and_comma_separated(written: str) -> None:
    settings = load_settings(
        environ={"PAIRWATCH_FEED__SYMBOLS": written, "PAIRWATCH_BARS__TIMEFRAMES": "1s,1h"}
    )
    assert settings.feed.symbols == ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert settings.bars.timeframes == ("1s", "1h")


def test_bar_retention_accepts_a_json_table() -> None:
    settings = load_settings(
        environ={"PAIRWATCH_STORAGE__RETENTION__BARS": '{"1s": "1d", "1m": "forever"}'}
    )
    assert settings.storage.retention.bars == {"1s": timedelta(days=1), "1m": None}


def test_config_path_comes_from_pairwatch_config(tmp_path: Path) -> None:
    path = write(tmp_path, 'log_level = "ERROR"\n')
    assert load_settings(environ={"PAIRWATCH_CONFIG": str(path)}).log_level == "ERROR"


def test_explicit_config_path_beats_pairwatch_config(tmp_path: Path) -> None:
    chosen = write(tmp_path, 'log_level = "ERROR"\n', "chosen.toml")
    other = write(tmp_path, 'log_level = "DEBUG"\n', "other.toml")
    settings = load_settings(chosen, environ={"PAIRWATCH_CONFIG": str(other)})
    assert settings.log_level == "ERROR"


def test_without_file_or_environment_everything_is_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PAIRWATCH_WEB__PORT")  # tests/conftest.py sets it for every test
    assert load_settings(environ={}) == Settings.model_validate({})


def test_environ_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAIRWATCH_CONFIG", raising=False)
    monkeypatch.setenv("PAIRWATCH_FEED__MARKET", "usdm")
    assert load_settings().feed.market == "usdm"
    # Constructing the model directly reads os.environ the same way.
    assert Settings().feed.market == "usdm"


def test_state_directory_sets_data_dir_unless_configured(tmp_path: Path) -> None:
    environ = {"STATE_DIRECTORY": "/var/lib/pairwatch:/var/lib/other"}
    settings = load_settings(environ=environ)
    assert settings.data_dir == Path("/var/lib/pairwatch")
    assert settings.db_path == Path("/var/lib/pairwatch/pairwatch.sqlite3")
    from_file = load_settings(write(tmp_path, 'data_dir = "/srv/pw"\n'), environ=environ)
    assert from_file.data_dir == Path("/srv/pw")
    from_env = load_settings(environ={**environ, "PAIRWATCH_DATA_DIR": "/opt/pw"})
    assert from_env.data_dir == Path("/opt/pw")


# A later feature adds a secret like this; the registry entry maps the credential file to it.
class TelegramSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | None = Field(default=None, description="Bot token.")
    chat: str = Field(default="", description="Chat id.")


class SecretSettings(Settings):
    credential_files: ClassVar[dict[str, tuple[str, ...]]] = {
        **CREDENTIALS,
        "telegram_token": ("telegram", "token"),
    }

    telegram: TelegramSection = Field(default_factory=TelegramSection, description="Bot.")


def test_credentials_registry_names_the_notifiers_and_web_secrets() -> None:
    expected = {
        "telegram_token": ("telegram", "token"),
        "mqtt_password": ("mqtt", "password"),
        "webhook_secret": ("webhook", "secret"),
        "web_password": ("web", "password"),
        "web_cookie_secret": ("web", "cookie_secret"),
    }
    assert expected == CREDENTIALS
    assert Settings.credential_files == expected


def test_notifier_secrets_come_from_the_credentials_directory_and_never_show(
    tmp_path: Path,
) -> None:
    (tmp_path / "telegram_token").write_text(CREDENTIAL_TELEGRAM_TOKEN + "\n", encoding="utf-8")
    (tmp_path / "mqtt_password").write_text(CREDENTIAL_MQTT_PASSWORD, encoding="utf-8")
    settings = load_settings(
        environ={
            "CREDENTIALS_DIRECTORY": str(tmp_path),
            "PAIRWATCH_MQTT__USERNAME": "pw",
            "PAIRWATCH_TELEGRAM__CHAT_IDS": "42",
        }
    )
    assert settings.telegram.token is not None
    assert settings.telegram.token.get_secret_value() == CREDENTIAL_TELEGRAM_TOKEN
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == CREDENTIAL_MQTT_PASSWORD
    assert settings.telegram.enabled
    assert not settings.mqtt.enabled  # no host
    assert "123:abc" not in repr(settings)
    assert "hunter2" not in repr(settings)


def test_secret_is_read_from_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "telegram_token").write_text(CREDENTIAL_TELEGRAM_TOKEN + "\n", encoding="utf-8")
    settings = load_settings(
        environ={"CREDENTIALS_DIRECTORY": str(tmp_path)}, settings_cls=SecretSettings
    )
    assert isinstance(settings, SecretSettings)
    assert settings.telegram.token is not None
    assert settings.telegram.token.get_secret_value() == CREDENTIAL_TELEGRAM_TOKEN


def test_secret_from_environment_beats_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "telegram_token").write_text("from-file", encoding="utf-8")
    settings = load_settings(
        environ={
            "CREDENTIALS_DIRECTORY": str(tmp_path),
            "PAIRWATCH_TELEGRAM__TOKEN": "from-env",
        },
        settings_cls=SecretSettings,
    )
    assert settings.telegram.token is not None
    assert settings.telegram.token.get_secret_value() == "from-env"


def test_credentials_directory_beats_config_file(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "telegram_token").write_text("from-credential", encoding="utf-8")
    config = write(tmp_path, '[telegram]\ntoken = "from-file"\nchat = "42"\n')
    settings = load_settings(
        config, environ={"CREDENTIALS_DIRECTORY": str(credentials)}, settings_cls=SecretSettings
    )
    assert settings.telegram.token is not None
    assert settings.telegram.token.get_secret_value() == "from-credential"
    assert settings.telegram.chat == "42"


def test_missing_credential_file_leaves_the_secret_unset(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"CREDENTIALS_DIRECTORY": str(tmp_path)}, settings_cls=SecretSettings
    )
    assert settings.telegram.token is None


def test_unreadable_credential_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "telegram_token").mkdir()
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"CREDENTIALS_DIRECTORY": str(tmp_path)}, settings_cls=SecretSettings)
    assert caught.value.problems == [
        f"{tmp_path}/telegram_token: cannot read credential: Is a directory"
    ]


def test_secret_never_appears_in_repr_str_dump_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "telegram_token").write_text("s3cr3t-token", encoding="utf-8")
    caplog.set_level(logging.DEBUG)
    settings = load_settings(
        environ={"CREDENTIALS_DIRECTORY": str(tmp_path)}, settings_cls=SecretSettings
    )
    assert "s3cr3t" not in repr(settings)
    assert "s3cr3t" not in str(settings)
    assert "s3cr3t" not in repr(settings.telegram)
    assert "s3cr3t" not in str(settings.model_dump())
    assert "s3cr3t" not in settings.model_dump_json()
    assert "s3cr3t" not in caplog.text
