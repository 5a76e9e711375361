"""``pairwatch rules test``: a backtest on replayed real trades equals a hand-written reference."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pairwatch.config.load import load_settings
from pairwatch.config.rules_load import load_rules
from pairwatch.daemon import store_reads
from pairwatch.daemon.backtest import run_backtest

REAL = Path(__file__).resolve().parents[1] / "data" / "real"
SPOT = sorted(REAL.glob("hftbacktest_spot_*usdt_20240808_trades.gz"))
SETTINGS = """
[feed]
symbols = ["BTCUSDT", "ETHUSDT"]
[bars]
timeframes = ["1s"]
[[pairs]]
y = "ETHUSDT"
x = "BTCUSDT"
windows = [30]
"""
RULES = """
rules:
  - name: ethbtc-z
    pair: ETHUSDT/BTCUSDT
    timeframe: 1s
    window: 30
    when: abs(zscore) >= 2
    for: 3 bars
    clear: abs(zscore) < 0.5
    message: "{pair} z = {zscore:+.2f}"
  - name: stale
    symbol: "*"
    when: seconds_since_trade > 30
"""


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pairwatch", "rules", "test", *map(str, args)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("backtest")
    (tmp / "p.toml").write_text(SETTINGS)
    (tmp / "rules.yaml").write_text(RULES)
    db = tmp / "replay.sqlite3"
    replay = subprocess.run(
        [sys.executable, "-m", "pairwatch", "replay", *map(str, SPOT), "--db", str(db),
         "--config", str(tmp / "p.toml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    return tmp / "p.toml", tmp / "rules.yaml", db


def reference(z: np.ndarray, closes: np.ndarray) -> list[tuple[str, int]]:
    """Fire after 3 consecutive bars with |z| >= 2; resolve once |z| < 0.5 (NaN: skipped)."""
    out, held, firing = [], 0, False
    for value, at in zip(z, closes, strict=True):
        if np.isnan(value):
            continue
        if firing:
            if abs(value) < 0.5:
                out.append(("resolved", int(at)))
                firing = False
            continue
        held = held + 1 if abs(value) >= 2 else 0
        if held >= 3:
            out.append(("firing", int(at)))
            firing, held = True, 0
    return out


def test_the_backtest_makes_the_transitions_of_a_reference(files: tuple[Path, Path, Path]) -> None:
    config, rules_file, db = files
    settings = load_settings(config)
    rules = load_rules(rules_file, settings)
    with sqlite3.connect(db) as conn:
        result = run_backtest(conn, rules, settings)
        rows = store_reads.load_pair_analytics(conn, "ETHUSDT", "BTCUSDT", "1s", 30)
    expected = reference(rows["zscore"], rows["ts"] + 1000)
    got = [(e.kind, e.at) for e in result.events if e.kind in ("firing", "resolved")]
    assert got == expected
    assert len(expected) >= 4  # the recording does stretch the spread
    fires = sum(kind == "firing" for kind, _ in expected)
    assert result.summary["ethbtc-z"].fires == fires
    assert result.skipped == ["stale"]
    assert result.evaluations == len(rows["ts"])


def test_the_cli_prints_the_table_and_the_summary(files: tuple[Path, Path, Path]) -> None:
    config, rules_file, db = files
    done = cli(rules_file, "--db", db, "--config", config)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["time", "(UTC)", "rule", "target", "kind", "value", "message"]
    firing = [line for line in lines if "  firing  " in line]
    assert firing
    assert all("ETHUSDT/BTCUSDT z = " in line for line in firing)
    assert any(line.startswith("ethbtc-z") and line.split()[1] == str(len(firing))
               for line in lines)  # fmt: skip
    assert "stale: not tested (health metrics have no history)" in lines
    # The same from the recorded files directly, and a time window that cuts everything.
    again = cli(rules_file, "--replay", *SPOT, "--config", config)
    assert again.returncode == 0, again.stderr
    assert again.stdout == done.stdout
    empty = cli(rules_file, "--db", db, "--config", config, "--from", "2030-01-01")
    assert empty.returncode == 0
    assert "  firing  " not in empty.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--db", "missing.sqlite3"), "missing.sqlite3: no such file"),
        (("--db", "x.sqlite3", "--from", "yesterday"), "--from: 'yesterday' is not an ISO time"),
    ],
)
def test_bad_arguments_exit_2(
    files: tuple[Path, Path, Path], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    config, rules_file, _ = files
    (tmp_path / "x.sqlite3").touch()
    done = subprocess.run(
        [sys.executable, "-m", "pairwatch", "rules", "test", str(rules_file), *args,
         "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
