"""When the periodic checkpoint is due: off the whole seconds where bars close."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pairwatch.daemon.maintenance import checkpoint_delay

T0 = 1_700_000_000_000  # a whole second (epoch ms)


@pytest.mark.parametrize(
    ("offset", "every", "expected"),
    [
        (550, 1.0, 0.95),  # 13.55 s → 14.5 s
        (400, 1.0, 1.1),
        (500, 1.0, 1.0),
        (999, 1.0, 0.501),
        (0, 1.0, 0.5),
        (550, 5.0, 4.95),
        (550, 0.25, 0.25),  # below a second: as configured
    ],
)
def test_the_checkpoint_is_moved_to_half_past_a_second(
    offset: int, every: float, expected: float
) -> None:
    assert checkpoint_delay(T0 + offset, every) == pytest.approx(expected)


@given(st.integers(0, 10**13), st.integers(1, 3600))
def test_a_checkpoint_lands_on_a_half_second_within_half_a_second_of_its_interval(
    now: int, every: int
) -> None:
    delay = checkpoint_delay(now, every)
    due = now + round(delay * 1000)
    assert due % 1000 == 500
    assert every - 0.5 <= delay < every + 0.5
