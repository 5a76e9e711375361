"""``kill -9`` of a real ``pairwatch run`` during heavy ingest, then a restart on the same store.

The daemon (a subprocess) reads a paced synthetic market from a simulator in this process,
keeps 1 s bars and one pair, and fires alerts every bar to a webhook receiver that records
each delivery's idempotency key. It is killed with SIGKILL while trades stream in and
alerts are delivered, restarted on the same database, and stopped with SIGTERM.

What docs/operations.md ("Crash recovery") promises, checked here:

* the database is intact, bars are never duplicated, and every bar away from the crash
  equals pandas' bar of the trades the simulator sent;
* the trades lost (in flight when killed, plus those made while the daemon was down) are
  exactly one ``gaps`` row per symbol, starting just after the last checkpointed id and
  ending just before the first id of the new connection;
* every alert event has its outbox row; every notification is delivered, in order; the
  only notifications delivered twice are those delivered before the kill whose delivery
  had not been recorded yet.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pairwatch.daemon.sources.simulator import Simulator, SimulatorOptions
from support.delivered import parse_trade
from support.oracle import resample_oracle
from support.process import Daemon, kill_leftovers, query
from support.receiver import Receiver

SYMBOLS = ("BTCUSDT", "ETHUSDT")
KEY_HEADER = "x-pairwatch-key"

RULES = """
rules:
  - name: every-bar
    pair: ETHUSDT/BTCUSDT
    timeframe: 1s
    window: 5
    when: hedge_ratio > -1000000     # holds on every bar with a hedge ratio
    repeat_every: 1s                 # so: one notification per bar
    notify: [webhook]
  - name: crossing
    pair: ETHUSDT/BTCUSDT
    timeframe: 1s
    window: 5
    when: zscore > 0                 # fires and resolves every few bars
    notify: [webhook]
"""


def write_config(tmp_path: Path, base_url: str, hook: str) -> Path:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    config = tmp_path / "pairwatch.toml"
    config.write_text(
        f"""
data_dir = "{tmp_path / "data"}"
log_level = "INFO"

[feed]
source = "binance"
base_url = "{base_url}"
symbols = {list(SYMBOLS)}
backoff_initial = "100ms"
backoff_max = "500ms"

[bars]
timeframes = ["1s"]

[alerts]
rules_file = "{rules}"

[webhook]
url = "{hook}"

[web]
enabled = false

[[pairs]]
y = "ETHUSDT"
x = "BTCUSDT"
windows = [5]
adf_lookback = 50
adf_refresh = "1h"
"""
    )
    return config


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture(autouse=True)
def _no_leftover_daemons() -> Iterator[None]:
    yield
    kill_leftovers()


def keys(receiver: Receiver) -> list[str]:
    """Return the idempotency keys of the webhook deliveries so far, in arrival order."""
    with receiver.got:
        return [{k.lower(): v for k, v in h.items()}[KEY_HEADER] for _, h, _ in receiver.requests]


async def received(receiver: Receiver, predicate: Callable[[list[str]], bool]) -> None:
    """Wait until ``predicate(keys)`` holds; woken by each delivery."""

    def wait() -> bool:
        with receiver.got:
            return receiver.got.wait_for(lambda: predicate(keys(receiver)), timeout=60)

    assert await asyncio.to_thread(wait), "the receiver did not get what was expected"


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    return query(db, sql)


def last_ids(db: Path) -> dict[str, int]:
    """Return each symbol's last trade id in ``symbol_state`` (the restart point)."""
    state = query(db, "select symbol, last_trade_id from symbol_state")
    return {str(s): int(i) for s, i in state}  # type: ignore[call-overload]


def sent_trades(sim: Simulator, number: int) -> pd.DataFrame:
    """Return the trades the simulator sent on connection ``number`` (1-based), from its log."""
    record = sim.connections[number - 1]
    log = sim.feed.log
    assert log.base == 0  # nothing trimmed: every frame is still there to look up
    wanted = {f"{s.lower()}@trade": s for s in SYMBOLS}
    by_id: dict[tuple[str, int], tuple[object, ...]] = {}
    for frame, ident in zip(log.frames, log.ids, strict=True):
        row = parse_trade(frame, SYMBOLS)
        if row is not None:
            by_id[(str(row[0]), ident)] = row
    out = [by_id[(symbol, i)] for stream, symbol in wanted.items() for i in record.ids(stream)]
    return pd.DataFrame(out, columns=["symbol", "id", "ts", "price", "qty", "maker", "count"])


