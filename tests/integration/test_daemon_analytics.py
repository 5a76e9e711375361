"""The daemon's analytics against the batch path, on real recorded BTC/ETH trades.

The daemon runs in-process against the simulator replaying the recorded trades; every
stored pair snapshot must equal the batch computation (``pair_history``) over the stored,
aligned closed bars, the latest-snapshot cache must hold the last of them, and a restart
must continue the rolling metrics exactly from the stored bars.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from pairwatch.analytics.engine import ADF_METRICS, SNAPSHOT_METRICS, PairSpec, engle_granger
from pairwatch.analytics.history import pair_history
from pairwatch.analytics.kalman import KALMAN_METRICS
from pairwatch.analytics.rolling_ols import METRICS
from pairwatch.analytics.symbol_metrics import SYMBOL_METRICS, symbol_metrics
from pairwatch.config.load import load_settings
from pairwatch.daemon import store_reads
from pairwatch.daemon.analytics import AnalyticsStage, pair_specs
from pairwatch.daemon.service import SWITCH_INTERVAL_S, Daemon
from pairwatch.daemon.sources.simulator import Simulator, SimulatorOptions
from pairwatch.events import PairSnapshot, SymbolSnapshot
from support.oracle import read_frames_with_json

REAL = Path(__file__).resolve().parents[1] / "data" / "real"
FILES = (
    str(REAL / "hftbacktest_spot_btcusdt_20240808_trades.gz"),
    str(REAL / "hftbacktest_spot_ethusdt_20240808_trades.gz"),
)
LAST_TS = max(int(read_frames_with_json(Path(f))["ts"].max()) for f in FILES) // 1000 * 1000
WINDOWS = (20, 50)


def write_config(path: Path, data_dir: Path, base_url: str, grace: str = "100ms") -> Path:
    path.write_text(
        f"""
data_dir = "{data_dir}"

[feed]
base_url = "{base_url}"
symbols = ["BTCUSDT", "ETHUSDT"]
max_clock_skew = "3650d"  # the recording is from 2024

[bars]
timeframes = ["1s", "1m"]
grace = "{grace}"

[storage.retention]
bars = {{ 1s = "forever" }}  # the recording is older than the default week

