"""Alerts in a running ``pairwatch run`` process: hot reload, SIGHUP, restart, silences.

The daemon runs with its built-in simulator, one pair on 1 s bars and a 5-bar window, and
the ``log`` notifier, whose ``ALERT`` lines (and the database) are what the tests read.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from pairwatch.daemon.store import open_store
from support.process import Daemon, query

ALWAYS = """
rules:
  - name: {name}
    pair: ETHUSDT/BTCUSDT
    timeframe: 1s
    window: 5
    when: hedge_ratio > -1000000     # holds on every bar with a hedge ratio
    message: "{{pair}} beta {{hedge_ratio:.4f}}"
"""

PENDING = """
  - name: slow
    pair: ETHUSDT/BTCUSDT
    timeframe: 1s
    window: 5
    when: hedge_ratio > -1000000
    for: 1h                           # pending for the whole test
"""

INVALID = """
rules:
  - name: always
    pair: ETHUSDT/BTCUSDT
    timeframe: 1s
    window: 5
    when: zzscore > 2
"""


def write_config(tmp_path: Path, rules: str) -> Path:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(rules)
    config = tmp_path / "pairwatch.toml"
    config.write_text(
        f"""
data_dir = "{tmp_path / "data"}"
log_level = "INFO"

[feed]
source = "simulator"
symbols = ["BTCUSDT", "ETHUSDT"]

[bars]
timeframes = ["1s"]

[alerts]
rules_file = "{rules_file}"
watch_interval = "200ms"

[[pairs]]
y = "ETHUSDT"
x = "BTCUSDT"
windows = [5]
adf_lookback = 50
adf_refresh = "1h"
"""
    )
    return config


def db_of(tmp_path: Path) -> Path:
    return tmp_path / "data" / "pairwatch.sqlite3"


def pairwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pairwatch", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def wait_for_rows(db: Path, sql: str, n: int = 1, timeout: float = 30.0) -> list[tuple]:  # noqa: ASYNC109
    """Wait until ``sql`` returns at least ``n`` rows (the daemon writes in its own time)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                rows = query(db, sql)
            except sqlite3.OperationalError:  # not created yet
                rows = []
            if len(rows) >= n:
                return rows
            await asyncio.sleep(0.1)


async def test_hot_reload_valid_invalid_valid_and_sighup(tmp_path: Path) -> None:
    config = write_config(tmp_path, ALWAYS.format(name="always"))
    rules_file = tmp_path / "rules.yaml"
    daemon = Daemon(config)
    await daemon.start()
    fired = await daemon.wait_for_line("ALERT [warning] firing always ETHUSDT/BTCUSDT 1s w5")
    assert "ETHUSDT/BTCUSDT beta " in fired

    rules_file.write_text(INVALID)  # a save with a mistake: the old rules keep running
    await daemon.wait_for_line("rules reload (file changed) failed")
    problem = await daemon.wait_for_line("rules.yaml:7:")
    assert "zzscore" in problem
    assert "unknown metric" in problem
    notice = await daemon.wait_for_line("ALERT [warning] rules reload failed")
    assert "the previous rules keep running" in notice

    rules_file.write_text(ALWAYS.format(name="renamed"))  # fixed: the new rules apply
    await daemon.wait_for_line("rules reloaded (file changed): 1 rules")
    gone = await daemon.wait_for_line("resolved always ETHUSDT/BTCUSDT")
    assert "rule removed or changed" in gone
    await daemon.wait_for_line("firing renamed ETHUSDT/BTCUSDT")

    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    await daemon.wait_for_line("rules reloaded (SIGHUP): 1 rules")
    code, _ = await daemon.terminate()
    assert code == 0

    db = db_of(tmp_path)
    kinds = query(db, "select rule, kind from alert_events where notify = 1 order by id")
    assert kinds == [("always", "firing"), ("always", "resolved"), ("renamed", "firing")]
    outbox = query(db, "select key, delivered_at is not null from outbox order by id")
    assert [k.split("|")[:2] for k, _ in outbox] == [
        ["always", "ETHUSDT/BTCUSDT"],
        ["notice", "rules reload failed"],
        ["always", "ETHUSDT/BTCUSDT"],
        ["renamed", "ETHUSDT/BTCUSDT"],
    ]
    assert all(done for _, done in outbox)
    assert query(db, "select rule, phase from alert_state") == [("renamed", "firing")]


