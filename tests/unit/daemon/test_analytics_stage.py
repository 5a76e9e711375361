"""The daemon's analytics stage: storage hand-off, cache, ADF refresh, failures contained."""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import numpy as np
import pytest

from pairwatch.analytics.engine import ADF_METRICS, KalmanState, PairSpec, engle_granger
from pairwatch.config.settings import Settings
from pairwatch.daemon.analytics import AnalyticsStage, adf_schedule, pair_specs
from pairwatch.events import Bar, PairSnapshot, SymbolSnapshot


class Recorder:
    """A writer seam that keeps what it is given."""

    def __init__(self) -> None:
        self.pairs: list[PairSnapshot] = []
        self.symbols: list[SymbolSnapshot] = []
        self.kalman: list[KalmanState] = []

    def put_pair_snapshots(self, snapshots: Sequence[PairSnapshot]) -> None:
        self.pairs.extend(snapshots)

    def put_symbol_snapshots(self, snapshots: Sequence[SymbolSnapshot]) -> None:
        self.symbols.extend(snapshots)

    def put_kalman_states(self, states: Sequence[KalmanState]) -> None:
        self.kalman.extend(states)


def bars(n: int, *, flat_y: bool = False, trades: int = 5, start: int = 0) -> list[Bar]:
    rng = np.random.default_rng(11)
    x = 60_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, start + n)))
    y = 3_000 * (x / 60_000) ** 0.8 * np.exp(rng.normal(0, 3e-4, start + n))
    out = []
    for t in range(start, start + n):
        for symbol, price in (("BTCUSDT", x[t]), ("ETHUSDT", 3_000.0 if flat_y else y[t])):
            p = float(price)
            out.append(Bar(symbol, "1m", t * 60_000, p, p, p, p, 1.0, p, p, trades, 0.0))
    return out


def spec(**kw: object) -> PairSpec:
    return PairSpec("ETHUSDT", "BTCUSDT", "1m", 60_000, (10, 30), adf_lookback=50, **kw)  # type: ignore[arg-type]


def test_snapshots_are_stored_and_the_latest_non_thin_one_cached() -> None:
    writer = Recorder()
    stage = AnalyticsStage([spec(min_trades=3)], writer)
    stage.on_bars(bars(40))
    stage.on_bars(bars(1, trades=1, start=40))  # thin: stored flagged, not cached
    assert [s.ts for s in writer.pairs if s.window == 10] == [t * 60_000 for t in range(41)]
    assert writer.pairs[-1].thin
    assert writer.pairs[-1].metrics == {}
    latest = stage.latest[("ETHUSDT/BTCUSDT", "1m", 10)]
    assert latest.ts == 39 * 60_000
    assert not latest.thin
    assert latest is [s for s in writer.pairs if s.window == 10][-2]
    assert {(s.symbol, s.window) for s in writer.symbols} == {
        (sym, w) for sym in ("BTCUSDT", "ETHUSDT") for w in (10, 30)
    }
    assert stage.latest_symbols[("ETHUSDT", "1m", 30)].ts == 40 * 60_000
    counters = stage.counters()
    assert (counters["aligned"], counters["thin"], counters["pair_snapshots"]) == (40, 1, 82)


def test_warm_up_fills_the_cache_without_storing() -> None:
    writer = Recorder()
    stage = AnalyticsStage([spec()], writer)
    assert stage.warm_up(bars(35)) == 70
    assert writer.pairs == []
    assert writer.symbols == []
    assert stage.latest[("ETHUSDT/BTCUSDT", "1m", 30)].ts == 34 * 60_000
    assert math.isfinite(stage.latest[("ETHUSDT/BTCUSDT", "1m", 30)].metrics["zscore"])


async def test_adf_refresh_runs_in_a_worker_and_rides_on_later_snapshots() -> None:
    writer = Recorder()
    stage = AnalyticsStage([spec()], writer)
    with ThreadPoolExecutor(1) as worker:
        assert await stage.refresh_adf([0], lambda: 1, worker) == 0  # lookback not full yet
        history = bars(50)
        stage.on_bars(history)
        assert await stage.refresh_adf([0], lambda: 123_456, worker) == 1
    stage.on_bars(bars(1, start=50))
    last = writer.pairs[-1]
    x = np.log([b.close for b in history if b.symbol == "BTCUSDT"])
    y = np.log([b.close for b in history if b.symbol == "ETHUSDT"])
    assert {n: last.metrics[n] for n in ADF_METRICS} == engle_granger(x, y)
    assert last.adf_at == 123_456
    assert all(math.isnan(s.metrics["adf_stat"]) for s in writer.pairs[:-2])
    assert stage.counters()["adf_refreshes"] == 1


