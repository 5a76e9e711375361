"""Turn validation errors into one line per problem, naming where the bad value came from."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from pairwatch.config.sources import CONFIG_ENV_VAR, ENV_NESTED_DELIMITER, ENV_PREFIX, STATE_ENV_VAR
from pairwatch.config.toml_lines import KeyPath, line_of

logger = logging.getLogger(__name__)

_MAX_SHOWN = 60
MAX_PROBLEMS = 100
"""Most validation errors described one by one."""
# pydantic's wording for these names Python types; say what to write instead.
_EXPECTED = {
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "dict_type": "expected a table",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "path_type": "expected a path (a string)",
}


@dataclass(frozen=True)
class Document:
    """A parsed TOML file and the line of each key in it."""

    path: Path
    data: dict[str, Any]
    lines: dict[KeyPath, int]


@dataclass(frozen=True)
class Origins:
    """What each source supplied, to tell where a value came from."""

    environ: Mapping[str, str]
    env_data: Mapping[str, Any]
    credentials_dir: Path | None
    credentials_data: Mapping[str, Any]
    credential_files: Mapping[str, tuple[str, ...]]
    document: Document | None

    def locate(self, loc: KeyPath) -> tuple[_Origin, _Found | None]:
        """Return where the value at ``loc`` came from and what was found there."""
        env = _find(self.env_data, loc)
        creds = _find(self.credentials_data, loc)
        file = _find(self.document.data, loc) if self.document is not None else None
        if env is not None and not env.is_table:
            return _Origin(self._env_label(loc)), env
        if creds is not None and not creds.is_table:
            return _Origin(self._credentials_label(loc)), creds
        if file is not None:
            # A table-level problem (e.g. two keys that disagree) is shown at the file's table.
            return self._file_origin(loc), file
        if env is not None:
            return _Origin(self._env_label(loc)), env
        if creds is not None:
            return _Origin(self._credentials_label(loc)), creds
        if loc[:1] == ("data_dir",) and self.environ.get(STATE_ENV_VAR):
            return _Origin(STATE_ENV_VAR), None
        return _Origin(None), None

    def _env_label(self, loc: KeyPath) -> str:
        """Return the variable(s) that set ``loc``: the most specific one, else all under it."""
        names = env_var_paths(self.environ)
        prefixes = [(len(path), name) for name, path in names.items() if _starts(loc, path)]
        if prefixes:
            return max(prefixes)[1]
        return ", ".join(sorted(name for name, path in names.items() if _starts(path, loc)))

    def _credentials_label(self, loc: KeyPath) -> str:
        """Return the credential file(s) that set ``loc``."""
        files = [
            str(Path(self.credentials_dir or ".") / name)
            for name, path in self.credential_files.items()
            if _starts(loc, path) or _starts(path, loc)
        ]
        return ", ".join(sorted(files))

    def _file_origin(self, loc: KeyPath) -> _Origin:
        """Return ``path:line`` of ``loc`` in the TOML file, or just the path."""
        assert self.document is not None
        line = line_of(self.document.lines, loc)
        if line is None:
            return _Origin(str(self.document.path))
        return _Origin(f"{self.document.path}:{line}", line)


@dataclass(frozen=True)
class _Origin:
    """Where a value came from: a variable, credential file or ``path:line``; ``None``: default."""

    label: str | None
    line: int | None = None


@dataclass(frozen=True)
class _Found:
    """A value a source supplied at (or above, if ``exact`` is false) a location."""

    value: Any
    exact: bool

    @property
    def is_table(self) -> bool:
        """Return whether the value is a whole table rather than a single value."""
        return self.exact and isinstance(self.value, Mapping)


def describe_errors(
    error: ValidationError, settings_cls: type[BaseModel], origins: Origins
) -> list[str]:
    """Return one ``origin: dotted.key: what is wrong`` line per validation error.

    Problems in the file come first, in line order; the others follow in schema order.
    Past ``MAX_PROBLEMS`` errors (a list of 100,000 bad values), the rest are counted.
    """
    details = error.errors()
    shown = details[:MAX_PROBLEMS]
    described = [_describe(detail, settings_cls, origins) for detail in shown]
    lines = [text for _, text in sorted(described, key=lambda item: item[0])]
    if len(details) > len(shown):
        lines.append(f"... and {len(details) - len(shown):,} more problems")
    return lines


def env_var_paths(environ: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Return each ``PAIRWATCH_*`` variable name with the settings path it addresses."""
    paths = {}
    for name in environ:
        if name.upper().startswith(ENV_PREFIX) and name.upper() != CONFIG_ENV_VAR:
            rest = name[len(ENV_PREFIX) :].lower()
            if rest:
                paths[name] = tuple(rest.split(ENV_NESTED_DELIMITER))
    return paths


