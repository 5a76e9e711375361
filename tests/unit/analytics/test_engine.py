"""The pair engine's contract: alignment, batch-equal snapshots, thin bars, symbols, ADF."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from statsmodels.regression.linear_model import OLS
from statsmodels.tools import add_constant
from statsmodels.tsa.adfvalues import mackinnonp
from statsmodels.tsa.stattools import adfuller
from statsmodels.tsa.stattools import coint as sm_coint

from pairwatch.analytics.engine import (
    ADF_METRICS,
    MAX_PENDING,
    SNAPSHOT_METRICS,
    AdfValues,
    PairEngine,
    PairSpec,
    engle_granger,
)
from pairwatch.analytics.kalman import kalman_metrics
from pairwatch.analytics.rolling_ols import rolling_pair_metrics
from pairwatch.analytics.symbol_metrics import SYMBOL_METRICS, symbol_metrics
from pairwatch.events import Bar, PairSnapshot, SymbolSnapshot
from unit.analytics.test_rolling_ols import btc_eth

Key = tuple[str, str, int]
"""(pair Y/X or symbol, timeframe, window)."""

ORDERS = ["y_first", "x_first", "x_ahead_5", "y_ahead_3", "alternate", "random"]
MODES = ["one_call", "bar_by_bar", "random_chunks"]


class Leg:
    """The bar series of one symbol × timeframe, as columns (ts in bar units)."""

    def __init__(
        self,
        symbol: str,
        close: np.ndarray,
        *,
        timeframe: str = "1s",
        bar_ms: int = 1_000,
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        n = len(close)
        self.symbol = symbol
        self.timeframe = timeframe
        self.bar_ms = bar_ms
        self.ts = np.arange(n, dtype=np.int64) * bar_ms + 1_700_000_000_000 // bar_ms * bar_ms
        self.close = np.asarray(close, dtype=np.float64)
        self.volume = rng.exponential(2.0, n)
        self.trades = rng.poisson(6, n).astype(np.int64) + 1
        self.filled = np.zeros(n, dtype=bool)
        self.keep = np.ones(n, dtype=bool)

    def carry(self, rows: np.ndarray) -> None:
        """Turn ``rows`` into carry-forward bars: the previous close, no volume, no trades."""
        for i in sorted(rows):
            self.close[i] = self.close[i - 1]
            self.volume[i] = 0.0
            self.trades[i] = 0
            self.filled[i] = True

    def bars(self) -> list[Bar]:
        """Return the kept bars, in time order."""
        return [
            Bar(
                self.symbol,
                self.timeframe,
                int(self.ts[i]),
                float(self.close[i]) * 0.999,
                float(self.close[i]) * 1.001,
                float(self.close[i]) * 0.998,
                float(self.close[i]),
                float(self.volume[i]),
                float(self.volume[i] * self.close[i]),
                float(self.close[i]) if self.volume[i] > 0 else math.nan,
                int(self.trades[i]),
                float(self.volume[i]) / 2,
                bool(self.filled[i]),
            )
            for i in np.flatnonzero(self.keep)
        ]


def spec(y: Leg, x: Leg, windows: tuple[int, ...], **kwargs: Any) -> PairSpec:
    return PairSpec(y.symbol, x.symbol, y.timeframe, y.bar_ms, windows, **kwargs)


def pair_legs(n: int, seed: int = 0, timeframe: str = "1s", bar_ms: int = 1_000) -> tuple[Leg, Leg]:
    """ETH (y) and BTC (x) legs: cointegrated random walks at market scale."""
    x, y = btc_eth(n, seed)
    eth = Leg("ETHUSDT", y, timeframe=timeframe, bar_ms=bar_ms, seed=seed + 100)
    btc = Leg("BTCUSDT", x, timeframe=timeframe, bar_ms=bar_ms, seed=seed + 200)
    return eth, btc


def interleave(ys: list[Bar], xs: list[Bar], order: str, seed: int = 0) -> list[Bar]:
    """Merge two legs' bars (each kept in time order) in the named interleaving."""
    if order == "y_first":
        return ys + xs
    if order == "x_first":
        return xs + ys
    if order == "random":
        rng = np.random.default_rng(seed)
        out, i, j = [], 0, 0
        while i < len(ys) or j < len(xs):
            if j == len(xs) or (i < len(ys) and rng.random() < 0.5):
                out.append(ys[i])
                i += 1
            else:
                out.append(xs[j])
                j += 1
        return out
    lead = {"x_ahead_5": (0, 5), "y_ahead_3": (3, 0), "alternate": (0, 0)}[order]
    keyed = [(k - lead[0], 0, b) for k, b in enumerate(ys)]
    keyed += [(k - lead[1], 1, b) for k, b in enumerate(xs)]
    return [b for _, _, b in sorted(keyed, key=lambda t: (t[0], t[1]))]


