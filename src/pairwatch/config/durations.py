"""Durations written as ``30s``, ``5m``, ``23h30m`` or ``500ms``, or as a number of seconds."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer

_EXAMPLES = "expected e.g. 30s, 5m, 2h, 7d"

# Largest unit first: a duration names each unit at most once, in this order.
_UNITS_US: dict[str, int] = {
    "d": 86_400_000_000,
    "h": 3_600_000_000,
    "m": 60_000_000,
    "s": 1_000_000,
    "ms": 1_000,
    "us": 1,
}
_ORDER = {unit: rank for rank, unit in enumerate(_UNITS_US)}
# "ms" and "us" must be tried before "m" and "s" or "500ms" would read as 500 minutes.
_COMPONENT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|us|d|h|m|s)")
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


def parse_duration(value: object) -> timedelta:
    """Return the ``timedelta`` written as seconds (a number) or as a string like ``1h30m``.

    Raises ``ValueError`` naming the value and the expected form.
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"invalid duration {value}: must not be negative")
        return value
    if isinstance(value, bool):
        # bool is an int subclass, but ``true`` is never meant as one second.
        raise ValueError(f"invalid duration {value!r}: {_EXAMPLES}")
    if isinstance(value, int | float):
        return _from_seconds(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}: {_EXAMPLES}")
    return _from_text(value)


def _from_seconds(seconds: float) -> timedelta:
    """Return a non-negative, finite number of seconds as a ``timedelta``."""
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise ValueError(f"invalid duration {seconds!r}: must be a finite number of seconds")
    if seconds < 0:
        raise ValueError(f"invalid duration {seconds!r}: must not be negative")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"invalid duration {seconds!r}: too large") from None


def _from_text(text: str) -> timedelta:
    """Return the ``timedelta`` of a string such as ``30``, ``1.5s`` or ``1h30m15s``."""
    stripped = text.strip()
    if stripped.startswith("-"):
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    if _SECONDS.fullmatch(stripped):
        # A bare number, as environment variables deliver it: seconds.
        return _from_us(Decimal(stripped) * _UNITS_US["s"], text)
    total = Decimal(0)
    position = 0
    last_rank = -1
    for match in _COMPONENT.finditer(stripped):
        if match.start() != position:
            break
        rank = _ORDER[match.group(2)]
        if rank <= last_rank:
            raise ValueError(
                f"invalid duration {text!r}: units must appear once each, largest first "
                "(d, h, m, s, ms, us)"
            )
        last_rank = rank
        total += Decimal(match.group(1)) * _UNITS_US[match.group(2)]
        position = match.end()
    if position == 0 or position != len(stripped):
        raise ValueError(f"invalid duration {text!r}: {_EXAMPLES}")
    return _from_us(total, text)


def _from_us(microseconds: Decimal, text: str) -> timedelta:
    """Return ``microseconds`` (rounded to a whole number) as a ``timedelta``."""
    try:
        return timedelta(microseconds=int(microseconds.to_integral_value()))
    except OverflowError:
        raise ValueError(f"invalid duration {text!r}: too large") from None


def format_duration(value: timedelta) -> str:
    """Return ``value`` in the shortest form ``parse_duration`` reads back, e.g. ``23h30m``."""
    if value < timedelta(0):
        raise ValueError(f"cannot format negative duration {value}")
    remaining = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if remaining == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in _UNITS_US.items():
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _positive(value: timedelta) -> timedelta:
    """Return ``value`` if it is longer than zero."""
    if value <= timedelta(0):
        raise ValueError("must be greater than 0")
    return value


_serialize = PlainSerializer(format_duration, return_type=str, when_used="json")

Duration = Annotated[timedelta, BeforeValidator(parse_duration), _serialize]
"""A non-negative duration; reads seconds or ``30s``/``5m``/``2h``/``7d``/``1h30m``."""

PositiveDuration = Annotated[
    timedelta, BeforeValidator(parse_duration), AfterValidator(_positive), _serialize
]
"""A duration longer than zero."""
