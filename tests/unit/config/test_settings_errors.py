"""Every configuration problem becomes one ConfigError line naming file:line or variable."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pairwatch.config.load import load_settings
from pairwatch.config.settings import Settings
from pairwatch.errors import ConfigError

TIMEFRAME_HINT = "expected a whole number and a unit s, m, h or d (e.g. 1s, 1m, 5m, 1h)"


def problems(
    text: str | None,
    tmp_path: Path,
    environ: dict[str, str] | None = None,
    settings_cls: type[Settings] = Settings,
) -> list[str]:
    path = None
    if text is not None:
        path = tmp_path / "pairwatch.toml"
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=environ or {}, settings_cls=settings_cls)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_bad_value_names_file_line_key_and_value(tmp_path: Path) -> None:
    text = "# pairwatch\n" * 10 + '[feed]\nmarket = "spott"\n'
    assert problems(text, tmp_path) == [
        f"{tmp_path}/pairwatch.toml:12: feed.market: input should be 'spot' or 'usdm' (got 'spott')"
    ]


def test_unknown_key_in_file(tmp_path: Path) -> None:
    text = '[feed]\nmarket = "spot"\ncolour = "red"\n'
    assert problems(text, tmp_path) == [f"{tmp_path}/pairwatch.toml:3: feed.colour: unknown key"]


def test_unknown_table_and_top_level_key_in_file(tmp_path: Path) -> None:
    text = '[slack]\ntoken = "x"\n\n[feed]\nmarket = "spot"\n'
    text = "verbose = true\n" + text
    assert problems(text, tmp_path) == [
        f"{tmp_path}/pairwatch.toml:1: verbose: unknown key",
        f"{tmp_path}/pairwatch.toml:2: slack: unknown key",
    ]


def test_bad_list_element_from_environment_names_the_variable() -> None:
    environ = {"PAIRWATCH_BARS__TIMEFRAMES": "1s,7x"}
    assert problems(None, Path(), environ) == [
        f"PAIRWATCH_BARS__TIMEFRAMES: bars.timeframes.1: invalid timeframe '7x': {TIMEFRAME_HINT}"
    ]


def test_bad_json_list_from_environment() -> None:
    environ = {"PAIRWATCH_FEED__SYMBOLS": '["BTCUSDT",'}
    assert problems(None, Path(), environ) == [
        "PAIRWATCH_FEED__SYMBOLS: feed.symbols: invalid JSON list: Expecting value (column 12)"
    ]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.problems == [f"{path}: cannot read config file: No such file or directory"]


def test_missing_file_named_by_pairwatch_config(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"PAIRWATCH_CONFIG": str(path)})
    assert caught.value.problems == [f"{path}: cannot read config file: No such file or directory"]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    assert caught.value.problems == [f"{tmp_path}: cannot read config file: Is a directory"]


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'log_level = "INFO" # caf\xe9\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.problems == [f"{path}: cannot read config file: not UTF-8 text (byte 24)"]


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    text = '[feed]\nmarket = "spot"\nsymbols = [BTCUSDT]\n'
    assert problems(text, tmp_path) == [
        f"{tmp_path}/pairwatch.toml:3:12: invalid TOML: invalid value"
    ]


def test_toml_syntax_error_at_end_of_document(tmp_path: Path) -> None:
    text = '[feed]\nsymbols = ["BTCUSDT",'
    assert problems(text, tmp_path) == [
        f"{tmp_path}/pairwatch.toml:2:22: invalid TOML: invalid value"
    ]


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    text = """\
log_level = "verbose"

[feed]
symbols = [
  "BTCUSDT",
  "BTC-USDT",
]
watchdog = "5x"
max_streams_per_connection = 0

[storage]
batch_max_rows = "many"
store_ticks = "maybe"