def feed(
    engine: PairEngine, bars: Sequence[Bar], mode: str = "one_call", seed: int = 0
) -> tuple[list[PairSnapshot], list[SymbolSnapshot]]:
    """Give ``bars`` to the engine in one call, one by one, or in random chunks."""
    pairs: list[PairSnapshot] = []
    symbols: list[SymbolSnapshot] = []
    if mode == "one_call":
        sizes = [len(bars)]
    elif mode == "bar_by_bar":
        sizes = [1] * len(bars)
    else:
        rng = np.random.default_rng(seed)
        sizes = list(rng.integers(1, 40, len(bars)))
    start = 0
    for size in sizes:
        p, s = engine.on_bars(bars[start : start + size])
        pairs.extend(p)
        symbols.extend(s)
        start += size
        if start >= len(bars):
            break
    return pairs, symbols


def by_key(snapshots: Sequence[PairSnapshot]) -> dict[Key, list[PairSnapshot]]:
    """Group pair snapshots per pair × timeframe × window, in ts order, none repeated.

    Sorted because the engine does not promise an order inside one call's result.
    """
    out: dict[Key, list[PairSnapshot]] = defaultdict(list)
    for s in snapshots:
        out[(s.pair, s.timeframe, s.window)].append(s)
    for group in out.values():
        group.sort(key=lambda s: s.ts)
        assert len({s.ts for s in group}) == len(group)
    return dict(out)


def symbols_by_key(snapshots: Sequence[SymbolSnapshot]) -> dict[Key, list[SymbolSnapshot]]:
    out: dict[Key, list[SymbolSnapshot]] = defaultdict(list)
    for s in snapshots:
        out[(s.symbol, s.timeframe, s.window)].append(s)
    return dict(out)


def column(snapshots: Sequence[PairSnapshot | SymbolSnapshot], name: str) -> np.ndarray:
    return np.array([s.metrics[name] for s in snapshots])


def assert_matches_batch(
    snapshots: Sequence[PairSnapshot],
    x: np.ndarray,
    y: np.ndarray,
    ts: np.ndarray,
    window: int,
    *,
    delta: float = 1e-5,
    obs_var: float = 1e-3,
    log_prices: bool = True,
    intercept: bool = True,
) -> None:
    """Assert snapshots equal the batch kernels run on the aligned closes ``x``, ``y``."""
    want = rolling_pair_metrics(
        x, y, window, log_prices=log_prices, intercept=intercept
    ) | kalman_metrics(x, y, delta=delta, obs_var=obs_var, log_prices=log_prices)
    assert [s.ts for s in snapshots] == ts.tolist()
    assert not any(s.thin for s in snapshots)
    assert all(list(s.metrics) == list(SNAPSHOT_METRICS) for s in snapshots)
    for name in want:  # the core and Kalman metrics (extra window metrics are not checked)
        # assert_allclose with equal_nan also requires the NaN positions to be identical.
        np.testing.assert_allclose(
            column(snapshots, name), want[name], rtol=1e-9, atol=0, equal_nan=True,
            err_msg=f"window {window} {name}",
        )  # fmt: skip
    assert np.isfinite(column(snapshots, "hedge_ratio")[window - 1 :]).all()


