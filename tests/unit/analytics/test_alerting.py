"""The alert lifecycle: scenarios with exact transitions, and properties under random input."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pairwatch.analytics.alerting import AlertState, Transition, step
from pairwatch.config.rules import Rule

MIN = 60_000


def rule(**kw: Any) -> Rule:
    base: dict[str, Any] = {
        "name": "z",
        "pair": "ETHUSDT/BTCUSDT",
        "timeframe": "1m",
        "window": 30,
        "when": "abs(zscore) >= 2",
    }
    return Rule.model_validate(base | kw)


def run(r: Rule, zs: list[float], times: list[int] | None = None) -> list[tuple[int, str]]:
    """Return (bar index, transition kind) for a sequence of z-scores."""
    state = AlertState()
    out: list[tuple[int, str]] = []
    for i, z in enumerate(zs):
        at = (i + 1) * MIN if times is None else times[i]
        state, transitions = step(r, state, {"zscore": z}, at)
        out.extend((i, t.kind) for t in transitions)
    return out


def test_fires_at_once_without_for_and_resolves_when_false() -> None:
    assert run(rule(), [0.0, 2.5, 2.1, 1.0, 3.0]) == [
        (1, "firing"), (3, "resolved"), (4, "firing"),
    ]  # fmt: skip


def test_for_bars_needs_that_many_consecutive_bars() -> None:
    r = rule(**{"for": "3 bars"})
    assert run(r, [2.5, 2.5, 1.0, 2.5, 2.5, 2.5, 2.5]) == [
        (0, "pending"), (2, "inactive"), (3, "pending"), (5, "firing"),
    ]  # fmt: skip


def test_for_duration_counts_bar_time_including_jumps() -> None:
    r = rule(**{"for": "2m"})
    times = [MIN, 2 * MIN, 3 * MIN, 10 * MIN]
    assert run(r, [2.5, 2.5, 2.5, 2.5], times) == [(0, "pending"), (2, "firing")]
    # A clock jump while pending: held from the first bar's close to this one's.
    assert run(r, [2.5, 2.5], [MIN, 30 * MIN]) == [(0, "pending"), (1, "firing")]


def test_clear_gives_hysteresis() -> None:
    r = rule(clear="abs(zscore) < 0.5")
    # 1.0 is below the firing threshold but not below the clear threshold: still firing.
    assert run(r, [2.5, 1.0, 1.5, 0.4]) == [(0, "firing"), (3, "resolved")]


def test_keep_firing_for_rides_out_a_flap() -> None:
    r = rule(keep_firing_for="2m")
    assert run(r, [2.5, 1.0, 2.5, 1.0, 1.0, 1.0]) == [
        (0, "firing"), (5, "resolved"),
    ]  # fmt: skip


def test_repeat_every_renotifies_while_firing() -> None:
    r = rule(repeat_every="3m")
    kinds = run(r, [2.5] * 8)
    assert kinds == [(0, "firing"), (3, "repeat"), (6, "repeat")]


def test_crossings_need_the_previous_bar() -> None:
    r = rule(when="zscore crosses_above 2")
    assert run(r, [1.0, 2.5, 2.6, 1.0, 2.0]) == [
        (1, "firing"), (2, "resolved"), (4, "firing"),
    ]  # fmt: skip


def test_no_data_policies() -> None:
    nan = math.nan
    keep = rule()
    assert run(keep, [2.5, nan, nan, 2.5, 0.0]) == [(0, "firing"), (4, "resolved")]
    resolve = rule(no_data="resolve")
    assert run(resolve, [2.5, nan, 2.5]) == [
        (0, "firing"), (1, "resolved"), (2, "firing"),
    ]  # fmt: skip
    alert = rule(no_data="alert")
    # Never before the target had data; then at once (no 'for'), ending when data returns.
    assert run(alert, [nan, nan, 2.5, nan, nan, 0.0]) == [
        (2, "firing"), (3, "no_data"), (5, "data"), (5, "resolved"),
    ]  # fmt: skip
    slow = rule(no_data="alert", **{"for": "2 bars"})
    assert run(slow, [0.0, nan, 0.0, nan, nan, nan]) == [(4, "no_data")]


def test_transitions_carry_the_primary_value_and_threshold() -> None:
    r = rule(when={"all": ["abs(zscore) >= 2", "correlation >= 0.5"]})
    state, out = step(r, AlertState(), {"zscore": -2.5, "correlation": 0.9}, MIN)
    assert out == [Transition("firing", MIN, "zscore", 2.5, 2.0)]  # no "for": no pending
    assert state.phase == "firing"


# Properties under random sequences, clock jumps and missing values.

values = st.one_of(st.floats(-4, 4), st.just(math.nan))
gaps = st.one_of(st.just(MIN), st.integers(1, 100).map(lambda k: k * MIN))


@settings(max_examples=300, deadline=None)
@given(
    zs=st.lists(values, min_size=1, max_size=60),
    dts=st.lists(gaps, min_size=60, max_size=60),
    hold_bars=st.integers(0, 4),
    hold_minutes=st.integers(0, 5),
    use_bars=st.booleans(),
    clear=st.sampled_from([None, 0.5, 1.0]),
    keep=st.integers(0, 4),
    repeat=st.sampled_from([None, 2, 5]),
    no_data=st.sampled_from(["keep", "resolve", "alert"]),
)
def test_the_lifecycle_never_breaks_its_rules(
    zs: list[float],
    dts: list[int],
    hold_bars: int,
    hold_minutes: int,
    use_bars: bool,
    clear: float | None,
    keep: int,
    repeat: int | None,
    no_data: str,
) -> None:
    r = rule(
        **{"for": f"{hold_bars} bars" if use_bars else f"{hold_minutes}m"},
        clear=None if clear is None else f"abs(zscore) < {clear}",
        keep_firing_for=f"{keep}m",
        repeat_every=None if repeat is None else f"{repeat}m",
        no_data=no_data,
    )
    times = [sum(dts[: i + 1]) for i in range(len(zs))]
    state = AlertState()
    firing_since: int | None = None
    last_notice: int | None = None
    held: list[int] = []  # indexes of the current run of bars where the condition held
    for i, (z, at) in enumerate(zip(zs, times, strict=False)):
        holds = None if math.isnan(z) else abs(z) >= 2
        if holds:
            held.append(i)
        elif holds is False:
            held = []
        state, out = step(r, state, {"zscore": z}, at)
        for t in out:
            if t.kind == "firing":
                assert firing_since is None, "fired twice without resolving"
                assert holds is True
                run_start = times[held[0]]
                if use_bars:
                    assert len(held) >= max(hold_bars, 1)
                else:
                    assert at - run_start >= timedelta(minutes=hold_minutes) / timedelta(
                        milliseconds=1
                    )
                firing_since = at
                last_notice = at
            elif t.kind == "repeat":
                assert firing_since is not None
                assert repeat is not None
                assert last_notice is not None
                assert at - last_notice >= repeat * MIN
                last_notice = at
            elif t.kind == "resolved":
                assert firing_since is not None, "resolved while not firing"
                if holds is None:
                    assert no_data == "resolve"
                elif clear is not None:
                    assert abs(z) < clear
                else:
                    assert holds is False
                firing_since = None
        assert (state.phase == "firing") == (firing_since is not None)


def test_repeats_go_on_while_keep_firing_for_runs() -> None:
    # Review fix: an alert waiting out keep_firing_for is still firing, so it repeats.
    r = rule(clear="abs(zscore) < 0.5", keep_firing_for="10m", repeat_every="2m")
    assert run(r, [3.0] + [0.1] * 12) == [
        (0, "firing"), (2, "repeat"), (4, "repeat"), (6, "repeat"), (8, "repeat"),
        (10, "repeat"), (11, "resolved"),
    ]  # fmt: skip


def test_a_resolution_by_clear_is_described_by_clear() -> None:
    r = rule(clear="correlation < 0.5")
    state, _ = step(r, AlertState(), {"zscore": 3.0, "correlation": 0.9}, MIN)
    _, out = step(r, state, {"zscore": 3.0, "correlation": 0.2}, 2 * MIN)
    assert out == [Transition("resolved", 2 * MIN, "correlation", 0.2, 0.5)]
