"""Duration parsing and formatting: seconds or strings like 30s, 5m, 23h30m, 500ms."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from pairwatch.config.durations import (
    Duration,
    PositiveDuration,
    format_duration,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("23h30m", timedelta(hours=23, minutes=30)),
        ("1h30m15s", timedelta(hours=1, minutes=30, seconds=15)),
        ("1d2h3m4s5ms6us", timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=5006)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        (" 30s ", timedelta(seconds=30)),
        ("1.5s", timedelta(milliseconds=1500)),
        ("0.5h", timedelta(minutes=30)),
        ("0s", timedelta(0)),
        ("30", timedelta(seconds=30)),
        ("2.25", timedelta(seconds=2.25)),
        ("0", timedelta(0)),
    ],
)
def test_parse_duration_reads_strings(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30, timedelta(seconds=30)),
        (0, timedelta(0)),
        (1.5, timedelta(milliseconds=1500)),
        (0.001, timedelta(milliseconds=1)),
        (timedelta(minutes=3), timedelta(minutes=3)),
    ],
)
def test_parse_duration_reads_seconds_and_timedeltas(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5x", "invalid duration '5x': expected e.g. 30s, 5m, 2h, 7d"),
        ("", "invalid duration '': expected e.g. 30s, 5m, 2h, 7d"),
        ("s", "invalid duration 's': expected e.g. 30s, 5m, 2h, 7d"),
        ("5 minutes", "invalid duration '5 minutes': expected e.g. 30s, 5m, 2h, 7d"),
        ("1h30", "invalid duration '1h30': expected e.g. 30s, 5m, 2h, 7d"),
        (
            "30m1h",
            "invalid duration '30m1h': units must appear once each, largest first "
            "(d, h, m, s, ms, us)",
        ),
        (
            "1m1m",
            "invalid duration '1m1m': units must appear once each, largest first "
            "(d, h, m, s, ms, us)",
        ),
        ("-5s", "invalid duration '-5s': must not be negative"),
        ("-1", "invalid duration '-1': must not be negative"),
        (-1, "invalid duration -1: must not be negative"),
        (-0.5, "invalid duration -0.5: must not be negative"),
        (timedelta(seconds=-1), "invalid duration -1 day, 23:59:59: must not be negative"),
        (float("nan"), "invalid duration nan: must be a finite number of seconds"),
        (float("inf"), "invalid duration inf: must be a finite number of seconds"),
        (10**20, "invalid duration 100000000000000000000: too large"),
        ("99999999999d", "invalid duration '99999999999d': too large"),
        (True, "invalid duration True: expected e.g. 30s, 5m, 2h, 7d"),
        (None, "invalid duration None: expected e.g. 30s, 5m, 2h, 7d"),
        ([30], "invalid duration [30]: expected e.g. 30s, 5m, 2h, 7d"),
    ],
)
def test_parse_duration_rejects_with_clear_message(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=r".*") as caught:
        parse_duration(value)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(seconds=30), "30s"),
        (timedelta(minutes=1), "1m"),
        (timedelta(hours=23, minutes=30), "23h30m"),
        (timedelta(days=7), "7d"),
        (timedelta(days=1, seconds=1, microseconds=1), "1d1s1us"),
    ],
)
def test_format_duration_writes_shortest_form(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


def test_format_duration_rejects_negative() -> None:
    with pytest.raises(ValueError, match="cannot format negative duration"):
        format_duration(timedelta(seconds=-1))


@given(st.timedeltas(min_value=timedelta(0)))
def test_format_then_parse_round_trips(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@given(
    st.lists(st.integers(min_value=0, max_value=10_000), min_size=6, max_size=6),
    st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_any_ordered_combination_of_units_parses(counts: list[int], used: list[bool]) -> None:
    units = [("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000)]
    units += [("s", 1_000_000), ("ms", 1_000), ("us", 1)]
    chosen = [
        (count, unit, size)
        for count, (unit, size), keep in zip(counts, units, used, strict=True)
        if keep
    ]
    if not chosen:
        return
    text = "".join(f"{count}{unit}" for count, unit, _ in chosen)
    expected = timedelta(microseconds=sum(count * size for count, _, size in chosen))
    assert parse_duration(text) == expected


class _Model(BaseModel):
    any_length: Duration = timedelta(seconds=1)
    positive: PositiveDuration = timedelta(seconds=1)


def test_duration_type_validates_and_serialises_in_models() -> None:
    model = _Model.model_validate({"any_length": "0s", "positive": "1h30m"})
    assert model.any_length == timedelta(0)
    assert model.positive == timedelta(hours=1, minutes=30)
    assert model.model_dump(mode="json") == {"any_length": "0s", "positive": "1h30m"}
    assert model.model_dump() == {"any_length": timedelta(0), "positive": timedelta(minutes=90)}


def test_positive_duration_rejects_zero_and_duration_errors_name_the_value() -> None:
    with pytest.raises(ValidationError) as caught:
        _Model.model_validate({"any_length": "5x", "positive": 0})
    errors = {error["loc"]: str(error["ctx"]["error"]) for error in caught.value.errors()}
    assert errors == {
        ("any_length",): "invalid duration '5x': expected e.g. 30s, 5m, 2h, 7d",
        ("positive",): "must be greater than 0",
    }