def assert_same_snapshots(got: Sequence[PairSnapshot], want: Sequence[PairSnapshot]) -> None:
    """Equal snapshots, NaN for NaN (``==`` on the structs would fail on NaN metrics)."""
    assert [(s.pair, s.timeframe, s.window, s.ts, s.thin, s.adf_at) for s in got] == [
        (s.pair, s.timeframe, s.window, s.ts, s.thin, s.adf_at) for s in want
    ]
    for a, b in zip(got, want, strict=True):
        assert list(a.metrics) == list(b.metrics)
        np.testing.assert_array_equal(list(a.metrics.values()), list(b.metrics.values()))


# --- alignment ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("order", ORDERS)
def test_any_interleaving_of_the_legs_gives_the_batch_snapshots(order: str, mode: str) -> None:
    eth, btc = pair_legs(150, seed=1)
    engine = PairEngine([spec(eth, btc, (20,))])
    pairs, _ = feed(engine, interleave(eth.bars(), btc.bars(), order, seed=3), mode, seed=4)
    groups = by_key(pairs)
    assert list(groups) == [("ETHUSDT/BTCUSDT", "1s", 20)]
    assert_matches_batch(groups["ETHUSDT/BTCUSDT", "1s", 20], btc.close, eth.close, eth.ts, 20)
    assert engine.counters() == {"aligned": 150, "thin": 0, "unaligned": 0}


@pytest.mark.parametrize("order", ORDERS)
def test_a_ts_missing_on_one_leg_is_skipped_and_counted_unaligned(order: str) -> None:
    eth, btc = pair_legs(200, seed=2)
    rng = np.random.default_rng(5)
    eth.keep[rng.choice(199, 15, replace=False)] = False  # the last ts stays on both legs,
    btc.keep[rng.choice(199, 12, replace=False)] = False  # so every lone bar gets dropped
    btc.keep[[10, 11, 12, 13]] = False  # a run of missing bars on one leg
    eth.keep[[50, 51]] = btc.keep[[50, 51]] = False  # a ts missing on both: not counted
    both = eth.keep & btc.keep
    engine = PairEngine([spec(eth, btc, (10, 30))])
    pairs, _ = feed(engine, interleave(eth.bars(), btc.bars(), order, seed=6), "random_chunks")
    groups = by_key(pairs)
    for window in (10, 30):
        assert_matches_batch(
            groups["ETHUSDT/BTCUSDT", "1s", window],
            btc.close[both], eth.close[both], eth.ts[both], window,
        )  # fmt: skip
    lone = int((eth.keep & ~btc.keep).sum() + (btc.keep & ~eth.keep).sum())
    assert lone > 25
    assert engine.counters() == {"aligned": int(both.sum()), "thin": 0, "unaligned": lone}


def test_carry_forward_bars_are_aligned_like_any_other() -> None:
    eth, btc = pair_legs(120, seed=3)
    eth.carry(np.arange(30, 40))  # ETH went quiet for ten seconds
    btc.carry(np.array([5, 6, 70, 71, 72, 90]))
    engine = PairEngine([spec(eth, btc, (15,))])
    pairs, _ = feed(engine, interleave(eth.bars(), btc.bars(), "alternate"))
    snaps = by_key(pairs)["ETHUSDT/BTCUSDT", "1s", 15]
    assert_matches_batch(snaps, btc.close, eth.close, eth.ts, 15)
    assert engine.counters() == {"aligned": 120, "thin": 0, "unaligned": 0}
    # A carried bar repeats the close, so its one-bar return is exactly zero.
    assert eth.close[30] == eth.close[29]


