"""The bot's view of the daemon: each ``DaemonBackend`` answer against a real store.

A ``Daemon`` that is not run holds the real stages: the writer fills a SQLite file in a
temporary directory, closed 1m bars go through the analytics stage (snapshots stored and
cached) and its listener, the alert stage with a rules file, as in the running daemon.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from pairwatch import __version__
from pairwatch.config.settings import Settings
from pairwatch.daemon.alert_service import AlertRuntime
from pairwatch.daemon.analytics import AnalyticsStage, pair_specs
from pairwatch.daemon.bot_backend import DaemonBackend, chart_data, trade_rates
from pairwatch.daemon.health import Health
from pairwatch.daemon.service import Daemon
from pairwatch.daemon.store import open_store
from pairwatch.daemon.writer import Writer
from pairwatch.events import Bar, PairSnapshot, SymbolSnapshot, Trade
from pairwatch.notifiers.formatting import utc
from pairwatch.notifiers.telegram_backend import (
    AlertInfo,
    BackendError,
    FeedStatus,
    PairInfo,
    RuleInfo,
)
from support.timing import Clock

MIN = 60_000
T0 = 1_700_000_040_000  # a whole minute
BARS = 30
NOW = T0 + BARS * MIN + 5_000  # 5 s after the last bar closed
PAIR = "ETHUSDT/BTCUSDT"
RULES = """
rules:
  - name: wide
    pair: ETHUSDT/BTCUSDT
    timeframe: 1m
    window: 5
    when: hedge_ratio > -1000000
    severity: critical
  - name: calm
    pair: ETHUSDT/BTCUSDT
    timeframe: 1m
    window: 10
    when: abs(zscore) > 1000
