"""``pairwatch replay`` end to end on real recorded Binance data, against a pandas oracle."""

from __future__ import annotations

import gzip
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from support.oracle import read_frames_with_json, resample_oracle

DATA = Path(__file__).resolve().parents[1] / "data"
REAL = DATA / "real"
SPOT = sorted(REAL.glob("hftbacktest_spot_*_trades.gz"))
TIMEFRAMES = {"1s": 1_000, "1m": 60_000, "5m": 300_000}


def replay(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pairwatch", "replay", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stored_bars(db: Path, symbol: str, timeframe: str) -> pd.DataFrame:
    with sqlite3.connect(db) as conn:
        return pd.read_sql_query(
            "select ts, open, high, low, close, volume, quote_volume, vwap, trades, "
            "taker_buy_volume, filled, closed from bars where symbol = ? and timeframe = ? "
            "order by ts",
            conn,
            params=(symbol, timeframe),
        )


def assert_matches_oracle(stored: pd.DataFrame, trades: pd.DataFrame, length: int) -> None:
    expected = resample_oracle(trades, length)
    assert len(stored) == len(expected) > 0
    for column in ["ts", "open", "high", "low", "close", "trades"]:
        np.testing.assert_array_equal(stored[column], expected[column], column)
    np.testing.assert_array_equal(stored["filled"].astype(bool), expected["filled"])
    for column in ["volume", "quote_volume", "taker_buy_volume", "vwap"]:
        np.testing.assert_allclose(
            stored[column].astype(float), expected[column], rtol=1e-12, err_msg=column
        )
    assert (stored["closed"] == 1).all()


@pytest.fixture(scope="module")
def spot_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("replay") / "bars.sqlite3"
    result = replay(*SPOT, "--db", db, *[a for tf in TIMEFRAMES for a in ("--timeframe", tf)])
    assert result.returncode == 0, result.stderr
    return db, result.stdout


def test_spot_recordings_replay_into_bars_equal_to_pandas(spot_db: tuple[Path, str]) -> None:
    db, _ = spot_db
    trades = pd.concat([read_frames_with_json(path) for path in SPOT])
    for symbol, group in trades.groupby("symbol"):
        rows = group.sort_values("id")
        for label, length in TIMEFRAMES.items():
            assert_matches_oracle(stored_bars(db, str(symbol), label), rows, length)


def test_replay_reports_what_it_did_and_finds_no_gaps(spot_db: tuple[Path, str]) -> None:
    db, stdout = spot_db
    # 19,904 BTC + 14,515 ETH trades per SOURCES.md; the day files join without a gap.
    assert "replayed 34,419 trades (34,419 accepted; rejected: none)" in stdout
    assert ", 0 gaps," in stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from gaps").fetchone() == (0,)
        assert conn.execute("pragma integrity_check").fetchone() == ("ok",)


def test_replaying_again_and_overlapping_files_change_nothing(
    spot_db: tuple[Path, str], tmp_path: Path
) -> None:
    db, _ = spot_db
    copy = tmp_path / "again.sqlite3"
    first = replay(*SPOT, "--db", copy)
    second = replay(*SPOT, *SPOT[:2], "--db", copy)  # the same files again, some twice
    assert first.returncode == second.returncode == 0, second.stderr
    # The second run sees every id again: all of them are duplicates of the first run? No:
    # each run starts fresh, so only the files given twice repeat (BTC 20240808 and 20240809).
    assert "rejected: duplicate=19,904)" in second.stdout
    for label in TIMEFRAMES:
        for symbol in ("BTCUSDT", "ETHUSDT"):
            pd.testing.assert_frame_equal(
                stored_bars(copy, symbol, label), stored_bars(db, symbol, label)
            )


USDM = sorted(REAL.glob("hftbacktest_usdm_*"))
AGG = [REAL / "cryptofeed_BINANCE-ee25be_aggtrades.txt.gz"]


@pytest.mark.parametrize("files", [USDM, AGG], ids=["usdm-trades", "spot-aggtrades"])
def test_usdm_and_aggtrade_recordings(files: list[Path], tmp_path: Path) -> None:
    db = tmp_path / "bars.sqlite3"
    result = replay(*files, "--db", db, "--timeframe", "1s", "--timeframe", "1m")
    assert result.returncode == 0, result.stderr
    trades = pd.concat([read_frames_with_json(path) for path in files])
    for symbol, group in trades.groupby("symbol"):
        rows = group.sort_values("id")
        for label in ("1s", "1m"):
            assert_matches_oracle(stored_bars(db, str(symbol), label), rows, TIMEFRAMES[label])
    with sqlite3.connect(db) as conn:
        total = conn.execute("select sum(trades) from bars where timeframe = '1m'").fetchone()[0]
    assert total == int(trades["count"].sum())  # aggTrades count l - f + 1 trades each


SPOT_AGG_2024 = DATA / "csvdump" / "spot" / "BTCUSDT-aggTrades-2024-08-08.csv"


def test_files_years_apart_leave_a_hole_not_invented_bars(tmp_path: Path) -> None:
    """2021 and 2024 spot aggTrades of BTCUSDT: carrying stops after max_fill (1 h)."""
    apart, first, second = (tmp_path / f"{name}.sqlite3" for name in ("apart", "a", "b"))
    args = ("--timeframe", "1m", "--symbol", "BTCUSDT")
    assert replay(*AGG, SPOT_AGG_2024, "--db", apart, *args).returncode == 0
    assert replay(*AGG, "--db", first, *args).returncode == 0
    assert replay(SPOT_AGG_2024, "--db", second, *args).returncode == 0
    both = stored_bars(apart, "BTCUSDT", "1m")
    early, late = stored_bars(first, "BTCUSDT", "1m"), stored_bars(second, "BTCUSDT", "1m")
    carried = both[(both["ts"] > early["ts"].max()) & (both["ts"] < late["ts"].min())]
    assert len(carried) == 60  # one hour of 1m bars carried, then the hole
    assert carried["filled"].all()
    assert (carried["close"] == early["close"].iloc[-1]).all()
    pd.testing.assert_frame_equal(
        pd.concat([early, carried, late], ignore_index=True), both, check_dtype=False
    )


def test_mixing_spot_and_futures_of_one_symbol_is_refused(tmp_path: Path) -> None:
    spot = REAL / "hftbacktest_spot_btcusdt_20240808_trades.gz"
    usdm = REAL / "hftbacktest_usdm_btcusdt_20240808_trades.gz"
    result = replay(spot, usdm, "--db", tmp_path / "mixed.sqlite3")
    assert result.returncode == 2
    assert result.stderr == (
        "pairwatch: BTCUSDT: the input mixes spot trade and usdm trade data; "
        "replay each into its own database\n"
    )


def test_csv_dumps_replay_like_their_rows(tmp_path: Path) -> None:
    dumps = DATA / "csvdump"
    source = dumps / "spot" / "BTCUSDT-trades-2024-08-08.csv"
    db = tmp_path / "bars.sqlite3"
    result = replay(source, "--db", db, "--timeframe", "1s")
    assert result.returncode == 0, result.stderr
    raw = pd.read_csv(source, header=None)
    trades = pd.DataFrame(
        {
            "ts": raw[4],
            "price": raw[1].astype(float),
            "qty": raw[2].astype(float),
            "maker": raw[5].astype(str).str.lower() == "true",
            "count": 1,
        }
    )
    assert_matches_oracle(stored_bars(db, "BTCUSDT", "1s"), trades, 1_000)


def test_bad_arguments_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    missing = replay(tmp_path / "nope.csv", "--db", tmp_path / "x.sqlite3")
    assert missing.returncode == 2
    assert f"{tmp_path / 'nope.csv'}: no such file" in missing.stderr
    bad_tf = replay(*SPOT[:1], "--db", tmp_path / "x.sqlite3", "--timeframe", "7x")
    assert bad_tf.returncode == 2
    assert "--timeframe: invalid timeframe '7x'" in bad_tf.stderr
    assert "Traceback" not in missing.stderr + bad_tf.stderr


def test_unreadable_lines_and_a_cut_short_file_are_counted_not_fatal(tmp_path: Path) -> None:
    source = REAL / "hftbacktest_spot_ethusdt_20240808_trades.gz"
    lines = gzip.decompress(source.read_bytes()).splitlines(keepends=True)
    damaged = tmp_path / "damaged.txt"
    damaged.write_bytes(
        b"".join([*lines[:100], b"1723161255 {not json\n", b"\xff\xfe garbage\n", *lines[100:200]])
    )
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(b"".join(lines[200:1000]))[:-200])  # a recorder that died
    result = replay(damaged, cut, "--db", tmp_path / "bars.sqlite3", "--timeframe", "1s")
    assert result.returncode == 0, result.stderr
    assert "malformed_line=2" in result.stdout
    assert "truncated_file=1" in result.stdout
    with sqlite3.connect(tmp_path / "bars.sqlite3") as conn:
        (stored,) = conn.execute("select sum(trades) from bars where timeframe = '1s'").fetchone()
    assert 200 < stored < 1000  # every readable trade before the cut
