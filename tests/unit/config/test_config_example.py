"""The example TOML file and docs/configuration.md stay complete and true to the code."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pairwatch.config.load import load_settings
from pairwatch.config.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "config" / "pairwatch.example.toml"
DOCS = ROOT / "docs" / "configuration.md"
COMMENTED_KEY = re.compile(r"^# ([a-z_]+ = .+)$", re.MULTILINE)


def setting_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Return the dotted key of every leaf setting (tables are recursed into)."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += setting_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def toml_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for name, value in data.items():
        keys.add(f"{prefix}{name}")
        if isinstance(value, dict):
            keys |= toml_keys(value, f"{prefix}{name}.")
    return keys


def uncommented_example() -> str:
    return COMMENTED_KEY.sub(r"\1", EXAMPLE.read_text(encoding="utf-8"))


def test_example_loads_and_equals_the_defaults() -> None:
    assert load_settings(EXAMPLE, environ={}) == load_settings(environ={})


def test_example_sets_every_key_or_shows_it_commented_out() -> None:
    written = toml_keys(tomllib.loads(uncommented_example()))
    assert [key for key in setting_keys(Settings) if key not in written] == []


def test_example_commented_out_keys_are_valid_and_match_the_effective_defaults(
    tmp_path: Path,
) -> None:
    path = tmp_path / "uncommented.toml"
    path.write_text(uncommented_example(), encoding="utf-8")
    settings = load_settings(path, environ={})
    defaults = load_settings(environ={})
    # Only data_dir is shown with a different (systemd-style) value than the default.
    assert settings.data_dir == Path("/var/lib/pairwatch")
    assert settings.feed.stream_url_base == defaults.feed.stream_url_base
    assert (
        settings.feed.effective_max_streams_per_connection
        == defaults.feed.effective_max_streams_per_connection
    )
    assert settings.storage.sqlite_path == Path("pairwatch.sqlite3")
    assert settings.db_path == Path("/var/lib/pairwatch/pairwatch.sqlite3")


def test_docs_reference_lists_every_key_with_its_variable() -> None:
    text = DOCS.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z_.]+)` \| `(PAIRWATCH_[A-Z_]+)`", text, re.MULTILINE)
    assert rows == [
        (key, "PAIRWATCH_" + key.replace(".", "__").upper()) for key in setting_keys(Settings)
    ]
