"""``storage.max_size``: a byte size with a unit, unset by default, at least 1MB."""

from __future__ import annotations

from pathlib import Path

import pytest

from pairwatch.config.load import load_settings
from pairwatch.errors import ConfigError


def max_size(
    tmp_path: Path, value: str | None, environ: dict[str, str] | None = None
) -> int | None:
    path = tmp_path / "pairwatch.toml"
    path.write_text("[storage]\n" + (f"max_size = {value}\n" if value is not None else ""))
    return load_settings(path, environ=environ or {}).storage.max_size


@pytest.mark.parametrize(
    ("written", "size"),
    [
        ('"2GB"', 2_000_000_000),
        ('"500MB"', 500_000_000),
        ('"1.5 GB"', 1_500_000_000),
        ('"2GiB"', 2 * 1024**3),
        ("5000000", 5_000_000),  # a bare number: bytes
        (None, None),  # unset: no cap
    ],
)
def test_a_size_is_read_in_decimal_or_binary_units(
    tmp_path: Path, written: str | None, size: int | None
) -> None:
    assert max_size(tmp_path, written) == size


def test_the_variable_sets_it_and_an_empty_one_unsets_it(tmp_path: Path) -> None:
    assert max_size(tmp_path, '"2GB"', {"PAIRWATCH_STORAGE__MAX_SIZE": "750MB"}) == 750_000_000
    assert max_size(tmp_path, '"2GB"', {"PAIRWATCH_STORAGE__MAX_SIZE": ""}) is None


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ('"10kB"', "storage.max_size: input should be greater than or equal to 1000000"),
        ('"2 apples"', "storage.max_size: could not interpret byte unit: apples"),
        ('"big"', "storage.max_size: could not parse value and unit from byte string"),
    ],
)
def test_a_bad_or_too_small_size_names_file_line_and_key(
    tmp_path: Path, written: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        max_size(tmp_path, written)
    [problem] = caught.value.problems
    assert problem.startswith(f"{tmp_path}/pairwatch.toml:2: {message}")
