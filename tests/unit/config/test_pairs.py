"""The [[pairs]] settings: short and long forms, defaults, and clear errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pairwatch.config.load import load_settings
from pairwatch.errors import ConfigError


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "pairwatch.toml"
    path.write_text(text)
    return load_settings(path, environ={}), path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value.problems


def test_no_pairs_by_default(tmp_path: Path) -> None:
    settings, _ = load(tmp_path, "")
    assert settings.pairs == ()


def test_short_and_long_forms(tmp_path: Path) -> None:
    settings, _ = load(
        tmp_path,
        'pairs = ["ethusdt/BTCUSDT", {y = "BTCUSDT", x = "ETHUSDT", windows = [30, 300], '
        'transform = "raw", intercept = false, timeframes = ["1m"], adf_refresh = "5m", '
        "kalman = {delta = 1e-6}}]\n",
    )
    short, long = settings.pairs
    assert (short.name, short.windows, short.transform, short.timeframes) == (
        "ETHUSDT/BTCUSDT", (100,), "log", None,
    )  # fmt: skip
    assert (short.kalman.delta, short.kalman.obs_var, short.adf_lookback) == (1e-5, 1e-3, 500)
    assert (long.name, long.windows, long.transform, long.intercept) == (
        "BTCUSDT/ETHUSDT", (30, 300), "raw", False,
    )  # fmt: skip
    assert (long.timeframes, long.adf_refresh, long.kalman.delta) == (
        ("1m",), timedelta(minutes=5), 1e-6,
    )  # fmt: skip


def test_tables_name_the_file_line_and_key_of_a_bad_value(tmp_path: Path) -> None:
    lines = problems(
        tmp_path,
        '[[pairs]]\ny = "ETHUSDT"\nx = "BTCUSDT"\nwindows = [1]\ncolour = "red"\n',
    )
    path = tmp_path / "pairwatch.toml"
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:4: pairs.0.windows.0: ")
    assert lines[1] == f"{path}:5: pairs.0.colour: unknown key"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('pairs = ["ETHUSDT"]', "a pair is written Y/X, e.g. ETHUSDT/BTCUSDT, got 'ETHUSDT'"),
        ('pairs = ["ETHUSDT/ETHUSDT"]', "a pair needs two different symbols"),
        ('pairs = ["SOLUSDT/BTCUSDT"]', "pair SOLUSDT/BTCUSDT: SOLUSDT not among feed.symbols"),
        (
            'pairs = [{y = "ETHUSDT", x = "BTCUSDT", timeframes = ["15m"]}]',
            "pair ETHUSDT/BTCUSDT: timeframes 15m not among bars.timeframes",
        ),
        ('pairs = ["ETHUSDT/BTCUSDT", "ETHUSDT/BTCUSDT"]', "pair ETHUSDT/BTCUSDT is listed twice"),
        ('pairs = [{y = "ETHUSDT", x = "BTCUSDT", windows = [50, 50]}]', "windows repeat"),
    ],
)
def test_bad_pairs_are_refused_with_a_reason(tmp_path: Path, text: str, message: str) -> None:
    (line,) = problems(tmp_path, text + "\n")
    assert message in line


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('pairs = [{y = "ETHUSDT", x = "BTCUSDT", windows = [2]}]', "greater than or equal to 3"),
        ('pairs = [{y = "ETHUSDT", x = "BTCUSDT", timeframes = ["1m", "1m"]}]', "listed once"),
        ('pairs = [{y = "ETHUSDT", x = "BTCUSDT", kalman = {delta = inf}}]', "finite number"),
        ('pairs = [{y = "ETHUSDT", x = "BTCUSDT", adf_refresh = "50ms"}]', "at least 100ms"),
        (
            'pairs = [{y = "ETHUSDT", x = "BTCUSDT", adf_lookback = 49}]',
            "greater than or equal to 50",
        ),
    ],
)
def test_more_bad_pair_settings(tmp_path: Path, text: str, message: str) -> None:
    (line,) = problems(tmp_path, text + "\n")
    assert message in line