def test_open_bars_are_ignored() -> None:
    eth, btc = pair_legs(100, seed=4)
    clean = interleave(eth.bars(), btc.bars(), "random", seed=1)
    noisy: list[Bar] = []
    for bar in clean:  # an open checkpoint of the same bar, at another price, before it
        noisy.append(Bar(
            bar.symbol, bar.timeframe, bar.ts, bar.open, bar.high, bar.low, bar.close * 1.05,
            bar.volume / 2, bar.quote_volume / 2, bar.vwap, max(bar.trades - 1, 0), 0.0,
            closed=False,
        ))  # fmt: skip
        noisy.append(bar)
    noisy.append(
        Bar("ETHUSDT", "1s", int(eth.ts[-1]) + 1000, 1, 1, 1, 1, 1, 1, 1, 1, 0, closed=False)
    )
    want = PairEngine([spec(eth, btc, (20,))])
    got = PairEngine([spec(eth, btc, (20,))])
    want_pairs, want_symbols = feed(want, clean, "bar_by_bar")
    got_pairs, got_symbols = feed(got, noisy, "bar_by_bar")
    assert_same_snapshots(got_pairs, want_pairs)
    assert len(got_symbols) == len(want_symbols) == 200
    for a, b in zip(got_symbols, want_symbols, strict=True):
        assert (a.symbol, a.ts, a.window) == (b.symbol, b.ts, b.window)
        np.testing.assert_array_equal(list(a.metrics.values()), list(b.metrics.values()))
    assert got.counters() == want.counters() == {"aligned": 100, "thin": 0, "unaligned": 0}


# Regression: evicted bars were once dropped without being counted.
def test_bars_evicted_from_a_full_pending_queue_count_as_unaligned() -> None:
    n = MAX_PENDING + 3
    eth, btc = pair_legs(n, seed=5)
    engine = PairEngine([spec(eth, btc, (5,))])
    first, _ = engine.on_bars(eth.bars())
    pairs, _ = engine.on_bars(btc.bars())
    assert first == []
    snaps = by_key(pairs)["ETHUSDT/BTCUSDT", "1s", 5]
    assert_matches_batch(snaps, btc.close[3:], eth.close[3:], eth.ts[3:], 5)
    assert engine.counters() == {"aligned": n - 3, "thin": 0, "unaligned": 6}


# --- values equal the batch path ---------------------------------------------------------


def test_several_windows_and_two_timeframes_equal_the_batch_path() -> None:
    eth_s, btc_s = pair_legs(400, seed=6)
    eth_m, btc_m = pair_legs(90, seed=7, timeframe="1m", bar_ms=60_000)
    specs = [
        spec(eth_s, btc_s, (5, 20, 60)),
        spec(eth_m, btc_m, (5, 30), delta=1e-7, obs_var=1e-6),
    ]
    engine = PairEngine(specs)
    # 1 s and 1 m bars interleaved the way a feed delivers them: by time, legs shuffled.
    bars = eth_s.bars() + btc_s.bars() + eth_m.bars() + btc_m.bars()
    bars.sort(key=lambda b: (b.ts + (60_000 if b.timeframe == "1m" else 1_000), b.symbol))
    pairs, _ = feed(engine, bars, "random_chunks", seed=8)
    groups = by_key(pairs)
    assert sorted(groups) == sorted(
        [("ETHUSDT/BTCUSDT", "1s", w) for w in (5, 20, 60)]
        + [("ETHUSDT/BTCUSDT", "1m", w) for w in (5, 30)]
    )
    for w in (5, 20, 60):
        assert_matches_batch(
            groups["ETHUSDT/BTCUSDT", "1s", w], btc_s.close, eth_s.close, eth_s.ts, w
        )
    for w in (5, 30):
        assert_matches_batch(
            groups["ETHUSDT/BTCUSDT", "1m", w], btc_m.close, eth_m.close, eth_m.ts, w,
            delta=1e-7, obs_var=1e-6,
        )  # fmt: skip


def test_raw_prices_without_intercept_equal_the_batch_path() -> None:
    eth, btc = pair_legs(150, seed=8)
    engine = PairEngine([spec(eth, btc, (25,), log_prices=False, intercept=False)])
    pairs, _ = feed(engine, interleave(eth.bars(), btc.bars(), "random"))
    assert_matches_batch(
        by_key(pairs)["ETHUSDT/BTCUSDT", "1s", 25], btc.close, eth.close, eth.ts, 25,
        log_prices=False, intercept=False,
    )  # fmt: skip


