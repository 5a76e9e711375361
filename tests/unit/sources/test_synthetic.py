"""The synthetic market: deterministic, block-size independent, mean-reverting, realistic ids."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pairwatch.daemon.sources.synthetic import (
    MarketModel,
    SymbolSpec,
    SyntheticMarket,
    TradeBlock,
    default_symbol_spec,
)

START_MS = 1_723_161_255_000
INT_FIELDS = (
    "time_ms",
    "symbol",
    "price_ticks",
    "qty_lots",
    "buyer_is_maker",
    "agg_id",
    "first_id",
    "last_id",
    "fill_event",
    "fill_trade_id",
    "fill_qty_lots",
)


def model(**changes: object) -> MarketModel:
    specs = (default_symbol_spec("BTCUSDT"), default_symbol_spec("ETHUSDT"))
    return MarketModel(symbols=specs, **changes)  # type: ignore[arg-type]


def concat(blocks: list[TradeBlock], name: str) -> np.ndarray:
    return np.concatenate([getattr(b, name) for b in blocks])


def test_same_seed_gives_the_same_tape_and_another_seed_does_not() -> None:
    a = SyntheticMarket(model(seed=7), START_MS).generate(3000)
    b = SyntheticMarket(model(seed=7), START_MS).generate(3000)
    c = SyntheticMarket(model(seed=8), START_MS).generate(3000)
    for name in INT_FIELDS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.price_ticks, c.price_ticks)


def test_tape_does_not_depend_on_block_sizes() -> None:
    whole = SyntheticMarket(model(seed=3), START_MS).generate(6000)
    pieces_market = SyntheticMarket(model(seed=3), START_MS)
    pieces = [pieces_market.generate(n) for n in (1, 2, 997, 3000, 2000)]
    # fill_event indexes events within its own block; every other field lines up exactly.
    for name in INT_FIELDS:
        if name != "fill_event":
            assert np.array_equal(getattr(whole, name), concat(pieces, name)), name
    assert np.allclose(whole.spread, concat(pieces, "spread"), atol=1e-12)


def test_prices_are_positive_ticks_near_the_start_prices() -> None:
    block = SyntheticMarket(model(), START_MS).generate(5000)
    assert (block.price_ticks >= 1).all()
    assert (block.qty_lots >= 1).all()
    assert (block.fill_qty_lots >= 1).all()
    btc = block.price_ticks[block.symbol == 0] / 100
    eth = block.price_ticks[block.symbol == 1] / 100
    assert btc.min() > 50_000
    assert btc.max() < 70_000
    assert eth.min() > 2_500
    assert eth.max() < 3_500
    # Sells print on the bid (floor of the mid), buys on the ask (ceil).
    mid = np.exp(block.log_mid[np.arange(len(block)), block.symbol]) * 100
    assert (block.price_ticks[block.buyer_is_maker] <= mid[block.buyer_is_maker]).all()
    assert (block.price_ticks[~block.buyer_is_maker] >= mid[~block.buyer_is_maker]).all()


def test_ids_increase_by_one_per_symbol_from_realistic_bases() -> None:
    market = SyntheticMarket(model(), START_MS)
    blocks = [market.generate(700) for _ in range(3)]
    symbol = concat(blocks, "symbol")
    fill_symbol = np.concatenate([b.symbol[b.fill_event] for b in blocks])
    trade_ids = concat(blocks, "fill_trade_id")
    agg_ids = concat(blocks, "agg_id")
    for j, spec in enumerate(market.model.symbols):
        t = trade_ids[fill_symbol == j]
        a = agg_ids[symbol == j]
        assert t[0] == spec.first_trade_id
        assert a[0] == spec.first_agg_id
        assert (np.diff(t) == 1).all()
        assert (np.diff(a) == 1).all()
    assert default_symbol_spec("BTCUSDT").first_trade_id == 3_735_683_259
    assert default_symbol_spec("ETHUSDT", "usdm").first_trade_id == 4_308_068_523


def test_each_aggtrade_covers_its_fills_exactly() -> None:
    block = SyntheticMarket(model(fills_mean=2.0), START_MS).generate(2000)
    counts = np.bincount(block.fill_event, minlength=len(block))
    assert (counts >= 1).all()
    assert counts.max() > 1
    assert np.array_equal(block.last_id - block.first_id + 1, counts)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    assert np.array_equal(block.first_id, block.fill_trade_id[starts])
    assert np.array_equal(block.qty_lots, np.add.reduceat(block.fill_qty_lots, starts))


def test_times_follow_the_rate_and_never_go_back() -> None:
    block = SyntheticMarket(model(rate=20.0), START_MS).generate(4000)
    assert (np.diff(block.time_ms) >= 0).all()
    assert block.time_ms[0] >= START_MS
    seconds = (block.time_ms[-1] - START_MS) / 1000
    assert 4000 / seconds == pytest.approx(20.0, rel=0.1)


def one_second_grid(block: TradeBlock, series: np.ndarray) -> np.ndarray:
    """Sample a per-event series at whole simulated seconds (last value before each)."""
    grid = np.arange(1.0, math.floor(block.t_s[-1]))
    return series[np.searchsorted(block.t_s, grid, side="right") - 1]


def ar1(x: np.ndarray) -> float:
    x = x - x.mean()
    return float(np.dot(x[1:], x[:-1]) / np.dot(x[:-1], x[:-1]))


def test_pair_spread_from_prices_is_the_mean_reverting_ou_state() -> None:
    m = model(seed=11)
    block = SyntheticMarket(m, START_MS).generate(80_000)  # about 4000 simulated seconds
    btc, eth = m.symbols
    spread = block.log_mid[:, 1] - eth.beta * block.log_mid[:, 0]
    spread -= math.log(eth.start_price) - eth.beta * math.log(btc.start_price)
    assert np.allclose(spread, block.spread[:, 1], atol=1e-9)

    deviation = one_second_grid(block, spread - block.spread_mean[:, 1])
    phi = ar1(deviation)
    assert phi < 0.99
    assert phi == pytest.approx(math.exp(-m.kappa), abs=0.03)
    # One-second innovations have the OU's size (median: robust to the jumps at shifts).
    residual = deviation[1:] - phi * deviation[:-1]
    expected = 0.6745 * m.spread_vol * math.sqrt(1 - math.exp(-2 * m.kappa))
    assert float(np.median(np.abs(residual))) == pytest.approx(expected, rel=0.1)
    # The common factor itself is a random walk: its 1 s AR(1) is ~1.
    prices = one_second_grid(block, block.log_mid[:, 0])
    assert ar1(np.diff(prices)) == pytest.approx(0.0, abs=0.1)


def test_regime_shifts_jump_the_spread_mean_and_stay_bounded() -> None:
    m = model(seed=5)
    market = SyntheticMarket(m, START_MS)
    block = market.generate(60_000)  # about 3000 simulated seconds
    shifts = market.shift_times
    assert shifts[0] == m.first_shift_s
    assert len(shifts) > 10
    assert min(np.diff(shifts)) >= m.shift_interval_s / 3
    means = np.unique(np.round(block.spread_mean[:, 1] / (m.shift_size * m.spread_vol), 9))
    assert set(means.tolist()) <= {-2.0, -1.0, 0.0, 1.0, 2.0}
    assert len(means) >= 3
    assert (block.spread_mean[:, 0] == 0).all()


def test_first_regime_shift_moves_the_spread_far_within_two_minutes() -> None:
    """At the default rate the demo's z-score alert gets a >3-sigma move before 120 s."""
    m = model()
    block = SyntheticMarket(m, START_MS).generate(2400)
    spread = block.spread[:, 1]
    before = spread[block.t_s < m.first_shift_s]
    after = spread[(block.t_s > m.first_shift_s) & (block.t_s < 120.0)]
    assert np.abs(after - before.mean()).max() > 3 * before.std()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rate": 0.0}, "rate"),
        ({"fills_mean": 0.5}, "fills_mean"),
        ({"symbols": ()}, "at least one symbol"),
        ({"half_life_s": -1.0}, "half_life_s"),
    ],
)
def test_invalid_models_are_rejected(changes: dict[str, object], message: str) -> None:
    base = {"symbols": (default_symbol_spec("BTCUSDT"),)}
    with pytest.raises(ValueError, match=message):
        MarketModel(**{**base, **changes})  # type: ignore[arg-type]


def test_invalid_symbol_specs_are_rejected() -> None:
    with pytest.raises(ValueError, match="upper-case"):
        SymbolSpec("btcusdt", 1.0)
    with pytest.raises(ValueError, match="price_decimals"):
        SymbolSpec("BTCUSDT", 1.0, price_decimals=0)
    with pytest.raises(ValueError, match="duplicate"):
        MarketModel(symbols=(default_symbol_spec("BTCUSDT"), default_symbol_spec("BTCUSDT")))


def test_unknown_symbols_get_stable_defaults() -> None:
    spec = default_symbol_spec("solusdt")
    assert spec.symbol == "SOLUSDT"
    assert spec.start_price == 100.0
    assert spec == default_symbol_spec("SOLUSDT")
    assert default_symbol_spec("SOLUSDT", "usdm").qty_decimals == 3
