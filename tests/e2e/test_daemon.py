"""``pairwatch run`` as a real process against the simulator: SIGTERM, restart, bad config."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import websockets

from pairwatch.daemon import store
from pairwatch.daemon.sources.simulator import Simulator, SimulatorOptions
from support.process import Daemon, query

RATE = 400.0  # trades per second over both symbols


def write_config(path: Path, data_dir: Path, base_url: str, feed_extra: str = "") -> Path:
    path.write_text(
        f"""
data_dir = "{data_dir}"
log_level = "INFO"

[feed]
base_url = "{base_url}"
symbols = ["BTCUSDT", "ETHUSDT"]
backoff_initial = "50ms"
backoff_max = "200ms"
{feed_extra}

[storage]
store_ticks = true
"""
    )
    return path


def accepted(stopped_line: str) -> int:
    match = re.search(r"stopped: (\d+) trades accepted", stopped_line)
    assert match is not None, stopped_line
    return int(match.group(1))


def assert_bars_hold_every_tick(db: Path) -> None:
    """Every stored trade is counted exactly once in the 1s, 1m and 5m bars."""
    ticks = dict(query(db, "select symbol, count(*) from ticks group by symbol"))
    for timeframe in ("1s", "1m", "5m"):
        counted = dict(
            query(
                db,
                "select symbol, sum(trades) from bars "
                f"where timeframe = '{timeframe}' group by symbol",
            )
        )
        assert counted == ticks, timeframe
    assert query(db, "pragma integrity_check") == [("ok",)]


async def test_sigterm_loses_nothing_and_restart_neither_loses_nor_duplicates(
    tmp_path: Path,
) -> None:
    options = SimulatorOptions(rate=RATE, seed=3)
    async with Simulator(options) as sim:
        config = write_config(tmp_path / "pairwatch.toml", tmp_path / "data", sim.url)
        db = tmp_path / "data" / "pairwatch.sqlite3"

        first = Daemon(config)
        await first.start()
        await sim.wait_until(lambda: sim.connections[0].messages >= 800)
        code, stopped = await first.terminate()
        assert code == 0
        run1 = accepted(stopped)
        assert run1 >= 800
        assert query(db, "select count(*) from ticks") == [(run1,)]
        # Everything received is stored: the ids are exactly what the simulator sent first.
        for symbol in ("BTCUSDT", "ETHUSDT"):
            stored = [
                r[0]
                for r in query(
                    db, f"select trade_id from ticks where symbol = '{symbol}' order by trade_id"
                )
            ]
            sent = sim.connections[0].ids(f"{symbol.lower()}@trade")
            assert stored == sent[: len(stored)]
            state = query(db, f"select last_trade_id from symbol_state where symbol = '{symbol}'")
            assert state == [(stored[-1],)]
        assert_bars_hold_every_tick(db)
        first_bars = query(db, "select count(*) from bars")[0][0]

        # The market goes on while the daemon is down; the restart records that gap.
        await sim.wait_until(lambda: sim.log_end >= sim.connections[0].messages + 200)
        second = Daemon(config)
        await second.start()
        await sim.wait_until(
            lambda: len(sim.connections) == 2 and sim.connections[1].messages >= 400
        )
        code, stopped = await second.terminate()
        assert code == 0
        run2 = accepted(stopped)

    assert query(db, "select count(*) from ticks") == [(run1 + run2,)]
    assert_bars_hold_every_tick(db)
    assert query(db, "select count(*) from bars")[0][0] > first_bars
    duplicated = "select symbol, timeframe, ts from bars group by 1, 2, 3 having count(*) > 1"
    assert query(db, f"select count(*) from ({duplicated})") == [(0,)]
    gaps = query(db, "select symbol, from_id, to_id from gaps order by symbol")
    assert {g[0] for g in gaps} == {"BTCUSDT", "ETHUSDT"}
    for symbol, from_id, to_id in gaps:
        ids = [
            r[0]
            for r in query(
                db, f"select trade_id from ticks where symbol = '{symbol}' order by trade_id"
            )
        ]
        # The gap is exactly the ids between the two runs.
        assert from_id - 1 in ids  # type: ignore[operator]
        assert to_id + 1 in ids  # type: ignore[operator]
        assert not [i for i in ids if from_id <= i <= to_id]  # type: ignore[operator]


def test_a_bad_config_file_exits_2_naming_file_line_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[feed]\nmarket = "spott"\ncolour = "red"\n\n[bars]\ntimeframes = ["1m", "7x"]\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "pairwatch", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"pairwatch: {config}:2: feed.market: ")
    assert "'spott'" in lines[0]
    assert lines[1] == f"pairwatch: {config}:3: feed.colour: unknown key"
    assert lines[2].startswith(f"pairwatch: {config}:6: bars.timeframes")
    assert "'7x'" in lines[2]
    assert "Traceback" not in result.stderr


def test_demo_runs_offline_and_exits_after_its_duration(tmp_path: Path) -> None:
    def demo() -> subprocess.CompletedProcess[str]:
        command = ["demo", "--duration", "4", "--data-dir", str(tmp_path)]
        return subprocess.run(
            [sys.executable, "-m", "pairwatch", *command],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    result = demo()
    assert result.returncode == 0, result.stderr
    again = demo()  # the same data directory: the simulator's ids continue, none is a duplicate
    assert again.returncode == 0, again.stderr
    summary = again.stdout.strip().splitlines()[-2]
    assert re.search(r"demo: [1-9][\d,]* trades, \d+ bars closed, 0 rejected", summary), summary
    snapshots = again.stdout.strip().splitlines()[-1]
    assert re.search(r"demo: [1-9][\d,]* pair snapshots, \d+ ADF refreshes", snapshots)
    assert f"bars go to {tmp_path / 'pairwatch.sqlite3'}" in result.stdout
    db = tmp_path / "pairwatch.sqlite3"
    symbols = {
        row[0] for row in query(db, "select distinct symbol from bars where timeframe = '1s'")
    }
    assert symbols == {"BTCUSDT", "ETHUSDT"}
    assert query(db, "select count(*) from bars where timeframe = '1s' and closed = 1")[0][0] >= 4
    # Without configured pairs the demo analyses ETHUSDT/BTCUSDT, windows 30 and 100.
    pairs = query(db, "select distinct y, x, timeframe, window from analytics order by 3, 4")
    assert ("ETHUSDT", "BTCUSDT", "1s", 30) in pairs
    assert ("ETHUSDT", "BTCUSDT", "1s", 100) in pairs


async def test_simulate_serves_binance_frames_until_terminated() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pairwatch", "simulate", "--port", "0", "--rate", "200",
        "--symbols", "BTCUSDT,ETHUSDT", "--log-level", "WARNING",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    match = re.search(r"serving (ws://\S+)", line)
    assert match is not None, line
    async with websockets.connect(match.group(1)) as ws:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert frame["stream"] in {"btcusdt@trade", "ethusdt@trade"}
    assert list(frame["data"]) == ["e", "E", "s", "t", "p", "q", "T", "m", "M"]
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 30) == 0


def test_retention_sweeps_old_bars_at_start(tmp_path: Path) -> None:
    db = tmp_path / "pairwatch.sqlite3"
    store.open_store(db).close()
    now = int(time.time() * 1000)
    old, recent = now - 3 * 86_400_000, now - 3_600_000
    with sqlite3.connect(db) as conn:
        for ts, timeframe in ((old, "1s"), (recent, "1s"), (old, "1m")):
            conn.execute(
                "insert into bars values ('BTCUSDT', ?, ?, 1, 1, 1, 1, 0, 0, null, 0, 0, 1, 1, ?)",
                (timeframe, ts - ts % 1000, now),
            )
    config = tmp_path / "retention.toml"
    config.write_text('[storage.retention.bars]\n1s = "1d"\n')
    result = subprocess.run(
        [sys.executable, "-m", "pairwatch", "demo", "--config", str(config),
         "--duration", "2", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    kept = query(db, f"select timeframe, ts from bars where ts < {now - 1_800_000} order by 1, 2")
    assert kept == [("1m", old - old % 1000), ("1s", recent - recent % 1000)]


async def test_streams_split_over_connections_and_final_counters_are_stored(
    tmp_path: Path,
) -> None:
    async with Simulator(SimulatorOptions(rate=RATE, seed=5)) as sim:
        config = write_config(
            tmp_path / "pairwatch.toml", tmp_path, sim.url, "max_streams_per_connection = 1"
        )
        daemon = Daemon(config)
        await daemon.start()
        await sim.wait_until(
            lambda: len(sim.connections) == 2 and min(c.messages for c in sim.connections) >= 200
        )
        code, stopped = await daemon.terminate()
    assert code == 0
    assert sorted(c.requested[0] for c in sim.connections) == ["btcusdt@trade", "ethusdt@trade"]
    db = tmp_path / "pairwatch.sqlite3"
    ((source, accepted_total, reconnects),) = query(
        db, "select source, accepted, reconnects from feed_stats"
    )
    assert (source, accepted_total, reconnects) == ("spot", accepted(stopped), 0)
    assert_bars_hold_every_tick(db)