def test_pairs_sharing_a_bank_equal_each_pair_alone() -> None:
    eth, btc = pair_legs(300, seed=9)
    _, sol_close = btc_eth(300, seed=10)
    sol = Leg("SOLUSDT", sol_close / 20, seed=11)
    sol.keep[np.random.default_rng(12).choice(299, 20, replace=False)] = False
    eth_btc, sol_btc = spec(eth, btc, (20, 40)), spec(sol, btc, (20,))
    bars = interleave(interleave(eth.bars(), sol.bars(), "random", 1), btc.bars(), "random", 2)
    shared, _ = feed(PairEngine([eth_btc, sol_btc]), bars, "random_chunks", seed=3)
    alone_eth, _ = feed(PairEngine([eth_btc]), interleave(eth.bars(), btc.bars(), "x_first"))
    alone_sol, _ = feed(PairEngine([sol_btc]), interleave(sol.bars(), btc.bars(), "y_first"))
    groups, eth_groups, sol_groups = by_key(shared), by_key(alone_eth), by_key(alone_sol)
    assert sorted(groups) == sorted([*eth_groups, *sol_groups])
    for key, snaps in eth_groups.items():
        assert_same_snapshots(groups[key], snaps)
    for key, snaps in sol_groups.items():
        assert_same_snapshots(groups[key], snaps)
    for w in (20, 40):
        assert_matches_batch(groups["ETHUSDT/BTCUSDT", "1s", w], btc.close, eth.close, eth.ts, w)
    k = sol.keep
    assert_matches_batch(
        groups["SOLUSDT/BTCUSDT", "1s", 20], btc.close[k], sol.close[k], sol.ts[k], 20
    )


def test_a_pair_and_its_reverse_are_distinct_pairs() -> None:
    eth, btc = pair_legs(80, seed=13)
    engine = PairEngine([spec(eth, btc, (10,)), spec(btc, eth, (10,))])
    pairs, _ = feed(engine, interleave(eth.bars(), btc.bars(), "alternate"))
    groups = by_key(pairs)
    assert_matches_batch(groups["ETHUSDT/BTCUSDT", "1s", 10], btc.close, eth.close, eth.ts, 10)
    assert_matches_batch(groups["BTCUSDT/ETHUSDT", "1s", 10], eth.close, btc.close, eth.ts, 10)


# --- min_trades ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["y_first", "alternate", "random"])
def test_thin_bars_give_empty_snapshots_and_the_kernels_skip_them(order: str) -> None:
    eth, btc = pair_legs(300, seed=14)
    rng = np.random.default_rng(15)
    eth.trades = rng.integers(0, 12, 300)
    btc.trades = rng.integers(0, 12, 300)
    eth.keep[[100, 101, 102]] = False  # missing bars still count as unaligned, not thin
    eth.carry(np.array([200, 201]))  # a carried bar has no trades: thin under min_trades
    both = eth.keep & btc.keep
    thin = both & ((eth.trades < 3) | (btc.trades < 3))
    liquid = both & ~thin
    engine = PairEngine([spec(eth, btc, (10, 30), min_trades=3)])
    pairs, _ = feed(engine, interleave(eth.bars(), btc.bars(), order, seed=16), "random_chunks")
    thin_snaps = [s for s in pairs if s.thin]
    assert sorted((s.ts, s.window) for s in thin_snaps) == sorted(
        (int(t), w) for t in eth.ts[thin] for w in (10, 30)
    )
    for s in thin_snaps:
        assert (s.y, s.x, s.timeframe, s.metrics, s.adf_at) == (
            "ETHUSDT", "BTCUSDT", "1s", {}, None,
        )  # fmt: skip
    groups = by_key([s for s in pairs if not s.thin])
    for w in (10, 30):
        assert_matches_batch(
            groups["ETHUSDT/BTCUSDT", "1s", w],
            btc.close[liquid], eth.close[liquid], eth.ts[liquid], w,
        )  # fmt: skip
    assert thin[200]
    assert thin.sum() > 50
    assert engine.counters() == {
        "aligned": int(liquid.sum()),
        "thin": int(thin.sum()),
        "unaligned": 3,
    }


def test_min_trades_zero_never_makes_a_bar_thin() -> None:
    eth, btc = pair_legs(60, seed=17)
    eth.trades[:] = 0
    engine = PairEngine([spec(eth, btc, (10,), min_trades=0)])
    pairs, _ = feed(engine, interleave(eth.bars(), btc.bars(), "alternate"))
    assert_matches_batch(
        by_key(pairs)["ETHUSDT/BTCUSDT", "1s", 10], btc.close, eth.close, eth.ts, 10
    )