[storage.retention.bars]
7x = "7d"
1m = "soon"
"""
    path = f"{tmp_path}/pairwatch.toml"
    environ = {"PAIRWATCH_FEED__OVERLAP": "-1", "PAIRWATCH_LOGLEVEL": "debug"}
    assert problems(text, tmp_path, environ) == [
        f"{path}:1: log_level: input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR' "
        "(got 'verbose')",
        f"{path}:6: feed.symbols.1: invalid symbol 'BTC-USDT': "
        "expected 2 to 30 letters or digits, e.g. BTCUSDT",
        f"{path}:8: feed.watchdog: invalid duration '5x': expected e.g. 30s, 5m, 2h, 7d",
        f"{path}:9: feed.max_streams_per_connection: input should be greater than or equal to 1 "
        "(got 0)",
        f"{path}:12: storage.batch_max_rows: input should be a valid integer, "
        "unable to parse string as an integer (got 'many')",
        f"{path}:13: storage.store_ticks: input should be a valid boolean, "
        "unable to interpret input (got 'maybe')",
        f"{path}:16: storage.retention.bars.7x: invalid timeframe '7x': {TIMEFRAME_HINT}",
        f"{path}:17: storage.retention.bars.1m: invalid duration 'soon': "
        "expected e.g. 30s, 5m, 2h, 7d",
        "PAIRWATCH_FEED__OVERLAP: feed.overlap: invalid duration '-1': must not be negative",
        "PAIRWATCH_LOGLEVEL: loglevel: unknown key",
    ]


def test_wrong_shapes_say_what_to_write(tmp_path: Path) -> None:
    text = "feed = 5\n\n[bars]\ntimeframes = 5\n"
    assert problems(text, tmp_path) == [
        f"{tmp_path}/pairwatch.toml:1: feed: expected a table (got 5)",
        f"{tmp_path}/pairwatch.toml:4: bars.timeframes: expected a list (got 5)",
    ]


def test_disagreeing_keys_point_at_their_table(tmp_path: Path) -> None:
    text = '\n[feed]\nbackoff_initial = "2m"\n'
    assert problems(text, tmp_path) == [
        f"{tmp_path}/pairwatch.toml:2: feed: backoff_initial (2m) must not exceed backoff_max (1m)"
    ]


def test_disagreeing_keys_from_environment_name_the_variables() -> None:
    environ = {"PAIRWATCH_FEED__OVERLAP": "1d", "PAIRWATCH_FEED__MARKET": "usdm"}
    assert problems(None, Path(), environ) == [
        "PAIRWATCH_FEED__MARKET, PAIRWATCH_FEED__OVERLAP: feed: "
        "overlap (1d) must be shorter than max_connection_age (23h30m)"
    ]


def test_bad_value_inside_a_json_table_variable() -> None:
    environ = {"PAIRWATCH_FEED": '{"market": "coin"}'}
    assert problems(None, Path(), environ) == [
        "PAIRWATCH_FEED: feed.market: input should be 'spot' or 'usdm' (got 'coin')"
    ]


def test_table_variable_that_is_not_json() -> None:
    assert problems(None, Path(), {"PAIRWATCH_FEED": "usdm"}) == [
        "PAIRWATCH_FEED: feed: expected a table (got 'usdm')"
    ]


def test_unknown_nested_key_from_environment() -> None:
    assert problems(None, Path(), {"PAIRWATCH_FEED__COLOUR": "red"}) == [
        "PAIRWATCH_FEED__COLOUR: feed.colour: unknown key"
    ]


def test_environment_value_is_blamed_over_the_file_it_overrides(tmp_path: Path) -> None:
    text = '[feed]\nmarket = "spot"\n'
    assert problems(text, tmp_path, {"PAIRWATCH_FEED__MARKET": "coin"}) == [
        "PAIRWATCH_FEED__MARKET: feed.market: input should be 'spot' or 'usdm' (got 'coin')"
    ]


class TelegramSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | None = Field(default=None, description="Bot token.")
    chat: int = Field(default=0, description="Chat id.")


class SecretSettings(Settings):
    credential_files: ClassVar[dict[str, tuple[str, ...]]] = {
        "telegram_token": ("telegram", "token"),
        "telegram_chat": ("telegram", "chat"),
    }

    telegram: TelegramSection = Field(default_factory=TelegramSection, description="Bot.")


def test_invalid_secret_is_reported_without_its_value(tmp_path: Path) -> None:
    text = "[telegram]\ntoken = 123456789\n"
    assert problems(text, tmp_path, settings_cls=SecretSettings) == [
        f"{tmp_path}/pairwatch.toml:2: telegram.token: input should be a valid string"
    ]


def test_credential_problem_names_the_credential_file(tmp_path: Path) -> None:
    (tmp_path / "telegram_chat").write_text("not-a-number\n", encoding="utf-8")
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert problems(None, tmp_path, environ, settings_cls=SecretSettings) == [
        f"{tmp_path}/telegram_chat: telegram.chat: input should be a valid integer, "
        "unable to parse string as an integer"
    ]


def test_problem_lines_never_contain_tracebacks_or_other_exceptions(tmp_path: Path) -> None:
    text = '[feed]\nsymbols = "BTCUSDT,7"\n'
    found = problems(text, tmp_path)
    assert found == [
        f"{tmp_path}/pairwatch.toml:2: feed.symbols.1: invalid symbol '7': "
        "expected 2 to 30 letters or digits, e.g. BTCUSDT"
    ]
