"""Timeframe labels such as ``1s``, ``1m``, ``5m`` or ``4h`` and their lengths."""

from __future__ import annotations

import re
from collections.abc import Iterable

_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_LABEL = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")


def parse_timeframe(label: str) -> int:
    """Return the length in milliseconds of a timeframe label like ``5m``.

    Bars are aligned to the Unix epoch (UTC), so a length that divides a day
    starts its bars at UTC midnight. Raises ``ValueError`` for anything else.
    """
    match = _LABEL.match(label)
    if match is None:
        raise ValueError(
            f"invalid timeframe {label!r}: expected a whole number and a unit s, m, h or d "
            "(e.g. 1s, 1m, 5m, 1h)"
        )
    return int(match.group(1)) * _UNITS_MS[match.group(2)]


def bar_open(ts_ms: int, length_ms: int) -> int:
    """Return the open time of the bar of length ``length_ms`` containing ``ts_ms``."""
    return ts_ms - ts_ms % length_ms


def timeframe_set(labels: Iterable[str]) -> list[tuple[str, int]]:
    """Return ``(label, length)`` shortest first, for a usable set of timeframes.

    Every length must be a whole multiple of the shortest: late trades are judged on the
    shortest timeframe's bars, which then nest inside every other bar. ``ValueError``
    says what is wrong otherwise (empty, unparsable, two labels of one length).
    """
    seen: dict[int, str] = {}
    for label in labels:
        length = parse_timeframe(label)
        if length in seen:
            raise ValueError(f"{seen[length]!r} and {label!r} are the same timeframe")
        seen[length] = label
    if not seen:
        raise ValueError("list at least one timeframe")
    shortest = min(seen)
    for length, label in sorted(seen.items()):
        if length % shortest:
            raise ValueError(
                f"{label!r} is not a whole multiple of the shortest timeframe "
                f"{seen[shortest]!r}, so its bars would not nest"
            )
    return [(label, length) for length, label in sorted(seen.items())]
