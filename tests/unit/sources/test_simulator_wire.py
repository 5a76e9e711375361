"""Synthetic frames are byte-compatible with the recorded Binance frames."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from pairwatch.daemon.sources.frames import iter_trade_frames
from pairwatch.daemon.sources.simulator_wire import (
    BlockEncoder,
    EncodedBlock,
    Market,
    StreamKind,
    StreamTable,
    server_shutdown_frame,
)
from pairwatch.daemon.sources.synthetic import (
    MarketModel,
    SyntheticMarket,
    TradeBlock,
    default_symbol_spec,
)

DATA = Path(__file__).resolve().parents[2] / "data"
RECORDED = {
    ("spot", "trade"): DATA / "hftbacktest_spot_btcusdt_20240808_head2000.gz",
    ("usdm", "trade"): DATA / "hftbacktest_usdm_btcusdt_20240808_head2000.gz",
    ("spot", "aggTrade"): DATA / "cryptofeed_BINANCE-ee25be_head300.0",
}
KEYS = {
    ("spot", "trade"): ["e", "E", "s", "t", "p", "q", "T", "m", "M"],
    ("usdm", "trade"): ["e", "E", "T", "s", "t", "p", "q", "X", "m"],
    ("spot", "aggTrade"): ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"],
    ("usdm", "aggTrade"): ["e", "E", "a", "s", "p", "q", "f", "l", "T", "m"],
}
NUMBER = {"spot": (r"\d+\.\d{8}", r"\d+\.\d{8}"), "usdm": (r"\d+\.\d{2}", r"\d+\.\d{3}")}


def encode(market: Market, kinds: tuple[StreamKind, ...]) -> tuple[TradeBlock, EncodedBlock]:
    specs = (default_symbol_spec("BTCUSDT", market), default_symbol_spec("ETHUSDT", market))
    market_model = MarketModel(symbols=specs, fills_mean=2.0)
    block = SyntheticMarket(market_model, 1_723_161_255_000).generate(400)
    return block, BlockEncoder(specs, market, kinds, StreamTable()).encode(block)


@pytest.mark.parametrize(("market", "kind"), list(KEYS))
def test_frames_have_binances_key_order_and_number_formats(
    market: Market, kind: StreamKind
) -> None:
    frames = encode(market, (kind,))[1].frames
    price_re, qty_re = NUMBER[market]
    for text in frames:
        assert " " not in text
        frame = json.loads(text)
        assert list(frame) == ["stream", "data"]
        data = frame["data"]
        assert list(data) == KEYS[(market, kind)]
        assert data["e"] == kind
        assert frame["stream"] == f"{data['s'].lower()}@{kind}"
        assert re.fullmatch(price_re, data["p"])
        assert re.fullmatch(qty_re, data["q"])
        assert data["E"] == data["T"] + (1 if market == "spot" else 0)
        assert isinstance(data["m"], bool)


@pytest.mark.parametrize(("market", "kind"), list(RECORDED))
def test_key_order_equals_the_recorded_frames(market: Market, kind: StreamKind) -> None:
    recorded = next(iter_trade_frames(RECORDED[(market, kind)]))
    ours = encode(market, (kind,))[1].frames
    assert list(json.loads(ours[0])["data"]) == list(json.loads(recorded.raw)["data"])
    price_re, _ = NUMBER[market]
    assert re.fullmatch(price_re, json.loads(recorded.raw)["data"]["p"])


def test_frames_carry_the_blocks_values_exactly() -> None:
    block, encoded = encode("spot", ("trade", "aggTrade"))
    frames = encoded.frames
    trades = [json.loads(f)["data"] for f in frames if '"e":"trade"' in f]
    aggs = [json.loads(f)["data"] for f in frames if '"e":"aggTrade"' in f]
    assert len(trades) == len(block.fill_trade_id)
    assert len(aggs) == len(block)
    assert [t["t"] for t in trades] == block.fill_trade_id.tolist()
    assert [a["a"] for a in aggs] == block.agg_id.tolist()
    for k, agg in enumerate(aggs):
        assert Decimal(agg["p"]) == Decimal(int(block.price_ticks[k])) / 100
        assert Decimal(agg["q"]) == Decimal(int(block.qty_lots[k])) / 100_000
        fills = [t for t in trades if agg["f"] <= t["t"] <= agg["l"] and t["s"] == agg["s"]]
        assert len(fills) == agg["l"] - agg["f"] + 1
        assert sum(Decimal(t["q"]) for t in fills) == Decimal(agg["q"])
        assert {t["p"] for t in fills} == {agg["p"]}
        assert {t["T"] for t in fills} == {agg["T"]}
    # Send order: an event's trade frames, then its aggTrade; event_end marks the aggTrade.
    assert all('"e":"aggTrade"' in frames[end - 1] for end in encoded.event_end)
    payloads = [json.loads(f)["data"] for f in frames]
    assert encoded.ids == [d["t"] if d["e"] == "trade" else d["a"] for d in payloads]


def test_stream_codes_name_each_frames_stream() -> None:
    table = StreamTable()
    specs = (default_symbol_spec("BTCUSDT"), default_symbol_spec("ETHUSDT"))
    block = SyntheticMarket(MarketModel(symbols=specs), 0).generate(50)
    encoded = BlockEncoder(specs, "spot", ("aggTrade",), table).encode(block)
    assert table.names == ["btcusdt@aggTrade", "ethusdt@aggTrade"]
    for frame, code in zip(encoded.frames, encoded.streams, strict=True):
        assert json.loads(frame)["stream"] == table.names[code]


def test_server_shutdown_notice_is_the_combined_stream_form() -> None:
    assert server_shutdown_frame(1770123456789) == (
        '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}'
    )


def test_encoder_rejects_unknown_kinds() -> None:
    kinds: tuple[StreamKind, ...] = ("depth",)  # type: ignore[assignment]
    with pytest.raises(ValueError, match="kinds"):
        BlockEncoder((default_symbol_spec("BTCUSDT"),), "spot", kinds, StreamTable())
