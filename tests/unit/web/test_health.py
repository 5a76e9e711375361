"""The /healthz decision: a pure function of the readings and ``now``, case by case."""

from __future__ import annotations

import dataclasses
import math

import pytest

from pairwatch.web.health import (
    STARTUP_GRACE_S,
    FeedReading,
    HealthReadings,
    WriterReading,
    decide,
)

START = 1_700_000_000_000
LATER = START + 60_000  # a minute after the start: past the 30 s grace
EARLY = START + 5_000  # inside the grace
UP = FeedReading(connection=0, streams=2, connected=True)
DOWN = FeedReading(connection=1, streams=3, connected=False)
WRITER = WriterReading(healthy=True, last_error=None, last_commit_ms=LATER - 250, queued_rows=7)
LOCKED = WriterReading(
    healthy=False,
    last_error="OperationalError: database is locked",
    last_commit_ms=LATER - 9_000,
    queued_rows=120,
)
HEALTHY = HealthReadings(
    version="9.9.9",
    source="binance spot trade",
    started_ms=START,
    ready=True,
    stopping=False,
    feeds=(UP, dataclasses.replace(DOWN, connected=True)),
    writer=WRITER,
    last_trade_ms={"BTCUSDT": LATER - 1_500, "ETHUSDT": None},
)
FEED_DOWN = "feed connection 1 is not connected"
NOT_READY = "start-up has not finished"
NO_WRITER = "the store writer is not running"
WRITER_LOCKED = "the store writer is unhealthy: OperationalError: database is locked"


def test_a_healthy_daemon_answers_200_ok_with_every_reading() -> None:
    status, body = decide(HEALTHY, LATER)
    assert status == 200
    assert body == {
        "status": "ok",
        "problems": [],
        "waiting": [],
        "version": "9.9.9",
        "uptime_s": 60.0,
        "source": "binance spot trade",
        "ready": True,
        "feeds": [
            {"connection": 0, "streams": 2, "connected": True},
            {"connection": 1, "streams": 3, "connected": True},
        ],
        "writer": {
            "healthy": True,
            "last_error": None,
            "last_commit_age_s": 0.25,
            "queued_rows": 7,
        },
        "last_trade_age_s": {"BTCUSDT": 1.5, "ETHUSDT": None},
        "loop_lag_s": None,
    }


@pytest.mark.parametrize(
    ("change", "now", "status", "state", "problems", "waiting"),
    [
        # A feed that is down: waited for during the grace, a failure after it.
        ({"feeds": (UP, DOWN)}, LATER, 503, "failing", [FEED_DOWN], []),
        ({"feeds": (UP, DOWN)}, EARLY, 200, "starting", [], [FEED_DOWN]),
        # Still starting: no writer, no feeds yet.
        (
            {"ready": False, "writer": None, "feeds": ()},
            EARLY,
            200,
            "starting",
            [],
            [NOT_READY, NO_WRITER],
        ),
        (
            {"ready": False, "writer": None, "feeds": ()},
            LATER,
            503,
            "failing",
            [NOT_READY, NO_WRITER],
            [],
        ),
        # An unhealthy writer fails at once, grace or not, with its last error.
        ({"writer": LOCKED}, LATER, 503, "failing", [WRITER_LOCKED], []),
        ({"writer": LOCKED}, EARLY, 503, "failing", [WRITER_LOCKED], []),
        (
            {"writer": dataclasses.replace(LOCKED, last_error=None)},
            LATER,
            503,
            "failing",
            ["the store writer is unhealthy: its thread has stopped"],
            [],
        ),
        # Shutting down: 503 whatever else holds.
        ({"stopping": True}, LATER, 503, "failing", ["shutting down"], []),
        # Several problems are all listed, in a fixed order.
        (
            {"stopping": True, "writer": LOCKED, "feeds": (UP, DOWN)},
            LATER,
            503,
            "failing",
            ["shutting down", WRITER_LOCKED, FEED_DOWN],
            [],
        ),
        # Failing and waiting together: a failure decides the status.
        ({"writer": LOCKED, "feeds": (UP, DOWN)}, EARLY, 503, "failing", [WRITER_LOCKED],
         [FEED_DOWN]),
        # An old last trade or commit is shown, never a failure on its own (the feed's
        # watchdog reconnects a silent stream; a quiet feed commits nothing).
        (
            {"last_trade_ms": {"BTCUSDT": START}, "writer": dataclasses.replace(
                WRITER, last_commit_ms=START)},
            LATER,
            200,
            "ok",
            [],
            [],
        ),
    ],
)  # fmt: skip
def test_the_decision_table(
    change: dict[str, object],
    now: int,
    status: int,
    state: str,
    problems: list[str],
    waiting: list[str],
) -> None:
    got, body = decide(dataclasses.replace(HEALTHY, **change), now)  # type: ignore[arg-type]
    assert (got, body["status"], body["problems"], body["waiting"]) == (
        status,
        state,
        problems,
        waiting,
    )


def test_the_grace_ends_exactly_startup_grace_s_after_the_start() -> None:
    readings = dataclasses.replace(HEALTHY, feeds=(DOWN,), startup_grace_s=10.0)
    assert decide(readings, START + 9_999)[0] == 200
    assert decide(readings, START + 10_000)[0] == 503
    assert STARTUP_GRACE_S == 30.0
    assert decide(dataclasses.replace(readings, startup_grace_s=STARTUP_GRACE_S),
                  START + 29_999)[0] == 200  # fmt: skip


def test_a_zero_grace_fails_a_down_feed_at_once() -> None:
    readings = dataclasses.replace(HEALTHY, feeds=(DOWN,), startup_grace_s=0.0)
    assert decide(readings, START)[0] == 503


def test_ages_and_uptime_never_go_negative_when_the_clock_steps_back() -> None:
    status, body = decide(HEALTHY, START - 5_000)
    assert body["uptime_s"] == 0.0
    assert body["last_trade_age_s"] == {"BTCUSDT": 0.0, "ETHUSDT": None}
    assert body["writer"] == {
        "healthy": True,
        "last_error": None,
        "last_commit_age_s": 0.0,
        "queued_rows": 7,
    }
    assert status == 200  # inside the grace again: nothing is failing anyway


def test_a_writer_that_never_committed_has_no_commit_age() -> None:
    readings = dataclasses.replace(HEALTHY, writer=dataclasses.replace(WRITER, last_commit_ms=None))
    _, body = decide(readings, LATER)
    assert body["writer"]["last_commit_age_s"] is None  # type: ignore[index]


def test_a_measured_loop_lag_is_reported() -> None:
    _, body = decide(dataclasses.replace(HEALTHY, loop_lag_s=0.012), LATER)
    assert body["loop_lag_s"] == 0.012


@pytest.mark.parametrize("grace", [-1.0, math.nan, math.inf])
def test_an_invalid_grace_is_refused(grace: float) -> None:
    with pytest.raises(ValueError, match="startup_grace_s must be finite and >= 0"):
        dataclasses.replace(HEALTHY, startup_grace_s=grace)
