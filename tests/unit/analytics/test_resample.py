"""Bars from the live builder and the compiled batch kernel against a pandas oracle."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairwatch.analytics.resample import SymbolBars
from pairwatch.analytics.resample_kernel import BatchBars
from pairwatch.analytics.tradebatch import TradeBatch
from pairwatch.events import Bar
from support.oracle import resample_oracle

TIMEFRAMES = [("1s", 1_000), ("1m", 60_000), ("5m", 300_000)]
EXACT = ["ts", "open", "high", "low", "close", "trades", "filled"]
SUMS = ["volume", "quote_volume", "taker_buy_volume", "vwap"]


def oracle(ts, price, qty, maker, count, length: int, max_fill: int) -> pd.DataFrame:
    trades = pd.DataFrame({"ts": ts, "price": price, "qty": qty, "maker": maker, "count": count})
    return resample_oracle(trades, length, max_fill).iloc[:-1]  # the last bar is still open


def as_frame(bars: list[Bar]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": [b.ts for b in bars],
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [b.volume for b in bars],
            "quote_volume": [b.quote_volume for b in bars],
            "taker_buy_volume": [b.taker_buy_volume for b in bars],
            "vwap": [b.vwap for b in bars],
            "trades": [b.trades for b in bars],
            "filled": [b.filled for b in bars],
        }
    )


def assert_bars_equal(mine: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert len(mine) == len(expected)
    for column in EXACT:
        np.testing.assert_array_equal(mine[column].to_numpy(), expected[column].to_numpy(), column)
    for column in SUMS:
        # Sums add in trade order; pandas sums pairwise: they agree to a few ulp.
        np.testing.assert_allclose(
            mine[column].to_numpy(), expected[column].to_numpy(), rtol=1e-12, atol=0, err_msg=column
        )


def live_bars(ts, price, qty, maker, count, max_fill: int) -> dict[str, list[Bar]]:
    builder = SymbolBars("BTCUSDT", TIMEFRAMES, max_fill=max_fill)
    out: list[Bar] = []
    for row in zip(
        ts.tolist(), price.tolist(), qty.tolist(), maker.tolist(), count.tolist(), strict=True
    ):
        assert builder.add(*row, out)
    return {label: [b for b in out if b.timeframe == label] for label, _ in TIMEFRAMES}


def batch_bars(ts, price, qty, maker, count, chunk: int, max_fill: int) -> dict[str, list[Bar]]:
    builder = BatchBars("BTCUSDT", TIMEFRAMES, max_fill=max_fill)
    out: dict[str, list[Bar]] = {label: [] for label, _ in TIMEFRAMES}
    for start in range(0, len(ts), chunk):
        rows = slice(start, start + chunk)
        batch = TradeBatch(
            "BTCUSDT",
            np.arange(len(ts))[rows],
            ts[rows],
            price[rows],
            qty[rows],
            maker[rows],
            count[rows],
        )
        for arrays in builder.add(batch):
            out[arrays.timeframe].extend(arrays.to_bars())
    return out


trades_strategy = st.integers(min_value=1, max_value=300).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 90_000), min_size=n, max_size=n),
        st.lists(st.floats(0.01, 1e6, allow_nan=False), min_size=n, max_size=n),
        st.lists(st.floats(1e-8, 1e4, allow_nan=False), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.lists(st.integers(1, 50), min_size=n, max_size=n),
        st.integers(0, 10**13),
    )
)


def arrays(draw: tuple) -> tuple[np.ndarray, ...]:
    steps, price, qty, maker, count, origin = draw
    ts = origin + np.cumsum(np.array(steps, dtype=np.int64))
    return (
        ts,
        np.array(price),
        np.array(qty),
        np.array(maker, dtype=np.bool_),
        np.array(count, dtype=np.int64),
    )


@settings(max_examples=150, deadline=None)
@given(trades_strategy, st.integers(1, 64), st.sampled_from([3_600_000, 4_000, 90_000]))
def test_live_and_batch_bars_equal_pandas_resample(draw: tuple, chunk: int, max_fill: int) -> None:
    ts, price, qty, maker, count = arrays(draw)
    live = live_bars(ts, price, qty, maker, count, max_fill)
    batch = batch_bars(ts, price, qty, maker, count, chunk, max_fill)
    for label, length in TIMEFRAMES:
        expected = oracle(ts, price, qty, maker, count, length, max_fill)
        assert_bars_equal(as_frame(live[label]), expected)
        # Both implementations are the same arithmetic: identical to the bit.
        assert as_frame(batch[label]).equals(as_frame(live[label]))


def test_empty_intervals_carry_last_close_flagged() -> None:
    builder = SymbolBars("ETHUSDT", [("1s", 1_000)])
    out: list[Bar] = []
    builder.add(1_000, 10.0, 1.0, False, 1, out)
    builder.add(1_500, 11.0, 2.0, True, 1, out)
    builder.add(4_200, 12.0, 1.0, False, 1, out)
    assert [(b.ts, b.close, b.volume, b.filled) for b in out] == [
        (1_000, 11.0, 3.0, False),
        (2_000, 11.0, 0.0, True),
        (3_000, 11.0, 0.0, True),
    ]
    assert out[0].taker_buy_volume == 1.0
    assert out[0].vwap == pytest.approx((10.0 + 22.0) / 3.0)
    assert math.isnan(out[1].vwap)
    assert out[1].trades == 0


def test_carry_stops_after_max_fill_and_leaves_a_hole() -> None:
    builder = SymbolBars("ETHUSDT", [("1s", 1_000)], max_fill=2_000)
    out: list[Bar] = []
    builder.add(1_000, 10.0, 1.0, False, 1, out)
    builder.advance(9_000, out)
    assert [(b.ts, b.filled) for b in out] == [(1_000, False), (2_000, True), (3_000, True)]
    builder.add(9_500, 12.0, 1.0, False, 1, out)
    builder.add(10_100, 12.0, 1.0, False, 1, out)
    assert [(b.ts, b.filled) for b in out[3:]] == [(9_000, False)]


def test_fill_none_skips_empty_intervals() -> None:
    builder = SymbolBars("ETHUSDT", [("1s", 1_000)], fill="none")
    out: list[Bar] = []
    for ts in (1_000, 4_200, 5_100):
        builder.add(ts, 1.0, 1.0, False, 1, out)
    assert [b.ts for b in out] == [1_000, 4_000]


def test_watermark_closes_idle_bars_and_fills_up_to_it() -> None:
    builder = SymbolBars("ETHUSDT", [("1s", 1_000), ("1m", 60_000)])
    out: list[Bar] = []
    builder.add(10_100, 5.0, 1.0, False, 1, out)
    builder.advance(10_999, out)
    assert out == []
    builder.advance(13_500, out)
    assert [(b.timeframe, b.ts, b.filled) for b in out] == [
        ("1s", 10_000, False),
        ("1s", 11_000, True),
        ("1s", 12_000, True),
    ]


def test_late_trade_never_rewrites_a_closed_bar() -> None:
    builder = SymbolBars("ETHUSDT", [("1s", 1_000), ("1m", 60_000)])
    out: list[Bar] = []
    builder.add(10_100, 5.0, 1.0, False, 1, out)
    builder.add(11_100, 6.0, 1.0, False, 1, out)
    assert builder.add(10_900, 7.0, 1.0, False, 1, out) is False
    assert builder.late == 1
    # Within the open bar, an out-of-order trade is still accepted.
    assert builder.add(11_050, 4.0, 1.0, False, 1, out) is True
    builder.advance(12_000, out)
    one_second = [b for b in out if b.timeframe == "1s"]
    assert [(b.ts, b.high, b.low, b.volume) for b in one_second] == [
        (10_000, 5.0, 5.0, 1.0),
        (11_000, 6.0, 4.0, 2.0),
    ]


def test_batch_drops_late_trades_like_the_live_builder() -> None:
    ts = np.array([10_100, 11_100, 10_900, 11_050, 12_500], dtype=np.int64)
    price = np.array([5.0, 6.0, 7.0, 4.0, 5.0])
    ones = np.ones(5)
    maker = np.zeros(5, dtype=np.bool_)
    count = np.ones(5, dtype=np.int64)
    batch = BatchBars("X", [("1s", 1_000)])
    result = batch.add(TradeBatch("X", np.arange(5), ts, price, ones, maker, count))
    live = SymbolBars("X", [("1s", 1_000)])
    out: list[Bar] = []
    for i in range(5):
        live.add(int(ts[i]), float(price[i]), 1.0, False, 1, out)
    assert result[0].to_bars() == out
    assert batch.late == live.late == 1


def test_resume_continues_an_open_bar_and_follows_a_closed_one() -> None:
    first = SymbolBars("X", [("1s", 1_000)])
    out: list[Bar] = []
    first.add(1_100, 5.0, 1.0, False, 1, out)
    first.add(1_200, 6.0, 2.0, True, 1, out)
    (open_bar,) = first.open_bars()
    assert not open_bar.closed
    resumed = SymbolBars("X", [("1s", 1_000)])
    resumed.resume(open_bar)
    resumed.add(1_300, 4.0, 1.0, False, 1, out)
    resumed.add(2_100, 4.5, 1.0, False, 1, out)
    assert [(b.ts, b.open, b.high, b.low, b.close, b.volume, b.trades) for b in out] == [
        (1_000, 5.0, 6.0, 4.0, 4.0, 4.0, 3)
    ]
    after_closed = SymbolBars("X", [("1s", 1_000)])
    after_closed.resume(out[0])
    later: list[Bar] = []
    assert after_closed.add(1_900, 1.0, 1.0, False, 1, later) is False
    after_closed.add(3_100, 1.0, 1.0, False, 1, later)
    after_closed.advance(4_000, later)
    assert [(b.ts, b.filled, b.close) for b in later] == [(2_000, True, 4.0), (3_000, False, 1.0)]


def test_resuming_after_a_carried_bar_carries_no_further() -> None:
    filled = Bar("X", "1s", 5_000, 4.0, 4.0, 4.0, 4.0, 0.0, 0.0, math.nan, 0, 0.0, filled=True)
    builder = SymbolBars("X", [("1s", 1_000)], max_fill=60_000)
    builder.resume(filled)
    out: list[Bar] = []
    builder.advance(20_000, out)
    assert out == []
    builder.add(9_500, 5.0, 1.0, False, 1, out)
    builder.add(10_200, 5.0, 1.0, False, 1, out)
    assert [(b.ts, b.filled) for b in out] == [(9_000, False)]