"""


def bar(symbol: str, i: int, close: float, trades: int, *, closed: bool = True) -> Bar:
    return Bar(symbol, "1m", T0 + i * MIN, close, close * 1.001, close * 0.999, close,
               2.0, 2.0 * close, close, trades, 1.0, closed=closed)  # fmt: skip


def history() -> list[list[Bar]]:
    """Return BARS minutes of closed 1m bars: BTC trades 100 + i a bar, ETH 50 + i."""
    rng = np.random.default_rng(5)
    btc = 60_000 * np.exp(np.cumsum(rng.normal(0, 0.002, BARS)))
    eth = 3_000 * np.exp(0.8 * np.log(btc / 60_000) + rng.normal(0, 0.001, BARS))
    return [
        [bar("BTCUSDT", i, float(btc[i]), 100 + i), bar("ETHUSDT", i, float(eth[i]), 50 + i)]
        for i in range(BARS)
    ]


@dataclass
class World:
    """The daemon, its backend, and what went through it."""

    daemon: Daemon
    backend: DaemonBackend
    clock: Clock
    writer: Writer
    bars: list[list[Bar]]
    snapshots: list[PairSnapshot]

    @property
    def db(self) -> Path:
        return self.daemon.settings.db_path

    def query(self, sql: str) -> list[tuple[object, ...]]:
        conn = open_store(self.db, readonly=True)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()


def make_settings(tmp_path: Path) -> Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return Settings(
        data_dir=tmp_path,
        feed={"source": "simulator", "symbols": ["BTCUSDT", "ETHUSDT", "SOLUSDT"]},
        bars={"timeframes": ["1m", "5m"]},
        pairs=[{"y": "ETHUSDT", "x": "BTCUSDT", "windows": [5, 10]}],
        alerts={"rules_file": rules},
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = make_settings(tmp_path)
    clock = Clock(NOW)
    daemon = Daemon(settings, clock=clock)
    daemon.health = Health(started_at=(T0 - 3_600_000) / 1000)  # up for an hour before T0
    writer = daemon.writer = Writer(settings.db_path, clock=clock)
    writer.start()
    analytics = daemon.analytics = AnalyticsStage(pair_specs(settings), writer)
    alerts = daemon.alerts = AlertRuntime(settings, writer, daemon.health, clock=clock)
    conn = open_store(settings.db_path)
    try:
        alerts.load(conn)
    finally:
        conn.close()
    snapshots: list[PairSnapshot] = []

    def listen(pairs: Sequence[PairSnapshot], symbols: Sequence[SymbolSnapshot]) -> None:
        snapshots.extend(pairs)

    analytics.add_listener(alerts.stage.on_snapshots)
    analytics.add_listener(listen)
    bars = history()
    for batch in bars:
        writer.put_bars(batch)  # as the pipeline does: the store first, then analytics
        analytics.on_bars(batch)
    writer.flush().result(10)
    backend = DaemonBackend(daemon, clock)
    try:
        yield World(daemon, backend, clock, writer, bars, snapshots)
    finally:
        backend.close()
        writer.close(10)


def latest(world: World, window: int) -> PairSnapshot:
    return next(s for s in reversed(world.snapshots) if s.window == window)


# --- /status -----------------------------------------------------------------------------


async def test_status_reports_health_rates_outbox_and_the_source(world: World) -> None:
    health = world.daemon.health
    health.connections_open, health.reconnects, health.gaps, health.missed_ids = 2, 3, 1, 40
    health.bars_closed = 60
    health.rejected["duplicate"] = 4
    for lag in (10, 20, 30):
        health.lag.add(lag)
    health.last_trade["BTCUSDT"] = Trade(
        "BTCUSDT", 900, 61_000.5, 0.1, NOW - 1500, NOW - 1000, False
    )
    health.last_trade["ETHUSDT"] = Trade("ETHUSDT", 5, 3_100.25, 1.0, NOW - 4500, NOW - 4000, True)
    health.queue_depths["writer"] = lambda: world.writer.queue_depth

    status = await world.backend.status()

    # The bars of the last five minutes: 26..29 (ts >= NOW - 5 min), 4 minutes of trades.
    assert status.feeds == [
        FeedStatus("BTCUSDT", 61_000.5, 1.0, (126 + 127 + 128 + 129) / 240),
        FeedStatus("ETHUSDT", 3_100.25, 4.0, (76 + 77 + 78 + 79) / 240),
        FeedStatus("SOLUSDT", None, None, 0.0),
    ]
    assert status.trades_per_s == pytest.approx((510 + 310) / 240)
    assert status.version == __version__
    assert status.source == "simulator spot trade"
    assert (status.connections_open, status.reconnects, status.gaps, status.missed_ids) == (
        2, 3, 1, 40,
    )  # fmt: skip
    assert status.bars_closed == 60
    assert status.lag_ms == (20.0, pytest.approx(29.8), 30.0)
    assert status.queues == {"writer": 0}
    assert status.outbox == {"log": 1}  # the firing of 'wide', not delivered (no dispatcher)
    assert status.rejected == {"duplicate": 4}


async def test_status_rates_are_the_same_on_the_first_call_and_when_the_clock_stands_still(
    world: World,
) -> None:
    first = await world.backend.status()
    world.daemon.health.accepted = 0  # counters restarted: the rates do not read them
    world.daemon.health.last_trade["BTCUSDT"] = Trade("BTCUSDT", 10**9, 1.0, 1.0, NOW, NOW, False)
    second = await world.backend.status()
    assert [f.trades_per_s for f in first.feeds] == [f.trades_per_s for f in second.feeds]
    assert [f.trades_per_s for f in first.feeds] == [510 / 240, 310 / 240, 0.0]
    assert second.trades_per_s == first.trades_per_s == pytest.approx(820 / 240)


async def test_status_rates_follow_the_window_as_the_clock_moves(world: World) -> None:
    world.clock.now = T0 + BARS * MIN + 4 * MIN  # four quiet minutes (no bars) after the last
    status = await world.backend.status()
    # Only bar 29 is left in the window; its minute is all the time the bars cover.
    assert [f.trades_per_s for f in status.feeds] == [129 / 60, 79 / 60, 0.0]
    world.clock.now = T0 + BARS * MIN + 6 * MIN
    status = await world.backend.status()
    assert [f.trades_per_s for f in status.feeds] == [0.0, 0.0, 0.0]
    assert status.trades_per_s == 0.0


def store_with(tmp_path: Path, bars: list[Bar], written_at: int) -> sqlite3.Connection:
    writer = Writer(tmp_path / "rates.db", clock=lambda: written_at)
    writer.start()
    try:
        closed = [b for b in bars if b.closed]
        writer.put_bars(closed)
        writer.checkpoint([b for b in bars if not b.closed], "spot", "trade", [])
        writer.flush().result(10)
    finally:
        writer.close(10)
    return open_store(tmp_path / "rates.db", readonly=True)


def test_a_cold_start_in_the_middle_of_a_bar_counts_from_the_start(tmp_path: Path) -> None:
    # Started at T0 + 20 s; the open bar was saved at T0 + 50 s with 60 and 15 trades.
    conn = store_with(
        tmp_path,
        [bar("BTCUSDT", 0, 1.0, 60, closed=False), bar("ETHUSDT", 0, 1.0, 15, closed=False)],
        written_at=T0 + 50_000,
    )
    try:
        rates = trade_rates(conn, ["BTCUSDT", "ETHUSDT", "SOLUSDT"], "1m", MIN,
                            now=T0 + 55_000, run_start=T0 + 20_000)  # fmt: skip
    finally:
        conn.close()
    assert rates == {"BTCUSDT": 2.0, "ETHUSDT": 0.5, "SOLUSDT": 0.0}


def test_rates_after_a_restart_count_the_bars_of_the_last_run_too(tmp_path: Path) -> None:
    # Bars 0-2 closed by the last run, bar 3 open since; this run started at T0 + 3m10s.
    bars = [bar("BTCUSDT", i, 1.0, 60) for i in range(3)]
    bars.append(bar("BTCUSDT", 3, 1.0, 30, closed=False))
    conn = store_with(tmp_path, bars, written_at=T0 + 3 * MIN + 30_000)
    try:
        rates = trade_rates(conn, ["BTCUSDT"], "1m", MIN,
                            now=T0 + 3 * MIN + 31_000, run_start=T0 + 3 * MIN + 10_000)  # fmt: skip
    finally:
        conn.close()
    assert rates == {"BTCUSDT": 210 / 210}  # 3.5 minutes of bars, 210 trades


def test_rates_are_zero_not_nan_or_negative_without_time_covered(tmp_path: Path) -> None:
    # An open bar saved before this run began (its start): no time covered by this run yet.
    conn = store_with(tmp_path, [bar("BTCUSDT", 0, 1.0, 60, closed=False)], written_at=T0 + 1000)
    try:
        before = trade_rates(conn, ["BTCUSDT"], "1m", MIN, now=T0 + 2000, run_start=T0 + 1500)
        empty = trade_rates(conn, ["BTCUSDT"], "5m", 5 * MIN, now=T0 + 2000, run_start=T0)
        early = trade_rates(conn, ["BTCUSDT"], "1m", MIN, now=T0, run_start=T0 - MIN)
    finally:
        conn.close()
    assert before == empty == early == {"BTCUSDT": 0.0}


# --- /pairs and /z -----------------------------------------------------------------------


async def test_pairs_lists_each_pair_with_its_timeframes_and_windows(world: World) -> None:
    assert await world.backend.pairs() == [PairInfo("ETHUSDT", "BTCUSDT", ("1m", "5m"), (5, 10))]


async def test_latest_returns_the_newest_snapshot_of_every_window(world: World) -> None:
    found = await world.backend.latest("ethusdt", "btcusdt", None)  # default: the first tf
    assert found == [latest(world, 5), latest(world, 10)]
    assert [(s.timeframe, s.window, s.ts) for s in found] == [
        ("1m", 5, T0 + (BARS - 1) * MIN),
        ("1m", 10, T0 + (BARS - 1) * MIN),
    ]
    assert math.isfinite(found[0].metrics["hedge_ratio"])
    assert await world.backend.latest("ETHUSDT", "BTCUSDT", "5m") == []  # no 5m bar yet


@pytest.mark.parametrize(
    ("y", "x", "timeframe", "message"),
    [
        ("DOGEUSDT", "BTCUSDT", None, "no pair DOGEUSDT/BTCUSDT (pairs: ETHUSDT/BTCUSDT)"),
        ("BTCUSDT", "ETHUSDT", None, "no pair BTCUSDT/ETHUSDT (pairs: ETHUSDT/BTCUSDT)"),
        ("ETHUSDT", "BTCUSDT", "15m", "ETHUSDT/BTCUSDT is analysed on 1m, 5m, not 15m"),
    ],
)
async def test_latest_refuses_an_unknown_pair_or_timeframe(
    world: World, y: str, x: str, timeframe: str | None, message: str
) -> None:
    with pytest.raises(BackendError) as refused:
        await world.backend.latest(y, x, timeframe)
    assert str(refused.value) == message


# --- /alerts and /rules ------------------------------------------------------------------


def first_firing(world: World) -> int:
    """Return when 'wide' began firing: the close of its first snapshot with a β."""
    first = next(
        s for s in world.snapshots
        if s.window == 5 and math.isfinite(s.metrics.get("hedge_ratio", math.nan))
    )  # fmt: skip
    return first.ts + MIN


async def test_alerts_lists_the_firing_alert_with_its_current_value(world: World) -> None:
    assert await world.backend.alerts() == [
        AlertInfo(
            rule="wide", target=PAIR, timeframe="1m", window=5, phase="firing",
            since=first_firing(world), severity="critical", metric="hedge_ratio",
            value=latest(world, 5).metrics["hedge_ratio"], threshold=-1_000_000.0, muted=False,
        )
    ]  # fmt: skip


async def test_rules_lists_every_rule_with_its_firing_count(world: World) -> None:
    assert await world.backend.rules() == [
        RuleInfo("wide", "critical", PAIR, "1m", 5, "hedge_ratio > -1e+06", firing=1),
        RuleInfo("calm", "warning", PAIR, "1m", 10, "abs(zscore) > 1000", firing=0),
    ]


# --- /mute and /unmute -------------------------------------------------------------------


async def test_mute_stores_a_silence_and_applies_it_at_once(world: World) -> None:
    answer = await world.backend.mute("wide", timedelta(minutes=30), "telegram:@alice")
    end = NOW + 30 * MIN
    assert answer == f"muted rule wide for 30m, until {utc(end)} (pairwatch.sqlite3)"
    assert world.query(
        "SELECT rule, target, starts_at, ends_at, created_by, cancelled_at FROM silences"
    ) == [("wide", None, NOW, end, "telegram:@alice", None)]
    [alert] = await world.backend.alerts()
    assert alert.muted is True
    rules = await world.backend.rules()
    assert [(r.name, r.muted_until) for r in rules] == [("wide", end), ("calm", None)]


async def test_mute_all_is_stored_as_every_rule(world: World) -> None:
    answer = await world.backend.mute("all", timedelta(hours=2), "telegram:123")
    assert answer.startswith("muted every rule for 2h, until ")
    assert world.query("SELECT rule, ends_at FROM silences") == [("*", NOW + 120 * MIN)]
    assert [r.muted_until for r in await world.backend.rules()] == [NOW + 120 * MIN] * 2


async def test_mute_refuses_a_rule_that_is_not_loaded(world: World) -> None:
    with pytest.raises(BackendError) as refused:
        await world.backend.mute("nope", timedelta(minutes=5), "telegram:@alice")
    assert str(refused.value) == "no rule 'nope' (rules: wide, calm)"
    assert world.query("SELECT count(*) FROM silences") == [(0,)]


async def test_unmute_ends_the_rule_s_silences(world: World) -> None:
    await world.backend.mute("wide", timedelta(minutes=30), "telegram:@alice")
    world.clock.now = NOW + MIN
    assert await world.backend.unmute("wide", "telegram:@bob") == "ended 1 silence(s) of wide"
    assert world.query("SELECT cancelled_at FROM silences") == [(NOW + MIN,)]
    [alert] = await world.backend.alerts()
    assert alert.muted is False
    assert await world.backend.unmute("wide", "telegram:@bob") == "no active silence of wide"


async def test_after_close_commands_that_use_the_store_are_refused(world: World) -> None:
    world.backend.close()
    for call in (
        world.backend.status(),
        world.backend.mute("wide", timedelta(minutes=5), "telegram:@alice"),
        world.backend.unmute("wide", "telegram:@alice"),
        world.backend.chart("ETHUSDT", "BTCUSDT", None, None),
    ):
        with pytest.raises(BackendError, match="pairwatch is shutting down"):
            await call


# --- /chart ------------------------------------------------------------------------------


def test_chart_data_is_the_latest_bars_of_the_stored_series(world: World) -> None:
    stored = [s for s in world.snapshots if s.timeframe == "1m" and s.window == 5]
    closes = {(b.symbol, b.ts): b.close for batch in world.bars for b in batch}
    conn = open_store(world.db, readonly=True)
    try:
        data = chart_data(conn, "ETHUSDT", "BTCUSDT", "1m", 5, bars=10)
    finally:
        conn.close()
    want = stored[-10:]
    assert data.title == "ETHUSDT/BTCUSDT 1m window 5"
    assert (data.y_name, data.x_name) == ("ETHUSDT", "BTCUSDT")
    assert data.ts.tolist() == [s.ts for s in want]
    assert data.y.tolist() == [closes["ETHUSDT", s.ts] for s in want]
    assert data.x.tolist() == [closes["BTCUSDT", s.ts] for s in want]
    np.testing.assert_array_equal(data.spread, [s.metrics["spread"] for s in want])
    np.testing.assert_array_equal(data.zscore, [s.metrics["zscore"] for s in want])


async def test_chart_renders_a_png_of_the_pair(world: World) -> None:
    png = await world.backend.chart("ETHUSDT", "BTCUSDT", "1m", 10)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 10_000


@pytest.mark.parametrize(
    ("timeframe", "window", "message"),
    [
        ("1m", 7, "ETHUSDT/BTCUSDT has windows 5, 10, not 7"),
        ("5m", None, "no analytics yet for ETHUSDT/BTCUSDT 5m w5"),
        ("1h", None, "ETHUSDT/BTCUSDT is analysed on 1m, 5m, not 1h"),
    ],
)
async def test_chart_refuses_what_it_cannot_draw(
    world: World, timeframe: str, window: int | None, message: str
) -> None:
    with pytest.raises(BackendError) as refused:
        await world.backend.chart("ETHUSDT", "BTCUSDT", timeframe, window)
    assert str(refused.value) == message