async def test_kill_9_during_heavy_ingest_then_restart_loses_and_doubles_only_what_is_documented(
    tmp_path: Path, receiver: Receiver
) -> None:
    options = SimulatorOptions(symbols=SYMBOLS, rate=1500.0, speed=1.0, event_clock="wall")
    db = tmp_path / "data" / "pairwatch.sqlite3"
    async with Simulator(options) as sim:
        config = write_config(tmp_path, sim.url, f"{receiver.url}/hook")
        first = Daemon(config)
        await first.start()
        await received(receiver, lambda k: len(k) >= 6)  # alerts flowing, trades streaming
        assert first.process is not None
        first.process.kill()  # SIGKILL: no checkpoint, no flush, no goodbye
        await first.process.wait()
        await sim.wait_until(lambda: sim.connections[0].closed)
        before_restart = keys(receiver)
        # What the crash left behind, before the restart changes anything.
        left = rows(db, "select key, delivered_at from outbox where notifier = 'webhook'")
        checkpointed = last_ids(db)

        second = Daemon(config)
        await second.start()
        waiting = {str(k) for k, at in left if at is None}
        await received(receiver, lambda k: waiting <= set(k) and len(k) >= len(before_restart) + 4)
        code, _ = await second.terminate()
        assert code == 0
    assert sim.connections[0].close_cause == "peer"
    assert len(sim.connections) == 2

    assert rows(db, "pragma integrity_check") == [("ok",)]
    duplicate_bars = "select 1 from bars group by symbol, timeframe, ts having count(*) > 1"
    assert rows(db, duplicate_bars) == []

    # --- trades: one gap per symbol, from the last checkpointed id to the new connection
    run1, run2 = sent_trades(sim, 1), sent_trades(sim, 2)
    gaps = [
        (str(s), int(lo), int(hi))  # type: ignore[call-overload]
        for s, lo, hi in rows(db, "select symbol, from_id, to_id from gaps order by symbol")
    ]
    assert [g[0] for g in gaps] == sorted(SYMBOLS)
    windows = {}
    for symbol, from_id, to_id in gaps:
        first_sent, then_sent = run1[run1.symbol == symbol], run2[run2.symbol == symbol]
        assert from_id == checkpointed[symbol] + 1
        assert to_id == then_sent["id"].min() - 1
        assert from_id <= first_sent["id"].max() + 1  # never past what was sent before
        # In between: the in-flight window (sent to the killed daemon after its last
        # committed checkpoint), then what the market made while no daemon was connected.
        windows[symbol] = (from_id, to_id)

    # --- bars: away from the crash, equal to pandas' bars of what the daemon kept
    final_ids = last_ids(db)
    sent = pd.concat([run1, run2])
    for symbol, (from_id, to_id) in windows.items():
        mine = sent[(sent.symbol == symbol) & (sent["id"] <= final_ids[symbol])]
        lost = mine[(mine["id"] >= from_id) & (mine["id"] <= to_id)]
        crash_start = lost["ts"].min() if len(lost) else mine[mine["id"] > to_id]["ts"].min()
        crash_end = mine[mine["id"] > to_id]["ts"].min()
        kept = mine[(mine["id"] < from_id) | (mine["id"] > to_id)].sort_values("id")
        expected = resample_oracle(kept, 1_000).set_index("ts")
        with sqlite3.connect(db) as conn:
            bars = pd.read_sql_query(
                "select ts, open, high, low, close, volume, trades from bars "
                "where symbol = ? and timeframe = '1s' order by ts",
                conn,
                params=(symbol,),
            ).set_index("ts")
        touched = (bars.index + 1_000 > crash_start) & (bars.index <= crash_end)
        away = bars[~touched]
        assert len(away) > 5
        assert set(away.index) <= set(expected.index)
        want = expected.loc[away.index]
        for column in ["open", "high", "low", "close", "trades"]:
            np.testing.assert_array_equal(away[column], want[column], f"{symbol} {column}")
        np.testing.assert_allclose(away["volume"], want["volume"], rtol=1e-12)
        traded = expected[~expected["filled"]]
        traded_away = traded[~((traded.index + 1_000 > crash_start) & (traded.index <= crash_end))]
        assert set(traded_away.index) <= set(bars.index)  # no traded bar missing

    # --- alerts: stored before sent, delivered in order, doubled only in the crash window
    orphans = rows(
        db,
        "select key from alert_events e where notify = 1 and not exists "
        "(select 1 from outbox o where o.key = e.key and o.notifier = 'webhook')",
    )
    assert orphans == []
    outbox = rows(db, "select key, delivered_at from outbox where notifier = 'webhook' order by id")
    stored = [str(k) for k, _ in outbox]
    got = keys(receiver)
    assert set(got) <= set(stored)  # nothing delivered that was not stored first
    first_seen = list(dict.fromkeys(got))
    assert first_seen == stored[: len(first_seen)]  # in outbox order, none skipped
    recorded = {str(k) for k, at in left if at is not None}
    in_flight = {k for k in before_restart if k not in recorded}  # delivered, not recorded
    doubled = {k: n for k, n in Counter(got).items() if n > 1}
    assert set(doubled) <= in_flight
    assert all(n == 2 for n in doubled.values())
    delivered = {str(k) for k, at in outbox if at is not None}
    assert delivered <= set(got)
    assert waiting <= set(got)
