"""Settings sources: environment variables, systemd credentials, the state directory, a file."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic.fields import FieldInfo
from pydantic_settings import EnvSettingsSource, PydanticBaseSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

from pairwatch.errors import ConfigError

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

logger = logging.getLogger(__name__)

ENV_PREFIX = "PAIRWATCH_"
ENV_NESTED_DELIMITER = "__"
CONFIG_ENV_VAR = "PAIRWATCH_CONFIG"
CREDENTIALS_ENV_VAR = "CREDENTIALS_DIRECTORY"
STATE_ENV_VAR = "STATE_DIRECTORY"


class EnvironSettingsSource(EnvSettingsSource):
    """Read ``PAIRWATCH_*`` variables from a given mapping instead of ``os.environ``.

    A value that is not valid JSON where JSON is expected is passed on as the raw string,
    so that validation reports it against its key instead of failing the whole source.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        """Return the variables of the injected mapping, normalised like pydantic-settings does."""
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        """Return the JSON-decoded ``value``, or ``value`` itself if it is not JSON."""
        try:
            return super().decode_complex_value(field_name, field, value)
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deeply
            return value


class CredentialsSettingsSource(PydanticBaseSettingsSource):
    """Read secrets from files in a directory, as systemd's ``LoadCredential=`` provides them.

    ``registry`` maps a file name to the settings path it fills, e.g.
    ``{"telegram_token": ("telegram", "token")}``. Missing files are skipped.
    """

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        directory: Path | None,
        registry: Mapping[str, tuple[str, ...]],
    ) -> None:
        super().__init__(settings_cls)
        self.directory = directory
        self.registry = registry

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Satisfy the abstract interface; values are produced by ``__call__`` as a whole."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """Return the nested settings data found in the credentials directory."""
        data: dict[str, Any] = {}
        if self.directory is None:
            return data
        problems: list[str] = []
        for name, path in self.registry.items():
            file = self.directory / name
            try:
                value = file.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                continue
            except OSError as exc:
                problems.append(f"{file}: cannot read credential: {exc.strerror or exc}")
                continue
            except UnicodeDecodeError:
                problems.append(f"{file}: cannot read credential: not UTF-8 text")
                continue
            logger.debug("credential %s read from %s", ".".join(path), file)
            _put(data, path, value)
        if problems:
            raise ConfigError(problems)
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(directory={self.directory!r})"


class MappingSettingsSource(PydanticBaseSettingsSource):
    """Supply already parsed nested data, such as the contents of a TOML file."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self.data = dict(data)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Return the value given for ``field_name``, if any."""
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        """Return the data as given."""
        return dict(self.data)


def state_directory_data(environ: Mapping[str, str]) -> dict[str, Any]:
    """Return ``{"data_dir": ...}`` from systemd's ``$STATE_DIRECTORY``, if it is set."""
    # systemd joins several StateDirectory= entries with ':'; the first one is ours.
    first = environ.get(STATE_ENV_VAR, "").split(":")[0]
    return {"data_dir": first} if first else {}


def credentials_directory(environ: Mapping[str, str]) -> Path | None:
    """Return ``$CREDENTIALS_DIRECTORY`` as a path, or ``None`` if it is not set."""
    value = environ.get(CREDENTIALS_ENV_VAR, "")
    return Path(value) if value else None


def _put(data: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    """Set ``value`` at the nested ``path`` of ``data``, creating tables on the way."""
    *parents, last = path
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