def _describe(
    detail: ErrorDetails, settings_cls: type[BaseModel], origins: Origins
) -> tuple[tuple[int, int], str]:
    """Return a sort key (file line first) and the problem line for one pydantic error."""
    # "[key]" marks an invalid dict key; the key itself is already in the location.
    loc: KeyPath = tuple(part for part in detail["loc"] if part != "[key]")
    origin, found = origins.locate(loc)
    text = _message(detail, found, secret=_is_secret(settings_cls, loc, origins))
    parts = [part for part in (origin.label, ".".join(str(part) for part in loc), text) if part]
    order = (0, origin.line) if origin.line is not None else (1, 0)
    return order, ": ".join(parts)


def _message(detail: ErrorDetails, found: _Found | None, *, secret: bool) -> str:
    """Return what is wrong, with the offending value unless it is secret."""
    kind = detail["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("value_error", "assertion_error"):
        return str(detail.get("ctx", {}).get("error", detail["msg"]))
    text = _EXPECTED.get(kind) or detail["msg"][:1].lower() + detail["msg"][1:]
    if kind == "missing" or secret:
        return text
    value = found.value if found is not None and found.exact else detail["input"]
    return f"{text} (got {_show(value)})"


def _show(value: Any) -> str:
    """Return a short ``repr`` of ``value``."""
    shown = repr(value)
    return shown if len(shown) <= _MAX_SHOWN else shown[: _MAX_SHOWN - 3] + "..."


def _find(data: Mapping[str, Any], loc: KeyPath) -> _Found | None:
    """Return what ``data`` holds at ``loc``, or ``None`` if it supplies nothing there."""
    node: Any = data
    for part in loc:
        if isinstance(node, Mapping):
            if part not in node:
                return None
            node = node[part]
        elif isinstance(node, list | tuple):
            if not isinstance(part, int) or not 0 <= part < len(node):
                return None
            node = node[part]
        else:
            # A single value that validation expanded, e.g. "BTCUSDT,7x" into a list.
            return _Found(value=node, exact=False)
    return _Found(value=node, exact=True)


def _starts(path: tuple[Any, ...], prefix: tuple[Any, ...]) -> bool:
    """Return whether ``path`` begins with ``prefix``."""
    return path[: len(prefix)] == prefix


def _is_secret(settings_cls: type[BaseModel], loc: KeyPath, origins: Origins) -> bool:
    """Return whether ``loc`` holds a secret, whose value must never be shown."""
    if any(_starts(loc, path) for path in origins.credential_files.values()):
        return True
    annotation: Any = settings_cls
    for part in loc:
        if _mentions_secret(annotation):
            return True
        model = _model_in(annotation)
        if model is not None and isinstance(part, str) and part in model.model_fields:
            annotation = model.model_fields[part].annotation
    return _mentions_secret(annotation)


def _mentions_secret(annotation: Any) -> bool:
    """Return whether a secret type occurs in ``annotation`` (not looking into models)."""
    if isinstance(annotation, type) and issubclass(annotation, SecretStr | SecretBytes):
        return True
    return any(_mentions_secret(arg) for arg in get_args(annotation))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """Return the model class in ``annotation`` (e.g. in ``Model | None``), if there is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        model = _model_in(arg)
        if model is not None:
            return model
    return None
