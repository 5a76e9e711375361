"""Load the settings from the TOML file, credentials and environment; report every problem."""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, overload

from pydantic import ValidationError
from pydantic_settings import SettingsError

from pairwatch.config.problems import Document, Origins, describe_errors, env_var_paths
from pairwatch.config.settings import Settings, settings_sources
from pairwatch.config.sources import CONFIG_ENV_VAR, credentials_directory
from pairwatch.config.toml_guard import MAX_BYTES, check_toml_text
from pairwatch.config.toml_lines import key_lines
from pairwatch.errors import ConfigError

logger = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=Settings)

_TOML_POSITION = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")


@overload
def load_settings(
    config_path: Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings: ...


@overload
def load_settings(
    config_path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    settings_cls: type[SettingsT],
) -> SettingsT: ...


def load_settings(
    config_path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    settings_cls: type[Settings] = Settings,
) -> Settings:
    """Return the settings from ``config_path`` (else ``$PAIRWATCH_CONFIG``) and ``environ``.

    ``environ`` defaults to ``os.environ``. Without a file, defaults apply. ``settings_cls``
    may be a subclass that adds fields (and credential files). Raises ``ConfigError`` with
    one line per problem, naming the file and line or the variable.
    """
    env = os.environ if environ is None else environ
    if config_path is None and env.get(CONFIG_ENV_VAR):
        config_path = Path(env[CONFIG_ENV_VAR])
    document = _read_document(config_path) if config_path is not None else None
    file_data = document.data if document is not None else {}

    sources = settings_sources(settings_cls, env, file_data)
    problems = _unknown_env_vars(settings_cls, env)
    try:
        env_data = sources[0]()
    except SettingsError as exc:
        raise ConfigError([*problems, f"environment: {exc}"]) from None
    credentials_data = sources[1]()
    settings: Settings | None = None
    try:
        # pydantic-settings' hook for prebuilt sources; the dataclass-style stub omits it.
        settings = settings_cls(_build_sources=(sources, {}))  # type: ignore[call-arg]
    except ValidationError as exc:
        origins = Origins(
            environ=env,
            env_data=env_data,
            credentials_dir=credentials_directory(env),
            credentials_data=credentials_data,
            credential_files=settings_cls.credential_files,
            document=document,
        )
        problems = [*describe_errors(exc, settings_cls, origins), *problems]
    except SettingsError as exc:
        problems.append(f"environment: {exc}")
    if problems or settings is None:
        raise ConfigError(problems)
    logger.debug("settings loaded from %s", config_path or "defaults and environment")
    return settings


def _read_document(path: Path) -> Document:
    """Return the parsed TOML file at ``path`` with the line of each key."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)  # not all of a runaway file (or /dev/zero)
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{path}: cannot read config file: not UTF-8 text (byte {exc.start})"]
        ) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(
            [f"{path}: cannot read config file: larger than {MAX_BYTES:,} bytes: refused"]
        )
    problem = check_toml_text(path, text)
    if problem is not None:
        raise ConfigError([problem])
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_toml_problem(path, text, str(exc))]) from None
    except (RecursionError, ValueError) as exc:  # a safety net behind check_toml_text
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None
    return Document(path=path, data=data, lines=key_lines(text))


def _toml_problem(path: Path, text: str, message: str) -> str:
    """Return ``path:line:col: invalid TOML: ...`` for a ``tomllib`` error message."""
    match = _TOML_POSITION.match(message)
    if match is not None:
        line, col, what = match["line"], match["col"], match["msg"]
    else:
        # "... (at end of document)": point just past the last character.
        what = message.removesuffix(" (at end of document)")
        last_line = text.rsplit("\n", maxsplit=1)[-1]
        line, col = str(text.count("\n") + 1), str(len(last_line) + 1)
    return f"{path}:{line}:{col}: invalid TOML: {what[:1].lower()}{what[1:]}"


def _unknown_env_vars(settings_cls: type[Settings], environ: Mapping[str, str]) -> list[str]:
    """Return a problem for each ``PAIRWATCH_*`` variable that names no setting."""
    problems = []
    for name, path in env_var_paths(environ).items():
        if path and path[0] not in settings_cls.model_fields:
            problems.append(f"{name}: {'.'.join(path)}: unknown key")
    return problems