# --- symbol snapshots -----------------------------------------------------------------------


def test_symbol_snapshots_equal_the_batch_per_symbol_timeframe_and_window() -> None:
    eth, btc = pair_legs(250, seed=18)
    _, sol_close = btc_eth(250, seed=19)
    sol = Leg("SOLUSDT", sol_close / 20, seed=20)
    sol.keep[[7, 8, 9, 120]] = False  # symbol metrics run on the symbol's own bars
    sol.carry(np.array([40, 41, 42]))
    eth.trades[::5] = 0  # thin for the pair, still bars for the symbol
    eth_m, btc_m = pair_legs(70, seed=21, timeframe="1m", bar_ms=60_000)
    specs = [
        spec(eth, btc, (20,), min_trades=1),
        spec(sol, btc, (20, 50)),
        spec(eth_m, btc_m, (10,)),
    ]
    engine = PairEngine(specs)
    legs = [eth, btc, sol, eth_m, btc_m]
    bars = [b for leg in legs for b in leg.bars()]
    bars.sort(key=lambda b: b.ts + (60_000 if b.timeframe == "1m" else 1_000))
    _, symbols = feed(engine, bars, "random_chunks", seed=22)
    groups = symbols_by_key(symbols)
    windows = {
        ("ETHUSDT", "1s"): (20,),
        ("BTCUSDT", "1s"): (20, 50),  # the union of its pairs' windows, each once
        ("SOLUSDT", "1s"): (20, 50),
        ("ETHUSDT", "1m"): (10,),
        ("BTCUSDT", "1m"): (10,),
    }
    assert sorted(groups) == sorted((s, tf, w) for (s, tf), ws in windows.items() for w in ws)
    for leg in legs:
        k = leg.keep
        quote = leg.volume * leg.close
        for w in windows[leg.symbol, leg.timeframe]:
            snaps = groups[leg.symbol, leg.timeframe, w]
            assert [s.ts for s in snaps] == leg.ts[k].tolist()
            want = symbol_metrics(
                leg.close[k], leg.volume[k], quote[k], leg.trades[k].astype(float),
                window=w, bar_ms=leg.bar_ms,
            )  # fmt: skip
            for name in SYMBOL_METRICS:
                np.testing.assert_allclose(
                    column(snaps, name), want[name], rtol=1e-9, atol=0, equal_nan=True,
                    err_msg=f"{leg.symbol} {leg.timeframe} {w} {name}",
                )  # fmt: skip
            assert np.isfinite(column(snaps, "volatility")[w:]).all()


# --- ADF ------------------------------------------------------------------------------------


def test_adf_inputs_hold_the_last_lookback_liquid_log_closes_oldest_first() -> None:
    eth, btc = pair_legs(140, seed=23)
    eth.trades[[3, 17, 60, 61]] = 0  # thin bars stay out of the history
    eth.keep[[30, 31]] = False
    engine = PairEngine([spec(eth, btc, (10,), adf_lookback=50, min_trades=1)])
    liquid = eth.keep & (eth.trades >= 1)
    y_bars = {b.ts: b for b in eth.bars()}
    seen: list[int] = []
    for i, x_bar in enumerate(btc.bars()):  # y's bar before x's at every ts
        bars = [y_bars[x_bar.ts], x_bar] if x_bar.ts in y_bars else [x_bar]
        engine.on_bars(bars)
        if liquid[i]:
            seen.append(i)
        inputs = engine.adf_inputs()
        if len(seen) < 50:
            assert inputs == []
            continue
        [(track, x, y)] = inputs
        last = seen[-50:]
        assert track == 0
        np.testing.assert_array_equal(x, [math.log(btc.close[j]) for j in last])
        np.testing.assert_array_equal(y, [math.log(eth.close[j]) for j in last])
    assert len(seen) == 140 - 6


