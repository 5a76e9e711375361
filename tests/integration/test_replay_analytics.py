"""``pairwatch replay --pair --window``: a replay fills the analytics tables like the live path."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pairwatch.analytics.engine import ADF_METRICS, PairEngine, PairSpec, engle_granger
from pairwatch.analytics.kalman import KALMAN_METRICS
from pairwatch.analytics.rolling_ols import METRICS
from pairwatch.daemon import store_reads

REAL = Path(__file__).resolve().parents[1] / "data" / "real"
SPOT = sorted(REAL.glob("hftbacktest_spot_*usdt_20240808_trades.gz"))
WINDOWS = (30, 120)


def replay(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pairwatch", "replay", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("replay") / "pairs.sqlite3"
    windows = [a for w in WINDOWS for a in ("--window", str(w))]
    result = replay(
        *SPOT, "--db", db, "--timeframe", "1s", "--timeframe", "1m",
        "--pair", "ETHUSDT/BTCUSDT", *windows,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return db, result.stdout


def closed_bars(db: Path) -> list[object]:
    with sqlite3.connect(db) as conn:
        bars = [
            b
            for symbol in ("BTCUSDT", "ETHUSDT")
            for b in store_reads.load_recent_closed_bars(conn, symbol, "1s", 1_000_000)
        ]
    return sorted(bars, key=lambda b: b.ts)  # type: ignore[attr-defined,no-any-return]


def test_replayed_analytics_equal_the_live_engine_on_the_same_bars(
    replayed: tuple[Path, str],
) -> None:
    db, stdout = replayed
    engine = PairEngine([PairSpec("ETHUSDT", "BTCUSDT", "1s", 1000, WINDOWS)])
    live, _ = engine.on_bars(closed_bars(db))  # type: ignore[arg-type]
    with sqlite3.connect(db) as conn:
        for window in WINDOWS:
            rows = store_reads.load_pair_analytics(conn, "ETHUSDT", "BTCUSDT", "1s", window)
            snapshots = [s for s in live if s.window == window]
            assert len(snapshots) == len(rows["ts"]) > 300
            np.testing.assert_array_equal(rows["ts"], [s.ts for s in snapshots])
            for name in METRICS + KALMAN_METRICS:
                expected = np.array([s.metrics[name] for s in snapshots])
                got = rows[name]
                np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), name)
                ok = ~np.isnan(expected)
                np.testing.assert_allclose(got[ok], expected[ok], rtol=1e-9, atol=1e-12)
    assert "analysed: " in stdout
    # The filter's final state is saved, so a daemon on this file continues it exactly.
    with sqlite3.connect(db) as conn:
        states = {s.window: s for s in store_reads.load_kalman_states(conn)}
    assert sorted(states) == list(WINDOWS)
    last = [s for s in live if s.window == WINDOWS[0]][-1]
    for state in states.values():
        assert state.ts == last.ts
        assert state.state[:2] == (last.metrics["kalman_beta"], last.metrics["kalman_alpha"])


def test_adf_values_are_refreshed_on_the_bar_clock(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text(
        '[feed]\nsymbols = ["BTCUSDT", "ETHUSDT"]\n[bars]\ntimeframes = ["1s"]\n'
        '[[pairs]]\ny = "ETHUSDT"\nx = "BTCUSDT"\nadf_lookback = 100\nadf_refresh = "30s"\n'
    )
    db = tmp_path / "adf.sqlite3"
    result = replay(*SPOT, "--db", db, "--config", config)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as conn:
        rows = store_reads.load_pair_analytics(conn, "ETHUSDT", "BTCUSDT", "1s", 100)
        legs = store_reads.load_aligned_closes(conn, "ETHUSDT", "BTCUSDT", "1s")
    x, y = np.log(legs["x_close"]), np.log(legs["y_close"])
    closes = legs["ts"] + 1000
    stamps = np.unique(rows["adf_at"][~np.isnan(rows["adf_at"])])
    # Refresh every 30 s of bar time once the 100-bar lookback is full: ~8 in 346 s.
    assert len(stamps) >= 7
    assert all(int(at) % 30_000 == 0 for at in stamps)
    for at in stamps:
        end = int(np.flatnonzero(closes == at)[0]) + 1  # the refresh saw bars up to this one
        assert end >= 100
        expected = engle_granger(x[end - 100 : end], y[end - 100 : end])
        first = int(np.flatnonzero(rows["adf_at"] == at)[0])
        assert first == end  # and applies from the next bar on
        assert {n: float(rows[n][first]) for n in ADF_METRICS} == expected
    assert math.isnan(rows["adf_stat"][0])


def test_symbol_analytics_cover_both_legs_and_every_window(replayed: tuple[Path, str]) -> None:
    db, _ = replayed
    with sqlite3.connect(db) as conn:
        counts = conn.execute(
            "select symbol, timeframe, window, count(*) from symbol_analytics "
            "group by symbol, timeframe, window order by 1, 2, 3"
        ).fetchall()
        bars = dict(
            conn.execute(
                "select symbol || timeframe, count(*) from bars where closed = 1 "
                "group by symbol, timeframe"
            ).fetchall()
        )
    assert [(s, tf, w) for s, tf, w, _ in counts] == [
        (s, tf, w) for s in ("BTCUSDT", "ETHUSDT") for tf in ("1m", "1s") for w in WINDOWS
    ]
    assert all(n == bars[s + tf] for s, tf, _, n in counts)


def test_replaying_again_is_idempotent(replayed: tuple[Path, str]) -> None:
    db, _ = replayed
    query = "select count(*), total(zscore), total(kalman_beta) from analytics"
    with sqlite3.connect(db) as conn:
        before = conn.execute(query).fetchone()
    again = replay(*SPOT, "--db", db, "--timeframe", "1s", "--timeframe", "1m",
                   "--pair", "ETHUSDT/BTCUSDT", "--window", "30", "--window", "120")  # fmt: skip
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute(query).fetchone() == before


def test_configured_pairs_with_a_liquidity_filter_flag_thin_bars(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text(
        '[feed]\nsymbols = ["BTCUSDT", "ETHUSDT"]\n[bars]\ntimeframes = ["1s"]\n'
        '[[pairs]]\ny = "ETHUSDT"\nx = "BTCUSDT"\nwindows = [20]\nmin_trades = 3\n'
    )
    db = tmp_path / "thin.sqlite3"
    result = replay(*SPOT, "--db", db, "--config", config)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as conn:
        legs = store_reads.load_aligned_closes(conn, "ETHUSDT", "BTCUSDT", "1s")
        rows = store_reads.load_pair_analytics(conn, "ETHUSDT", "BTCUSDT", "1s", 20)
    thin = (legs["x_trades"] < 3) | (legs["y_trades"] < 3)
    assert 0 < thin.sum() < len(thin)
    np.testing.assert_array_equal(rows["thin"], thin)
    assert np.isnan(rows["zscore"][thin]).all()
    assert np.isfinite(rows["zscore"][~thin][20:]).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--pair", "ETHUSDT"), "--pair ETHUSDT: "),
        (("--pair", "ETHUSDT/ETHUSDT"), "two different symbols"),
        (("--pair", "ETHUSDT/BTCUSDT", "--window", "2"), "--window: windows are 3"),
        (("--window", "20"), "--window: no pair to analyse"),
    ],
)
def test_bad_pairs_and_windows_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = replay(*SPOT, "--db", tmp_path / "x.sqlite3", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
