"""Timeframe labels and which sets of them nest."""

from __future__ import annotations

import pytest

from pairwatch.analytics.timeframes import bar_open, parse_timeframe, timeframe_set


@pytest.mark.parametrize(
    ("label", "length"),
    [("1s", 1_000), ("15s", 15_000), ("1m", 60_000), ("5m", 300_000), ("4h", 14_400_000),
     ("1d", 86_400_000), ("90s", 90_000)],
)  # fmt: skip
def test_labels_parse_to_milliseconds(label: str, length: int) -> None:
    assert parse_timeframe(label) == length


@pytest.mark.parametrize("label", ["", "0s", "1", "m", "1M", "1.5m", "-1s", "1w", " 1m"])
def test_bad_labels_are_refused_with_the_label_named(label: str) -> None:
    with pytest.raises(ValueError, match="invalid timeframe"):
        parse_timeframe(label)


def test_bars_are_aligned_to_the_epoch() -> None:
    assert bar_open(1_723_161_255_342, 60_000) == 1_723_161_240_000
    assert bar_open(1_723_161_240_000, 60_000) == 1_723_161_240_000


def test_a_set_is_sorted_and_must_nest() -> None:
    assert timeframe_set(["5m", "1s", "1m"]) == [("1s", 1_000), ("1m", 60_000), ("5m", 300_000)]
    with pytest.raises(ValueError, match="not a whole multiple"):
        timeframe_set(["1m", "90s"])
    with pytest.raises(ValueError, match="'3s' is not a whole multiple of the shortest"):
        timeframe_set(["2s", "3s"])
    with pytest.raises(ValueError, match="'1m' and '60s' are the same timeframe"):
        timeframe_set(["1m", "60s"])
    with pytest.raises(ValueError, match="at least one"):
        timeframe_set([])