def test_adf_inputs_of_raw_prices_and_of_chosen_tracks() -> None:
    eth, btc = pair_legs(40, seed=24)
    _, sol_close = btc_eth(40, seed=25)
    sol = Leg("SOLUSDT", sol_close / 20, seed=26)
    engine = PairEngine(
        [
            spec(eth, btc, (5,), adf_lookback=30),
            spec(sol, btc, (5,), adf_lookback=20, log_prices=False),
        ]
    )
    feed(engine, eth.bars() + sol.bars() + btc.bars())
    [(track, x, y)] = engine.adf_inputs([1])
    assert track == 1
    np.testing.assert_array_equal(x, btc.close[-20:])
    np.testing.assert_array_equal(y, sol.close[-20:])
    assert [t for t, _, _ in engine.adf_inputs()] == [0, 1]
    assert engine.specs == [
        spec(eth, btc, (5,), adf_lookback=30),
        spec(sol, btc, (5,), adf_lookback=20, log_prices=False),
    ]


def test_set_adf_values_ride_on_every_following_snapshot() -> None:
    eth, btc = pair_legs(60, seed=27)
    eth.trades[45] = 0
    engine = PairEngine([spec(eth, btc, (5, 10), min_trades=1)])
    bars = interleave(eth.bars(), btc.bars(), "alternate")
    before, _ = feed(engine, bars[:60])  # ts 0…29
    assert engine.adf_values(0) is None
    assert len(before) == 60
    for s in before:
        assert s.adf_at is None
        assert all(math.isnan(s.metrics[name]) for name in ADF_METRICS)
    values = AdfValues(
        {"adf_stat": -3.5, "adf_pvalue": 0.008, "adf_lag": 2.0, "coint_pvalue": 0.03}, 1_234
    )
    engine.set_adf(0, values)
    assert engine.adf_values(0) == values
    after, _ = feed(engine, bars[60:], "bar_by_bar")
    assert len(after) == 60
    for s in after:
        if s.thin:
            assert (s.ts, s.metrics, s.adf_at) == (int(eth.ts[45]), {}, None)
            continue
        assert s.adf_at == 1_234
        assert {name: s.metrics[name] for name in ADF_METRICS} == values.metrics
    # The kernels' metrics are untouched by the ADF values.
    groups = by_key(before + after)
    liquid = eth.trades >= 1
    assert_matches_batch(
        [s for s in groups["ETHUSDT/BTCUSDT", "1s", 10] if not s.thin],
        btc.close[liquid], eth.close[liquid], eth.ts[liquid], 10,
    )  # fmt: skip