[[pairs]]
y = "ETHUSDT"
x = "BTCUSDT"
timeframes = ["1s"]
windows = {list(WINDOWS)}
adf_lookback = 100
adf_refresh = "200ms"
"""
    )
    return path


async def run_until_last_bar(config: Path, until: int = LAST_TS) -> Daemon:
    """Run the daemon until a snapshot of ``until`` (a second) is out; then stop it."""
    settings = load_settings(config)
    daemon = Daemon(settings)
    stop = asyncio.Event()
    done = asyncio.Event()

    def on_snapshots(snapshots: Sequence[PairSnapshot], _symbols: object) -> None:
        if any(s.ts >= until for s in snapshots):
            done.set()

    task = asyncio.create_task(daemon.run(stop))
    await asyncio.wait_for(daemon.ready.wait(), 30)
    assert daemon.analytics is not None
    daemon.analytics.add_listener(on_snapshots)
    await asyncio.wait_for(done.wait(), 60)
    stop.set()
    await asyncio.wait_for(task, 60)
    return daemon


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Daemon]:
    tmp = tmp_path_factory.mktemp("analytics")

    async def main() -> Daemon:
        options = SimulatorOptions(mode="recorded", files=FILES, speed=None)
        async with Simulator(options) as sim:
            return await run_until_last_bar(write_config(tmp / "p.toml", tmp, sim.url))

    daemon = asyncio.run(main())
    return daemon.settings.db_path, daemon


def stored_rows(db: Path, window: int) -> dict[str, np.ndarray]:
    with sqlite3.connect(db) as conn:
        return store_reads.load_pair_analytics(conn, "ETHUSDT", "BTCUSDT", "1s", window)


def batch(db: Path, spec: PairSpec, window: int) -> dict[str, np.ndarray]:
    with sqlite3.connect(db) as conn:
        legs = store_reads.load_aligned_closes(conn, "ETHUSDT", "BTCUSDT", "1s")
    return pair_history(
        spec, window, legs["ts"], legs["x_close"], legs["y_close"],
        legs["x_trades"], legs["y_trades"], adf=False,
    )  # fmt: skip


def assert_close(got: np.ndarray, expected: np.ndarray, name: str) -> None:
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), name)
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("window", WINDOWS)
def test_every_stored_snapshot_equals_the_batch_path(
    live_run: tuple[Path, Daemon], window: int
) -> None:
    db, daemon = live_run
    (spec,) = pair_specs(daemon.settings)
    rows = stored_rows(db, window)
    expected = batch(db, spec, window)
    assert len(rows["ts"]) > 300  # ~346 recorded seconds, plus carried bars
    np.testing.assert_array_equal(rows["ts"], expected["ts"])
    assert not rows["thin"].any()
    for name in METRICS + KALMAN_METRICS:
        assert_close(rows[name], expected[name], name)
    assert np.isfinite(rows["zscore"][window:]).all()  # real data: never flat


def test_adf_values_ride_along_and_equal_a_lookback_of_the_history(
    live_run: tuple[Path, Daemon],
) -> None:
    db, daemon = live_run
    assert daemon.analytics is not None
    assert daemon.analytics.counters()["adf_refreshes"] > 0
    rows = stored_rows(db, WINDOWS[0])
    with sqlite3.connect(db) as conn:
        legs = store_reads.load_aligned_closes(conn, "ETHUSDT", "BTCUSDT", "1s")
    x, y = np.log(legs["x_close"]), np.log(legs["y_close"])
    refreshed = np.flatnonzero(~np.isnan(rows["adf_at"]))
    assert len(refreshed) > 0
    # Each distinct result was computed on the 100 aligned bars ending before its first row.
    for at in np.unique(rows["adf_at"][refreshed]):
        first = int(np.flatnonzero(rows["adf_at"] == at)[0])
        candidates = [
            engle_granger(x[end - 100 : end], y[end - 100 : end]) for end in range(100, first + 1)
        ]
        got = {name: float(rows[name][first]) for name in ADF_METRICS}
        assert got in candidates
    assert math.isnan(rows["adf_stat"][0])


def test_the_cache_holds_the_last_snapshot_of_each_window(live_run: tuple[Path, Daemon]) -> None:
    db, daemon = live_run
    assert daemon.analytics is not None
    for window in WINDOWS:
        rows = stored_rows(db, window)
        latest = daemon.analytics.latest[("ETHUSDT/BTCUSDT", "1s", window)]
        assert latest.ts == rows["ts"][-1]
        for name in SNAPSHOT_METRICS:
            expected = float(rows[name][-1])
            got = latest.metrics[name]
            assert (math.isnan(got) and math.isnan(expected)) or got == expected, name


def test_symbol_snapshots_equal_the_batch_path(live_run: tuple[Path, Daemon]) -> None:
    db, _ = live_run
    with sqlite3.connect(db) as conn:
        for symbol in ("BTCUSDT", "ETHUSDT"):
            bars = conn.execute(
                "select ts, close, volume, quote_volume, trades from bars "
                "where symbol = ? and timeframe = '1s' and closed = 1 order by ts",
                (symbol,),
            ).fetchall()
            ts, close, volume, quote, trades = np.array(bars, dtype=np.float64).T
            for window in WINDOWS:
                got = conn.execute(
                    f"select ts, {', '.join(SYMBOL_METRICS)} from symbol_analytics "
                    "where symbol = ? and timeframe = '1s' and window = ? order by ts",
                    (symbol, window),
                ).fetchall()
                cols = np.array(got, dtype=np.float64).T
                np.testing.assert_array_equal(cols[0], ts)
                expected = symbol_metrics(close, volume, quote, trades, window=window, bar_ms=1000)
                for k, name in enumerate(SYMBOL_METRICS, start=1):
                    assert_close(cols[k], expected[name], name)


class _Discard:
    def put_pair_snapshots(self, snapshots: Sequence[PairSnapshot]) -> None:
        pass

    def put_symbol_snapshots(self, snapshots: Sequence[SymbolSnapshot]) -> None:
        pass


def test_a_restart_continues_the_rolling_metrics_from_stored_bars(
    live_run: tuple[Path, Daemon], tmp_path: Path
) -> None:
    db, daemon = live_run
    specs = pair_specs(daemon.settings)
    with sqlite3.connect(db) as conn:
        closed = [
            store_reads.load_recent_closed_bars(conn, s, "1s", 10_000)
            for s in ("BTCUSDT", "ETHUSDT")
        ]
    cut = closed[0][len(closed[0]) // 2].ts
    # Before the restart the store held the bars before ``cut``; the restarted stage loads
    # what it needs of them, then gets the later bars live.
    copy = tmp_path / "restart.sqlite3"
    with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
        dst.execute("delete from bars where ts >= ?", (cut,))
    stage = AnalyticsStage(specs, _Discard())
    with sqlite3.connect(copy) as conn:
        history = stage.load_history(conn)
    assert 0 < len(history) <= 2 * max(max(WINDOWS) + 1, specs[0].adf_lookback)
    stage.warm_up(history)
    got: list[PairSnapshot] = []
    stage.add_listener(lambda pairs, _symbols: got.extend(pairs))
    stage.on_bars(sorted((b for bars in closed for b in bars if b.ts >= cut), key=lambda b: b.ts))
    for window in WINDOWS:
        expected = batch(db, specs[0], window)
        index = {int(t): i for i, t in enumerate(expected["ts"])}
        rows = [s for s in got if s.window == window]
        assert len(rows) > 100
        for s in rows:
            i = index[s.ts]
            for name in METRICS:
                e = float(expected[name][i])
                assert (math.isnan(e) and math.isnan(s.metrics[name])) or math.isclose(
                    s.metrics[name], e, rel_tol=1e-9, abs_tol=1e-12
                ), (name, s.ts)


def test_the_stage_counters_reach_health_and_feed_stats(live_run: tuple[Path, Daemon]) -> None:
    db, daemon = live_run
    assert daemon.analytics is not None
    counters = daemon.analytics.counters()
    with sqlite3.connect(db) as conn:
        (detail,) = conn.execute(
            "select detail from feed_stats order by ts desc limit 1"
        ).fetchone()
        stored = conn.execute("select count(*) from analytics").fetchone()[0]
    assert json.loads(detail)["analytics"] == counters
    assert daemon.health.snapshot()["analytics"] == counters
    assert counters["pair_snapshots"] == stored  # every snapshot was written, once
    assert counters["errors"] == counters["adf_failures"] == 0
    assert counters["aligned"] * len(WINDOWS) == stored


async def test_a_restart_continues_every_metric_exactly_kalman_included(tmp_path: Path) -> None:
    # First run: a long grace keeps the last recorded second of each symbol open, as a
    # SIGTERM in the middle of a bar does; stop once everything before it is analysed.
    options = SimulatorOptions(mode="recorded", files=FILES, speed=None)
    last_seconds = [int(read_frames_with_json(Path(f))["ts"].max()) // 1000 * 1000 for f in FILES]
    async with Simulator(options) as sim:
        config = write_config(tmp_path / "p.toml", tmp_path, sim.url, grace="1h")
        first = await run_until_last_bar(config, until=min(last_seconds) - 1000)
    db = first.settings.db_path
    with sqlite3.connect(db) as conn:
        left_open = conn.execute(
            "select symbol, ts from bars where timeframe = '1s' and closed = 0 order by symbol"
        ).fetchall()
        saved = conn.execute("select window, ts from kalman_state order by window").fetchall()
    assert [(s, t) for s, t in left_open] == list(
        zip(("BTCUSDT", "ETHUSDT"), last_seconds, strict=True)
    )
    assert [w for w, _ in saved] == list(WINDOWS)
    # Second run: the recording is sent again (all duplicates); the bars left open are
    # closed at start-up and must be analysed then, and the restored Kalman filter must
    # continue as if the daemon had never stopped.
    async with Simulator(options) as sim:
        settings = load_settings(write_config(tmp_path / "p.toml", tmp_path, sim.url))
        restarted = Daemon(settings)
        stop = asyncio.Event()
        task = asyncio.create_task(restarted.run(stop))
        await asyncio.wait_for(restarted.ready.wait(), 30)
        stop.set()
        await asyncio.wait_for(task, 30)
    (spec,) = pair_specs(settings)
    for window in WINDOWS:
        rows = stored_rows(db, window)
        expected = batch(db, spec, window)
        assert rows["ts"][-1] >= min(last_seconds)
        np.testing.assert_array_equal(rows["ts"], expected["ts"])
        for name in (*METRICS, *KALMAN_METRICS, "max_abs_zscore"):
            assert_close(rows[name], expected[name], name)


async def test_the_daemon_runs_with_a_1_ms_switch_interval_and_restores_it(
    tmp_path: Path,
) -> None:
    before = sys.getswitchinterval()
    options = SimulatorOptions(mode="recorded", files=FILES, speed=None)
    async with Simulator(options) as sim:
        daemon = Daemon(load_settings(write_config(tmp_path / "p.toml", tmp_path, sim.url)))
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await asyncio.wait_for(daemon.ready.wait(), 30)
        running = sys.getswitchinterval()
        stop.set()
        await asyncio.wait_for(task, 60)
    assert running == SWITCH_INTERVAL_S == 0.001
    assert sys.getswitchinterval() == before == 0.005
