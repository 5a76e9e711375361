"""Fault schedules fire where specified; the malformed corpus is really malformed."""

from __future__ import annotations

import json

import pytest

from pairwatch.daemon.sources.simulator_faults import (
    Fault,
    FaultOptions,
    FaultSchedule,
    ReconnectPolicy,
    malformed_frames,
)


def fire_points(schedule: FaultSchedule, number: int, upto: int) -> list[tuple[int, str]]:
    """Walk a connection's message count like the sender does; return (count, kind) fired."""
    faults = schedule.for_connection(number)
    fired = []
    sent = 0
    while sent <= upto:
        stop = faults.next_stop()
        if stop is None or stop > upto:
            break
        sent = stop
        fired += [(sent, f.kind) for f in faults.take(sent)]
    return fired


def test_one_shot_fault_fires_once_for_the_whole_simulator() -> None:
    schedule = FaultSchedule((Fault("drop", after=10),))
    assert fire_points(schedule, 1, 100) == [(10, "drop")]
    assert fire_points(schedule, 2, 100) == []


def test_every_n_fault_repeats_on_each_connection() -> None:
    schedule = FaultSchedule((Fault("stall", after=5, every=20),))
    assert fire_points(schedule, 1, 50) == [(5, "stall"), (25, "stall"), (45, "stall")]
    assert fire_points(schedule, 2, 30) == [(5, "stall"), (25, "stall")]


def test_faults_can_target_one_connection_and_share_a_count() -> None:
    schedule = FaultSchedule(
        (Fault("malformed", after=3, connection=2), Fault("close", after=3, connection=2))
    )
    assert fire_points(schedule, 1, 10) == []
    assert fire_points(schedule, 2, 10) == [(3, "malformed"), (3, "close")]


def test_fault_at_zero_fires_before_any_message() -> None:
    faults = FaultSchedule((Fault("shutdown", after=0),)).for_connection(1)
    assert faults.next_stop() == 0
    assert [f.kind for f in faults.take(0)] == ["shutdown"]
    assert faults.next_stop() is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Fault("explode", after=1), "unknown fault kind"),  # type: ignore[arg-type]
        (lambda: Fault("drop", after=-1), "after"),
        (lambda: Fault("drop", after=1, every=0), "every"),
        (lambda: Fault("drop", after=1, connection=0), "connection"),
        (lambda: ReconnectPolicy("rewind"), "reconnect mode"),  # type: ignore[arg-type]
        (lambda: FaultOptions(refuse_first=-1), "refuse"),
    ],
)
def test_invalid_fault_settings_are_rejected(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("stream", "market"), [("btcusdt@trade", "spot"), ("ethusdt@aggTrade", "usdm")]
)
def test_every_corpus_frame_fails_a_strict_trade_check(stream: str, market: str) -> None:
    corpus = malformed_frames(stream, market, last_id=42, now_ms=1_700_000_000_000)
    labels = [label for label, _ in corpus]
    assert len(set(labels)) == len(labels)
    assert {"broken_json", "price_nan", "price_inf", "unknown_symbol", "binary_frame"} <= set(
        labels
    )
    id_key = "a" if stream.endswith("aggTrade") else "t"
    for label, frame in corpus:
        if isinstance(frame, bytes):
            assert label == "binary_frame"
            with pytest.raises(UnicodeDecodeError):
                frame.decode("utf-8")
            continue
        try:
            message = json.loads(frame)
        except ValueError:
            assert label == "broken_json"
            continue
        assert not is_valid_trade(message, stream, id_key), label


def is_valid_trade(message: object, stream: str, id_key: str) -> bool:
    """A strict reading of a trade frame, as a client should do it."""
    if not isinstance(message, dict) or message.get("stream") != stream:
        return False
    data = message.get("data")
    if not isinstance(data, dict):
        return False
    symbol = stream.partition("@")[0].upper()
    try:
        price, qty = float(data["p"]), float(data["q"])
    except (KeyError, TypeError, ValueError):
        return False
    if not isinstance(data["p"], str) or not isinstance(data["q"], str):
        return False
    trade_id, t = data.get(id_key), data.get("T")
    return (
        data.get("s") == symbol
        and 0 < price < 1e12
        and 0 < qty < 1e12
        and isinstance(trade_id, int)
        and 0 <= trade_id < 2**63
        and isinstance(t, int)
        and 0 < t < 2**53
    )


def test_valid_base_payload_passes_the_check() -> None:
    # The corpus mutates this payload; it must itself be a valid trade of the stream.
    corpus = dict(malformed_frames("btcusdt@trade", "spot", 42, 1_700_000_000_000))
    valid = json.loads(corpus["price_zero"].replace('"p":"0"', '"p":"100.00000000"'))  # type: ignore[union-attr]
    assert is_valid_trade(valid, "btcusdt@trade", "t")
    assert valid["data"]["t"] == 42
