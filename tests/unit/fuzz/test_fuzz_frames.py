"""Fuzzing the websocket frame decoder: any frame is a trade or a counted drop, never a crash.

``FrameDecoder`` (daemon/sources/wire.py) is what every live and replayed frame goes
through; ``Pipeline.on_frame`` counts each rejection by reason in ``Health``, as /status
and /metrics show them. Hypothesis throws arbitrary text, bytes and JSON at it; the corpus
below holds the classic hostile inputs, each with the reason it must be counted under.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pairwatch.daemon.health import Health
from pairwatch.daemon.pipeline import Pipeline
from pairwatch.daemon.sources import wire
from pairwatch.daemon.sources.wire import SERVER_SHUTDOWN, FrameDecoder
from pairwatch.events import Bar, Gap, Trade
from unit.fuzz.hostile import MB, peak_memory

T0 = 1_700_000_000_000
REASONS = {
    value
    for name, value in vars(wire).items()
    if name.isupper() and isinstance(value, str) and name != "SERVER_SHUTDOWN"
}
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TRADE: dict[str, Any] = {
    "stream": "btcusdt@trade",
    "data": {
        "e": "trade",
        "E": T0,
        "T": T0,
        "s": "BTCUSDT",
        "t": 1,
        "p": "100.5",
        "q": "0.1",
        "m": True,
    },
}


def frame(**data: Any) -> str:
    return json.dumps({**TRADE, "data": {**TRADE["data"], **data}})


def raw_field(name: str, text: str) -> str:
    """Return the trade frame with ``name``'s JSON value replaced by ``text`` verbatim."""
    return frame(**{name: "@@"}).replace('"@@"', text)


class NullWriter:
    def put_bars(self, bars: Sequence[Bar]) -> None: ...
    def put_ticks(self, trades: Sequence[Trade]) -> None: ...
    def put_gaps(self, gaps: Sequence[Gap]) -> None: ...
    def checkpoint(
        self, bars: Sequence[Bar], market: str, stream: str, states: Sequence[tuple[str, int, int]]
    ) -> None: ...


def pipeline() -> tuple[Pipeline, Health]:
    health = Health()
    stage = Pipeline(
        symbols=["BTCUSDT"],
        timeframes=[("1m", 60_000)],
        market="spot",
        stream="trade",
        writer=NullWriter(),
        health=health,
        max_skew_ms=300_000,
    )
    return stage, health


def check(result: Trade | str) -> None:
    assert type(result) is Trade or result == SERVER_SHUTDOWN or result in REASONS, result


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


@FUZZ
@given(raw=st.text(max_size=300) | st.binary(max_size=300))
def test_any_text_or_bytes_is_a_trade_or_a_reason(raw: str | bytes) -> None:
    check(FrameDecoder(["BTCUSDT"], max_skew_ms=300_000).decode(raw, T0))


@FUZZ
@given(
    changes=st.dictionaries(
        st.sampled_from(["e", "E", "T", "s", "t", "p", "q", "m", "X", "a", "f", "l", "zz"]), _json
    ),
    stream=st.sampled_from(["btcusdt@trade", "btcusdt@aggTrade", "", "x"]),
)
def test_any_field_values_are_a_trade_or_a_reason(changes: dict[str, Any], stream: str) -> None:
    text = json.dumps({"stream": stream, "data": {**TRADE["data"], **changes}})
    check(FrameDecoder(None, max_skew_ms=300_000).decode(text, T0))
    check(FrameDecoder(None).decode(text.encode(), T0))


@FUZZ
@given(frames=st.lists(st.text(max_size=80) | st.binary(max_size=40), max_size=20))
def test_every_frame_is_counted_once_by_the_pipeline(frames: list[str | bytes]) -> None:
    stage, health = pipeline()
    for raw in frames:
        stage.on_frame(raw, T0)
    assert health.frames == len(frames)
    assert health.accepted + sum(health.rejected.values()) <= len(frames)
    assert set(health.rejected) <= REASONS | {"duplicate", "late"}


HOSTILE: dict[str, tuple[str | bytes, str]] = {
    "price 1e400 as a string": (frame(p="1e400"), "bad_field"),
    "price 1e400 as a number": (raw_field("p", "1e400"), "bad_field"),
    "price of 5,000 digits": (raw_field("p", "9" * 5000), "bad_field"),
    "trade id of 5,000 digits": (raw_field("t", "9" * 5000), "bad_field"),
    "event time of 5,000 digits": (raw_field("E", "9" * 5000), "bad_field"),
    "price 'NaN'": (frame(p="NaN"), "bad_price"),
    "price 'Infinity'": (frame(p="Infinity"), "bad_price"),
    "quantity '-Infinity'": (frame(q="-Infinity"), "bad_qty"),
    "bare NaN literal": (raw_field("p", "NaN"), "malformed_json"),
    "10,000 nested lists in the data": (raw_field("p", "[" * 10_000 + "]" * 10_000), "bad_field"),
    "10,000 nested lists in an unknown key": (
        '{"stream":"x","pad":' + "[" * 10_000 + "]" * 10_000 + ',"data":{}}',
        "malformed_json",
    ),
    "10,000 nested objects": (
        '{"stream":"x","data":' + '{"a":' * 10_000 + "1" + "}" * 10_001,
        "malformed_json",
    ),
    "a million open brackets": ("[" * 1_000_000, "bad_field"),
    "NUL inside the symbol": (frame(s="BTC\x00USDT"), "unknown_symbol"),
    "raw NUL byte": (frame().replace("BTCUSDT", "BTC\x00USDT"), "malformed_json"),
    "duplicate price key, last one negative": (frame()[:-2] + ', "p": "-5"}}', "bad_price"),
    "lone surrogate escape": (frame().replace("BTCUSDT", "\\ud800"), "malformed_json"),
    "empty frame": ("", "malformed_json"),
    "binary frame": (b"\x00\xff" * 10, "binary_frame"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_frames_are_counted_drops(name: str) -> None:
    raw, reason = HOSTILE[name]
    stage, health = pipeline()
    stage.on_frame(raw, T0)
    assert (health.frames, health.accepted, dict(health.rejected)) == (1, 0, {reason: 1})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (frame().encode().replace(b"BTCUSDT", b"BTC\xff\xfeUSDT"), "malformed_json"),
        (
            b'{"stream":"x","pad":' + b"[" * 10_000 + b"]" * 10_000 + b',"data":{}}',
            "malformed_json",
        ),
    ],
)
def test_hostile_bytes_given_to_the_decoder_are_reasons(raw: bytes, reason: str) -> None:
    # Review fix: non-UTF-8 bytes raised UnicodeDecodeError and deep nesting RecursionError.
    assert FrameDecoder(["BTCUSDT"]).decode(raw, T0) == reason


@pytest.mark.parametrize(
    "raw",
    [
        '{"stream":"' + "a" * (10 * MB) + '","data":{}}',
        frame(s="A" * (10 * MB)),
        '{"stream":"x","data":{"e":"trade","pad":[' + "1," * (5 * MB) + "1]}}",
    ],
    ids=["10 MB stream name", "10 MB symbol", "10 MB list of numbers"],
)
def test_a_10_mb_frame_is_a_counted_drop_in_bounded_memory(raw: str) -> None:
    stage, health = pipeline()
    _, peak = peak_memory(lambda: stage.on_frame(raw, T0))
    assert sum(health.rejected.values()) == 1
    assert peak < 200 * MB, f"peak {peak / MB:.0f} MB"
