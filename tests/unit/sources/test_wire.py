"""Frame decoding and validation against a corpus of good and hostile frames."""

from __future__ import annotations

import json

import pytest

from pairwatch.daemon.sources.wire import SERVER_SHUTDOWN, FrameDecoder
from pairwatch.events import Trade

SPOT_TRADE = (
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT",'
    '"t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}'
)
USDM_TRADE = (
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161256322,"T":1723161256322,'
    '"s":"BTCUSDT","t":5266583935,"p":"61800.30","q":"0.006","X":"MARKET","m":false}}'
)
AGG_TRADE = (
    '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1617566591315,"s":"BTCUSDT",'
    '"a":665076760,"p":"58001.03000000","q":"0.08620500","f":745522877,"l":745522879,'
    '"T":1617566591314,"m":true,"M":true}}'
)


def decoder(**kwargs: object) -> FrameDecoder:
    return FrameDecoder({"BTCUSDT", "ETHUSDT"}, **kwargs)  # type: ignore[arg-type]


def test_spot_trade_becomes_a_typed_trade() -> None:
    result = decoder().decode(SPOT_TRADE, 1723161255400)
    assert result == Trade(
        "BTCUSDT", 3735683259, 61837.63, 0.02, 1723161255342, 1723161255400, True, 1
    )


def test_usdm_trade_and_aggtrade_count() -> None:
    assert decoder().decode(USDM_TRADE, 0) == Trade(
        "BTCUSDT", 5266583935, 61800.30, 0.006, 1723161256322, 0, False, 1
    )
    agg = decoder().decode(AGG_TRADE, 0)
    assert isinstance(agg, Trade)
    assert (agg.trade_id, agg.count, agg.price, agg.qty) == (665076760, 3, 58001.03, 0.086205)


def test_bytes_frames_decode_the_same() -> None:
    assert decoder().decode(SPOT_TRADE.encode(), 5) == decoder().decode(SPOT_TRADE, 5)


def _with(frame: str, **changes: object) -> str:
    message = json.loads(frame)
    for key, value in changes.items():
        if value is None:
            del message["data"][key]
        else:
            message["data"][key] = value
    return json.dumps(message)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "malformed_json"),
        ("", "malformed_json"),
        ('{"stream":"btcusdt@trade","data":{"e":"trade"', "malformed_json"),
        ("[1,2,3]", "bad_field"),
        ('{"result":null,"id":1}', "bad_field"),
        (_with(SPOT_TRADE, p=None), "bad_field"),
        (_with(SPOT_TRADE, t="abc"), "bad_field"),
        (_with(SPOT_TRADE, p="abc"), "bad_field"),
        (_with(SPOT_TRADE, p="1e999"), "bad_field"),
        (_with(SPOT_TRADE, T=None), "bad_field"),
        (_with(SPOT_TRADE, m=[1]), "bad_field"),
        (_with(SPOT_TRADE, e="depthUpdate"), "unexpected_event"),
        (_with(SPOT_TRADE, p="0"), "bad_price"),
        (_with(SPOT_TRADE, p="-1"), "bad_price"),
        (_with(SPOT_TRADE, p="NaN"), "bad_price"),
        (_with(SPOT_TRADE, p="inf"), "bad_price"),
        (_with(SPOT_TRADE, q="0"), "bad_qty"),
        (_with(SPOT_TRADE, q="-0.5"), "bad_qty"),
        (_with(SPOT_TRADE, q="nan"), "bad_qty"),
        (_with(SPOT_TRADE, t=-5), "bad_field"),
        (_with(AGG_TRADE, l=745522800), "bad_id"),
        (_with(SPOT_TRADE, s="DOGEUSDT"), "unknown_symbol"),
        (_with(USDM_TRADE, X="LIQUIDATION"), "non_market"),
        (_with(SPOT_TRADE, t=10**30), "bad_field"),
        (_with(SPOT_TRADE, T=-1), "bad_field"),
        (_with(SPOT_TRADE, E=2**60), "bad_field"),
    ],
)
def test_bad_frames_are_rejected_with_a_reason(raw: str, reason: str) -> None:
    assert decoder().decode(raw, 1723161255400) == reason


def test_stale_timestamps_rejected_only_when_checked() -> None:
    far = 1723161255342 + 10 * 60_000
    assert decoder(max_skew_ms=300_000).decode(SPOT_TRADE, far) == "stale_timestamp"
    assert isinstance(decoder().decode(SPOT_TRADE, far), Trade)


def test_server_shutdown_is_recognised() -> None:
    frame = '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1}}'
    assert decoder().decode(frame, 0) == SERVER_SHUTDOWN
    assert decoder().decode('{"e":"serverShutdown","E":1}', 0) == SERVER_SHUTDOWN


def test_any_symbol_when_unrestricted() -> None:
    frame = _with(SPOT_TRADE, s="DOGEUSDT")
    trade = FrameDecoder(None).decode(frame, 0)
    assert isinstance(trade, Trade)
    assert trade.symbol == "DOGEUSDT"
