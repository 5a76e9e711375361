"""Validated value types of the settings: symbols, timeframes, URLs, paths, retention."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, PlainSerializer
from pydantic_settings import NoDecode

from pairwatch.analytics.timeframes import parse_timeframe, timeframe_set
from pairwatch.config.durations import format_duration, parse_duration

_SYMBOL = re.compile(r"[A-Z0-9]{2,30}")


def _split_list(value: object) -> object:
    """Accept a list written as JSON (``["a","b"]``) or comma-separated (``a,b``)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON list: {exc.msg} (column {exc.colno})") from None
        except RecursionError:  # json's C decoder stops at the interpreter's depth limit
            raise ValueError("invalid JSON list: nested too deeply") from None
    return [item.strip() for item in text.split(",")] if text else []


split_list = _split_list
"""Public name of the list reader (JSON or comma-separated), for other settings modules."""


def _symbol(value: str) -> str:
    """Return ``value`` upper-cased if it is a valid exchange symbol."""
    symbol = value.strip().upper()
    if not _SYMBOL.fullmatch(symbol):
        raise ValueError(
            f"invalid symbol {value!r}: expected 2 to 30 letters or digits, e.g. BTCUSDT"
        )
    return symbol


def _unique_symbols(symbols: tuple[str, ...]) -> tuple[str, ...]:
    """Return ``symbols`` if it is non-empty and names no symbol twice."""
    if not symbols:
        raise ValueError("list at least one symbol")
    repeated = sorted({symbol for symbol in symbols if symbols.count(symbol) > 1})
    if repeated:
        raise ValueError(f"duplicate symbol {', '.join(repeated)}")
    return symbols


def _timeframe(label: str) -> str:
    """Return ``label`` if ``parse_timeframe`` accepts it."""
    parse_timeframe(label)
    return label


def _unique_timeframes(labels: tuple[str, ...]) -> tuple[str, ...]:
    """Return ``labels`` if they form a usable set (see ``timeframe_set``)."""
    timeframe_set(labels)
    return labels


def _upper(value: object) -> object:
    """Upper-case strings so that ``info`` and ``INFO`` both name a level."""
    return value.upper() if isinstance(value, str) else value


def _path(value: object) -> object:
    """Reject empty paths and expand ``~``."""
    if isinstance(value, str | Path):
        if str(value).strip() == "":
            raise ValueError("path must not be empty")
        return Path(value).expanduser()
    return value


def _parse_retention(value: object) -> timedelta | None:
    """Return how long to keep rows; ``None`` (from ``0`` or ``"forever"``) keeps them forever."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "forever"):
        return None
    kept = parse_duration(value)
    return kept if kept else None


def _format_retention(value: timedelta | None) -> str:
    """Return ``value`` as written in the TOML file."""
    return "forever" if value is None else format_duration(value)


Retention = Annotated[
    timedelta | None,
    BeforeValidator(_parse_retention),
    PlainSerializer(_format_retention, return_type=str, when_used="json"),
]
"""How long to keep rows: a duration, or ``None`` (written ``0`` or ``"forever"``) for ever."""


def _blank_to_none(value: object) -> object:
    """Treat an empty string (e.g. ``PAIRWATCH_FEED__BASE_URL=``) as unset."""
    return None if isinstance(value, str) and not value.strip() else value


def _websocket_url(url: str) -> str:
    """Return ``url`` if it is ws:// or wss:// with a host and no query or fragment."""
    parts = urlsplit(url)
    try:
        # .port raises ValueError for a port that is not a number in 0..65535.
        valid = parts.scheme in ("ws", "wss") and bool(parts.hostname) and parts.port != 0
    except ValueError:
        valid = False
    if not valid or parts.query or parts.fragment:
        raise ValueError(
            f"invalid URL {url!r}: expected ws:// or wss://, a host, an optional port and path, "
            "e.g. wss://stream.binance.com:9443"
        )
    return url


Symbol = Annotated[str, AfterValidator(_symbol)]
Timeframe = Annotated[str, AfterValidator(_timeframe)]
FilePath = Annotated[Path, BeforeValidator(_path)]
# Kept as a string: the client appends /stream?streams=... to it.
WebsocketUrl = Annotated[str, AfterValidator(_websocket_url)]

WebsocketUrlOrNone = Annotated[WebsocketUrl | None, BeforeValidator(_blank_to_none)]
"""A ws:// or wss:// URL, or ``None`` (also written as an empty string)."""

# NoDecode: pydantic-settings hands the raw variable to _split_list instead of requiring JSON.
SymbolList = Annotated[
    tuple[Symbol, ...], NoDecode, BeforeValidator(_split_list), AfterValidator(_unique_symbols)
]
"""Unique, upper-cased exchange symbols; also read from ``"A,B"`` or ``'["A","B"]'``."""

TimeframeList = Annotated[
    tuple[Timeframe, ...],
    NoDecode,
    BeforeValidator(_split_list),
    AfterValidator(_unique_timeframes),
]
"""Timeframe labels of distinct lengths; also read from ``"1s,1m"`` or ``'["1s","1m"]'``."""

LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)]
"""A logging level name, case-insensitive."""