async def test_a_flat_leg_gives_nan_tests_without_failing_the_refresh() -> None:
    stage = AnalyticsStage([spec()], Recorder())
    stage.on_bars(bars(50, flat_y=True))
    assert await stage.refresh_adf([0], lambda: 1) == 1
    values = stage.engine.adf_values(0)
    assert values is not None
    assert all(math.isnan(v) for v in values.metrics.values())


def test_a_failure_inside_the_stage_is_counted_and_never_raised() -> None:
    writer = Recorder()
    stage = AnalyticsStage([spec()], writer)

    def broken(snapshots: Sequence[PairSnapshot], symbols: Sequence[SymbolSnapshot]) -> None:
        raise RuntimeError("listener bug")

    stage.add_listener(broken)
    stage.on_bars(bars(3))
    assert stage.counters()["errors"] == 1  # one per batch of new snapshots
    bad = Bar("ETHUSDT", "1m", 3 * 60_000, 1.0, 1.0, 1.0, -1.0, 1.0, 1.0, 1.0, 5, 0.0)
    stage.on_bars([bad, *[b for b in bars(1, start=3) if b.symbol == "BTCUSDT"]])
    assert stage.counters()["errors"] == 2
    assert len(writer.pairs) == 6  # the three good bars × two windows


def test_pairs_expand_to_every_timeframe_and_group_by_refresh_interval() -> None:
    settings = Settings(
        feed={"symbols": ["BTCUSDT", "ETHUSDT", "SOLUSDT"]},
        bars={"timeframes": ["1s", "1m"]},
        pairs=[
            "ETHUSDT/BTCUSDT",
            {"y": "SOLUSDT", "x": "BTCUSDT", "timeframes": ["1m"], "adf_refresh": "5m"},
        ],
    )
    specs = pair_specs(settings)
    assert [(s.pair, s.timeframe, s.bar_ms) for s in specs] == [
        ("ETHUSDT/BTCUSDT", "1s", 1_000),
        ("ETHUSDT/BTCUSDT", "1m", 60_000),
        ("SOLUSDT/BTCUSDT", "1m", 60_000),
    ]
    assert adf_schedule(specs) == {60_000: [0, 1], 300_000: [2]}
    assert specs[2].adf_refresh_ms == timedelta(minutes=5) / timedelta(milliseconds=1)


def test_a_spec_with_repeated_windows_is_refused() -> None:
    with pytest.raises(ValueError, match="windows must be unique"):
        AnalyticsStage([PairSpec("A1", "B1", "1m", 60_000, (5, 5))], Recorder())


def test_saved_kalman_states_make_a_restart_continue_exactly() -> None:
    history = bars(80)
    before = Recorder()
    running = AnalyticsStage([spec()], before)
    running.on_bars(history)
    running.checkpoint()
    assert [(k.window, k.ts) for k in before.kalman] == [(10, 79 * 60_000), (30, 79 * 60_000)]
    running.checkpoint()  # nothing new since: nothing written
    assert len(before.kalman) == 2
    # A restart sees the last 40 bars of each leg, with or without the saved states.
    warm, cold = Recorder(), Recorder()
    restarted = AnalyticsStage([spec()], warm)
    restarted.warm_up(history[-80:], before.kalman)
    forgetful = AnalyticsStage([spec()], cold)
    forgetful.warm_up(history[-80:])
    following = bars(5, start=80)
    before.pairs.clear()
    for stage in (running, restarted, forgetful):
        stage.on_bars(following)
    kalman = ("kalman_beta", "kalman_alpha", "kalman_spread", "kalman_zscore")
    for a, b, c in zip(before.pairs, warm.pairs, cold.pairs, strict=True):
        assert [a.metrics[k] for k in kalman] == [b.metrics[k] for k in kalman]
        assert c.metrics["kalman_beta"] != a.metrics["kalman_beta"]
        for stage_snapshot in (b, c):  # the rolling metrics come back from the bars alone
            assert math.isclose(stage_snapshot.metrics["zscore"], a.metrics["zscore"], rel_tol=1e-9)