def statsmodels_engle_granger(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """ADF (regression 'c', AIC) of the OLS residuals of y on x, and coint(y, x)."""
    resid = OLS(y, add_constant(x)).fit().resid
    result = adfuller(resid, regression="c", autolag="AIC", result_object=True)
    coint_stat = sm_coint(y, x, trend="c", autolag="aic")[0]
    return {
        "adf_stat": result.statistic,
        "adf_pvalue": result.pvalue,
        "adf_lag": result.lags,
        "coint_stat": coint_stat,
    }


def assert_pvalue_of(pvalue: float, stat: float, n_series: int) -> None:
    """Assert ``pvalue`` is MacKinnon's p-value of a statistic within 1e-8 of ``stat``.

    Both sides agree on the statistic to ~1e-9 relative, and a p-value magnifies that
    (d ln p / d stat is large in the tails: 1.2e-8 relative seen at p = 0.005), so the
    p-value is checked against the interval the statistic's tolerance maps to.
    """
    bounds = sorted(mackinnonp(stat * (1 + s), "c", n_series) for s in (1e-8, -1e-8))
    assert bounds[0] * (1 - 1e-12) <= pvalue <= bounds[1] * (1 + 1e-12)


def assert_engle_granger(got: dict[str, float], x: np.ndarray, y: np.ndarray) -> None:
    want = statsmodels_engle_granger(x, y)
    assert list(got) == list(ADF_METRICS)
    assert got["adf_stat"] == pytest.approx(want["adf_stat"], rel=1e-8)
    assert got["adf_lag"] == want["adf_lag"]
    assert got["adf_pvalue"] == pytest.approx(want["adf_pvalue"], rel=1e-7, abs=1e-300)
    assert_pvalue_of(got["adf_pvalue"], want["adf_stat"], 1)
    assert_pvalue_of(got["coint_pvalue"], want["coint_stat"], 2)
    assert got["coint_pvalue"] == pytest.approx(
        mackinnonp(want["coint_stat"], "c", 2), rel=1e-7, abs=1e-300
    )


def ar2_spread(n: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 1e-3, n)
    e = np.zeros(n)
    for i in range(2, n):
        e[i] = 0.6 * e[i - 1] + 0.3 * e[i - 2] + noise[i]
    return e


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["cointegrated", "random_walks", "ar2_spread"])
def test_engle_granger_equals_statsmodels(kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.log(60_000) + np.cumsum(rng.normal(0, 1e-3, 500))
    if kind == "cointegrated":
        y = 0.8 * x - 0.9 + ar2_spread(500, seed + 10) * 0.2
    elif kind == "random_walks":
        y = np.log(3_000) + np.cumsum(rng.normal(0, 1e-3, 500))
    else:
        y = 1.1 * x - 4.0 + ar2_spread(500, seed + 20)
    got = engle_granger(x, y)
    assert_engle_granger(got, x, y)
    if kind == "cointegrated":
        assert got["coint_pvalue"] < 0.01


def test_engle_granger_of_the_engine_inputs_equals_statsmodels() -> None:
    eth, btc = pair_legs(700, seed=28)
    engine = PairEngine([spec(eth, btc, (30,), adf_lookback=500)])
    feed(engine, interleave(eth.bars(), btc.bars(), "random"))
    [(_, x, y)] = engine.adf_inputs()
    got = engle_granger(x, y)
    assert_engle_granger(got, np.log(btc.close[-500:]), np.log(eth.close[-500:]))


def test_engle_granger_of_a_flat_x_leg_equals_statsmodels() -> None:
    # A stale x leg makes the hedge regression degenerate; statsmodels still answers (the
    # minimum-norm fit, i.e. y's own deviations) and engle_granger gives the same numbers.
    y = np.log(3_000) + np.cumsum(np.random.default_rng(29).normal(0, 1e-3, 500))
    x = np.full(500, math.log(60_000))
    got = engle_granger(x, y)
    result = adfuller(y - y.mean(), regression="c", autolag="AIC", result_object=True)
    assert got["adf_stat"] == pytest.approx(result.statistic, rel=1e-8)
    assert got["adf_lag"] == result.lags
    want = sm_coint(y, x, trend="c", autolag="aic")
    assert_pvalue_of(got["coint_pvalue"], want[0], 2)


# Regression: a flat y (a stale leg, a stablecoin) once raised ZeroDivisionError in coint,
# failing a whole refresh batch.
@pytest.mark.parametrize("flat", ["y", "both"])
def test_engle_granger_of_a_flat_y_gives_nan_instead_of_raising(flat: str) -> None:
    x = np.log(60_000) + np.cumsum(np.random.default_rng(30).normal(0, 1e-3, 500))
    if flat == "both":
        x = np.full(500, math.log(60_000))
    y = np.full(500, math.log(3_000))
    got = engle_granger(x, y)
    assert list(got) == list(ADF_METRICS)
    assert all(math.isnan(v) for v in got.values())


def test_engle_granger_of_too_short_a_series_gives_nan() -> None:
    rng = np.random.default_rng(31)
    x = np.cumsum(rng.normal(size=3))
    got = engle_granger(x, x * 0.5 + rng.normal(size=3))
    assert all(math.isnan(v) for v in got.values())


# --- construction ---------------------------------------------------------------------------


def test_a_duplicated_pair_and_timeframe_is_refused() -> None:
    eth, btc = pair_legs(5)
    with pytest.raises(ValueError, match="listed twice"):
        PairEngine([spec(eth, btc, (10,)), spec(eth, btc, (20, 30), min_trades=4)])
    one_minute = PairSpec("ETHUSDT", "BTCUSDT", "1m", 60_000, (10,))
    engine = PairEngine([spec(eth, btc, (10,)), one_minute, spec(btc, eth, (10,))])
    assert [s.timeframe for s in engine.specs] == ["1s", "1m", "1s"]
