"""Combined-stream URLs and the reconnect backoff."""

from __future__ import annotations

import random

from pairwatch.daemon.sources.backoff import Backoff
from pairwatch.daemon.sources.binance import stream_names, stream_urls


def test_stream_names_are_lower_case_symbol_at_kind() -> None:
    assert stream_names(["BTCUSDT", "ethusdt"], "aggTrade") == [
        "btcusdt@aggTrade",
        "ethusdt@aggTrade",
    ]


def test_streams_share_one_connection_up_to_the_limit() -> None:
    names = stream_names([f"S{i}USDT" for i in range(5)], "trade")
    assert stream_urls("wss://stream.binance.com:9443", names, 1024) == [
        "wss://stream.binance.com:9443/stream?streams="
        "s0usdt@trade/s1usdt@trade/s2usdt@trade/s3usdt@trade/s4usdt@trade"
    ]
    split = stream_urls("wss://fstream.binance.com/market/", names, 2)
    assert split == [
        "wss://fstream.binance.com/market/stream?streams=s0usdt@trade/s1usdt@trade",
        "wss://fstream.binance.com/market/stream?streams=s2usdt@trade/s3usdt@trade",
        "wss://fstream.binance.com/market/stream?streams=s4usdt@trade",
    ]


def test_backoff_doubles_up_to_the_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(1.0, 10.0, rng=random.Random(7))
    delays = [backoff.next() for _ in range(7)]
    ceilings = [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered, not a fixed sequence
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0