async def test_a_restart_keeps_firing_and_pending_alerts_and_resumes_the_outbox(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, ALWAYS.format(name="always") + PENDING)
    db = db_of(tmp_path)
    daemon = Daemon(config)
    await daemon.start()
    await daemon.wait_for_line("ALERT [warning] firing always")
    (since,) = await wait_for_rows(
        db, "select since from alert_state where rule = 'slow' and phase = 'pending'"
    )
    code, _ = await daemon.terminate()
    assert code == 0
    events = query(db, "select id, rule, kind from alert_events order by id")
    assert [(r, k) for _, r, k in events] == [("always", "firing"), ("slow", "pending")]
    assert query(db, "select count(*), count(delivered_at) from outbox") == [(1, 1)]
    bars = query(db, "select count(*) from analytics")[0][0]
    # A notification stored but not delivered when the daemon stopped (as after a crash):
    with sqlite3.connect(db) as conn:
        conn.execute(
            "insert into outbox (key, notifier, route, payload, created_at, next_attempt_at) "
            "values ('left-over|1', 'log', '{}', "
            '\'{"type":"notice","title":"left over","text":"from the last run"}\', 1, 1)'
        )

    again = Daemon(config)
    await again.start()
    await again.wait_for_text("ALERT [warning] left over: from the last run")
    await wait_for_rows(db, "select 1 from analytics", bars + 5)  # five more bars evaluated
    code, _ = await again.terminate()
    assert code == 0
    assert query(db, "select id, rule, kind from alert_events order by id") == events
    assert not any("firing always" in line for line in again.lines)  # not notified twice
    assert query(db, "select since from alert_state where rule = 'slow'") == [since]
    assert query(db, "select phase from alert_state where rule = 'always'") == [("firing",)]
    assert query(db, "select key, delivered_at is not null from outbox order by id") == [
        (query(db, "select key from alert_events where kind = 'firing'")[0][0], 1),
        ("left-over|1", 1),
    ]


async def test_a_muted_firing_is_recorded_and_notified_when_unmuted(tmp_path: Path) -> None:
    config = write_config(tmp_path, ALWAYS.format(name="always"))
    db = db_of(tmp_path)
    open_store(db).close()  # the daemon's database, before its first run
    muted = pairwatch("mute", "all", "1h", "--config", str(config), "--reason", "maintenance")
    assert muted.returncode == 0, muted.stderr
    assert muted.stdout.startswith("muted every rule for 1h, until ")
    listed = pairwatch("mute", "--list", "--config", str(config))
    assert "maintenance" in listed.stdout
    assert listed.stdout.splitlines()[1].startswith("all ")

    daemon = Daemon(config)
    await daemon.start()
    await wait_for_rows(db, "select 1 from alert_events where kind = 'firing' and silenced = 1")
    assert query(db, "select count(*) from outbox") == [(0,)]  # recorded, not notified
    unmuted = pairwatch("unmute", "all", "--config", str(config))
    assert unmuted.stdout.strip() == "ended 1 silence(s) of all"
    await daemon.wait_for_line("ALERT [warning] firing always")  # told once the silence ends
    code, _ = await daemon.terminate()
    assert code == 0
    assert query(db, "select count(*) from outbox where delivered_at is not null") == [(1,)]
    assert pairwatch("mute", "--list", "--config", str(config)).stdout == "no active silences\n"


def test_mute_refuses_unknown_rules_and_bad_durations(tmp_path: Path) -> None:
    config = write_config(tmp_path, ALWAYS.format(name="always"))
    db = db_of(tmp_path)
    db.parent.mkdir()
    sqlite3.connect(db).close()
    missing = pairwatch("mute", "nope", "1h", "--config", str(config))
    assert missing.returncode == 2
    assert "no rule 'nope'" in missing.stderr
    assert "always" in missing.stderr
    bad = pairwatch("mute", "always", "soon", "--config", str(config))
    assert bad.returncode == 2
    assert "DURATION 'soon'" in bad.stderr
    ok = pairwatch("mute", "always", "90m", "--target", "ethusdt/btcusdt", "--config", str(config))
    assert ok.returncode == 0, ok.stderr
    assert "muted rule always on ETHUSDT/BTCUSDT for 1h30m" in ok.stdout
    assert query(db, "select rule, target, ends_at - starts_at from silences") == [
        ("always", "ETHUSDT/BTCUSDT", 5_400_000)
    ]


async def test_the_demo_runs_the_example_rules_and_its_z_rule_fires_within_two_minutes(
    tmp_path: Path,
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pairwatch", "demo", "--data-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(120):
            while not any("ALERT [info] firing ethbtc-z-fast" in line for line in lines):
                raw = await process.stdout.readline()
                assert raw, "demo exited:\n" + "".join(lines)
                lines.append(raw.decode())
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert f"alert rules {tmp_path / 'rules.yaml'}" in "".join(lines)
    example = Path(__file__).parents[2] / "config" / "rules.example.yaml"
    assert (tmp_path / "rules.yaml").read_text() == example.read_text()  # its own copy
    assert "ETHUSDT/BTCUSDT z = " in lines[-1]
    assert b"stopped: " in rest
