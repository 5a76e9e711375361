"""/healthz and /metrics of a real daemon fed by the simulator, scraped over HTTP.

The daemon runs in-process against a simulator of the test's own (so the test can stop
it), with a rule that fires on the first snapshot and one that stays pending. The routes
are served by ``tornado.web.Application(extra_patterns(daemon))`` on a free loopback port
and read with httpx; the page is parsed with Prometheus' own parser. Counters are compared
with the daemon's: at least the value read before the scrape, at most the one read after.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pairwatch import __version__
from pairwatch.config.load import load_settings
from pairwatch.daemon.alert_service import AlertRuntime
from pairwatch.daemon.service import Daemon
from pairwatch.daemon.sources.simulator import Simulator, SimulatorOptions
from pairwatch.daemon.writer import Writer
from pairwatch.web.answers import Answers
from pairwatch.web.metrics import Metrics
from pairwatch.web.routes import extra_patterns

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

RULES = """
rules:
  - name: always
    pair: ETHUSDT/BTCUSDT
    timeframe: 1s
    window: 5
    when: hedge_ratio > -1000000
    notify: [log]
  - name: someday
    pair: ETHUSDT/BTCUSDT
    timeframe: 1s
    window: 5
    when: hedge_ratio > -1000000
    for: 1000000 bars
"""


def write_config(tmp: Path, base_url: str) -> Path:
    rules = tmp / "rules.yaml"
    rules.write_text(RULES)
    config = tmp / "pairwatch.toml"
    config.write_text(
        f"""
data_dir = "{tmp}"

[feed]
source = "simulator"
base_url = "{base_url}"
symbols = ["BTCUSDT", "ETHUSDT"]
max_clock_skew = "3650d"  # the simulated clock runs ahead of the wall clock
backoff_initial = "50ms"
backoff_max = "200ms"

[bars]
timeframes = ["1s"]
grace = "100ms"

[alerts]
rules_file = "{rules}"

[web]
enabled = false  # the test serves the routes itself

[[pairs]]
y = "ETHUSDT"
x = "BTCUSDT"
windows = [5]
"""
    )
    return config


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:  # noqa: ASYNC109
    """Wait until ``predicate()`` holds, checking every 10 ms (for state with no event)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 (feed and writer state have no event)
            await asyncio.sleep(0.01)


async def first_of(daemon_task: asyncio.Task[None], waited: Awaitable[object]) -> None:
    """Await ``waited``; raise the daemon's error if it ends first."""
    other = asyncio.ensure_future(waited)
    done, _ = await asyncio.wait({daemon_task, other}, timeout=60,
                                 return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
    if other not in done:
        other.cancel()
        if daemon_task in done:
            daemon_task.result()
        raise TimeoutError("the daemon did not get there in 60 s")


@dataclass
class Running:
    daemon: Daemon
    simulator: Simulator
    client: httpx.AsyncClient
    task: asyncio.Task[None]
    """The daemon's run: a wait ends with its error if it fails first."""

    async def wait(self, waited: Awaitable[object]) -> None:
        """Await ``waited`` (60 s at most); raise the daemon's error if it ends first."""
        await first_of(self.task, waited)

    @property
    def writer(self) -> Writer:
        assert self.daemon.writer is not None
        return self.daemon.writer

    @property
    def alerts(self) -> AlertRuntime:
        assert self.daemon.alerts is not None
        return self.daemon.alerts

    async def scrape(self) -> Samples:
        response = await self.client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"] == CONTENT_TYPE_LATEST
        return parse(response.text)

    async def healthz(self) -> tuple[int, dict[str, object]]:
        response = await self.client.get("/healthz")
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        assert response.headers["cache-control"] == "no-store"
        return response.status_code, response.json()


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@contextlib.asynccontextmanager
async def serve(app: tornado.web.Application) -> AsyncIterator[int]:
    """Serve ``app`` on a free loopback port; yield the port."""
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    try:
        yield sockets[0].getsockname()[1]
    finally:
        server.stop()
        await server.close_all_connections()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    options = SimulatorOptions(rate=200.0, speed=20.0, event_clock="simulated")
    async with Simulator(options) as simulator:
        daemon = Daemon(load_settings(write_config(tmp_path, simulator.url)))
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        try:
            await first_of(task, daemon.ready.wait())
            await first_of(task, daemon.feeds[0].connected.wait())
            # The grace is 0: a feed that is down fails /healthz at once.
            app = tornado.web.Application(extra_patterns(Answers(daemon, startup_grace_s=0.0)))
            async with (
                serve(app) as port,
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
            ):
                yield Running(daemon, simulator, client, task)
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)


async def firing_and_delivered(r: Running) -> None:
    """Wait for the first notification of the firing rule to be delivered to the log."""
    await r.wait(r.alerts.dispatcher.wait_until(lambda c: c["log"].delivered >= 1))


def feed_and_stage_values(d: Daemon) -> Samples:
    """Return the counters the page must show, read from the daemon's own objects."""
    h, w, a, alerts = d.health, d.writer, d.analytics, d.alerts
    assert w is not None
    assert a is not None
    assert alerts is not None
    stage = alerts.stage.counters()
    delivery = alerts.dispatcher.counters()
    values: Samples = {
        ("pairwatch_frames_received_total", ()): h.frames,
        ("pairwatch_trades_accepted_total", ()): h.accepted,
        ("pairwatch_feed_connects_total", ()): h.connects,
        ("pairwatch_feed_reconnects_total", ()): h.reconnects,
        ("pairwatch_feed_gaps_total", ()): h.gaps,
        ("pairwatch_feed_missed_ids_total", ()): h.missed_ids,
        ("pairwatch_bars_closed_total", ()): h.bars_closed,
        ("pairwatch_writer_rows_written_total", (("table", "bars"),)): w.bars_written,
        ("pairwatch_writer_rows_written_total", (("table", "analytics"),)): w.analytics_written,
        ("pairwatch_writer_transactions_total", ()): w.transactions,
        ("pairwatch_analytics_snapshots_total", (("kind", "pair"),)): a.pair_snapshots,
        ("pairwatch_analytics_snapshots_total", (("kind", "symbol"),)): a.symbol_snapshots,
        ("pairwatch_alert_evaluations_total", ()): stage["evaluations"],
        ("pairwatch_alert_events_total", ()): stage["events"],
        ("pairwatch_alert_notifications_total", ()): stage["notifications"],
        ("pairwatch_notifier_deliveries_total", (("notifier", "log"),)): delivery["log"].delivered,
        ("pairwatch_notifier_retries_total", (("notifier", "log"),)): delivery["log"].retried,
        ("pairwatch_notifier_failures_total", (("notifier", "log"),)): delivery["log"].failed,
    }
    values.update(
        (("pairwatch_rejects_total", (("reason", reason),)), n) for reason, n in h.rejected.items()
    )
    return values


async def test_metrics_counters_lie_between_the_daemon_s_values_before_and_after(
    running: Running,
) -> None:
    await firing_and_delivered(running)
    before = feed_and_stage_values(running.daemon)
    got = await running.scrape()
    after = feed_and_stage_values(running.daemon)

    for key, low in before.items():
        assert low <= got[key] <= after[key], key
    assert got[("pairwatch_trades_accepted_total", ())] > 0
    assert got[("pairwatch_analytics_snapshots_total", (("kind", "pair"),))] > 0
    assert got[("pairwatch_notifier_deliveries_total", (("notifier", "log"),))] >= 1
    d = running.daemon
    assert got[("pairwatch_build_info", (("version", __version__),))] == 1
    assert got[("pairwatch_start_time_seconds", ())] == d.health.started_at
    assert got[("pairwatch_ready", ())] == 1
    assert got[("pairwatch_feed_connection_up", (("connection", "0"),))] == 1
    assert got[("pairwatch_feed_connections_open", ())] == 1
    assert got[("pairwatch_writer_healthy", ())] == 1
    assert got[("pairwatch_alert_rules", ())] == 2
    # One alert per rule (one pair): "always" fires at once, "someday" stays pending.
    assert got[("pairwatch_alerts", (("state", "firing"),))] == 1
    assert got[("pairwatch_alerts", (("state", "pending"),))] == 1
    assert got[("pairwatch_alerts", (("state", "inactive"),))] == 0
    assert got[("pairwatch_queue_depth", (("queue", "writer"),))] >= 0
    assert got[("pairwatch_outbox_pending", (("notifier", "log"),))] >= 0
    commit = got[("pairwatch_writer_last_commit_timestamp_seconds", ())]
    assert time.time() - 60 < commit <= time.time()
    # The simulated clock runs ahead of the wall clock: the lag is negative here.
    lag = [got[("pairwatch_feed_lag_seconds", (("quantile", q),))] for q in ("0.5", "0.99", "1")]
    assert lag == sorted(lag)


async def test_the_page_read_in_one_step_of_the_loop_equals_the_daemon_s_counters(
    running: Running,
) -> None:
    """Read in the same step as the page, every counter owned by the loop is equal."""
    await firing_and_delivered(running)
    d = running.daemon
    metrics = Metrics(d, process=False)
    page = generate_latest(metrics.registry).decode()
    same_step = feed_and_stage_values(d)  # no await since the page: nothing ran in between
    p50, p99, lag_max = d.health.lag.percentiles()
    phases: list[str] = [s.phase for s in running.alerts.stage.engine.states.values()]
    got = parse(page)
    writer_owned = {"pairwatch_writer_rows_written_total", "pairwatch_writer_transactions_total"}
    for key, value in same_step.items():
        if key[0] in writer_owned:  # counted by the writer thread: it may have moved on
            assert got[key] <= value, key
        else:
            assert got[key] == value, key
    assert got[("pairwatch_feed_lag_seconds", (("quantile", "0.5"),))] == p50 / 1000
    assert got[("pairwatch_feed_lag_seconds", (("quantile", "0.99"),))] == p99 / 1000
    assert got[("pairwatch_feed_lag_seconds", (("quantile", "1"),))] == lag_max / 1000
    for state in ("inactive", "pending", "firing"):
        assert got[("pairwatch_alerts", (("state", state),))] == phases.count(state)
    for symbol, trade in d.health.last_trade.items():
        key = ("pairwatch_last_trade_timestamp_seconds", (("symbol", symbol),))
        assert got[key] == trade.ts_recv / 1000


async def test_every_metric_follows_the_naming_conventions(running: Running) -> None:
    await firing_and_delivered(running)
    response = await running.client.get("/metrics")
    families = list(text_string_to_metric_families(response.text))
    assert all(f.name.startswith(("pairwatch_", "process_")) for f in families)
    ours = [f for f in families if f.name.startswith("pairwatch_")]
    assert len(ours) >= 40
    for family in ours:
        assert re.fullmatch(r"pairwatch_[a-z0-9_]+", family.name), family.name
        assert family.documentation, family.name
        names = {sample.name for sample in family.samples}
        if family.type == "counter":
            assert names <= {f"{family.name}_total"}, family.name
        else:
            assert not family.name.endswith("_total"), family.name
        if family.type == "info":
            assert names <= {f"{family.name}_info"}, family.name
        assert not family.name.endswith(("_ms", "_milliseconds")), family.name


async def test_healthz_is_200_while_connected_and_503_once_the_simulator_stops(
    running: Running,
) -> None:
    await running.wait(running.simulator.wait_until(lambda: running.daemon.health.accepted > 0))
    status, body = await running.healthz()
    assert (status, body["status"], body["problems"], body["waiting"]) == (200, "ok", [], [])
    assert body["feeds"] == [{"connection": 0, "streams": 2, "connected": True}]
    assert body["version"] == __version__
    assert body["source"] == "simulator spot trade"
    assert body["ready"] is True
    writer = body["writer"]
    assert isinstance(writer, dict)
    assert writer["healthy"] is True
    assert writer["last_error"] is None
    ages = body["last_trade_age_s"]
    assert isinstance(ages, dict)
    assert set(ages) == {"BTCUSDT", "ETHUSDT"}
    assert any(age is not None and 0 <= age < 60 for age in ages.values())

    await running.simulator.aclose()
    await until(lambda: not running.daemon.feeds[0].connected.is_set())

    status, body = await running.healthz()
    assert (status, body["status"]) == (503, "failing")
    assert body["problems"] == ["feed connection 0 is not connected"]
    assert body["feeds"] == [{"connection": 0, "streams": 2, "connected": False}]
    got = await running.scrape()
    assert got[("pairwatch_feed_connection_up", (("connection", "0"),))] == 0
    assert got[("pairwatch_feed_reconnects_total", ())] >= 1


async def test_healthz_is_503_while_the_store_is_locked_and_200_once_writes_recover(
    running: Running,
) -> None:
    db = running.daemon.settings.db_path
    await running.wait(running.simulator.wait_until(lambda: running.writer.transactions > 0))
    assert (await running.healthz())[0] == 200
    # Another process takes the write lock (a backup, a careless sqlite3 shell): the
    # writer's commit waits for its busy timeout (5 s), fails and is retried.
    locker = sqlite3.connect(db, isolation_level=None, timeout=30, check_same_thread=False)
    try:
        await asyncio.to_thread(locker.execute, "BEGIN EXCLUSIVE")
        await until(lambda: not running.writer.healthy, timeout=30)

        status, body = await running.healthz()
        assert (status, body["status"]) == (503, "failing")
        assert body["problems"] == [
            "the store writer is unhealthy: OperationalError: database is locked"
        ]
        got = await running.scrape()
        assert got[("pairwatch_writer_healthy", ())] == 0
        assert got[("pairwatch_writer_errors_total", ())] >= 1
    finally:
        await asyncio.to_thread(locker.execute, "ROLLBACK")
        locker.close()
    await until(lambda: running.writer.healthy, timeout=30)
    status, body = await running.healthz()
    assert (status, body["status"], body["problems"]) == (200, "ok", [])
    # The last error is still shown (what happened), but no longer a failure.
    writer = body["writer"]
    assert isinstance(writer, dict)
    assert writer["last_error"] == "OperationalError: database is locked"


async def test_the_daemon_serves_the_page_health_and_metrics_under_its_prefix(
    tmp_path: Path,
) -> None:
    options = SimulatorOptions(rate=200.0, speed=20.0, event_clock="simulated")
    async with Simulator(options) as simulator:
        config = write_config(tmp_path, simulator.url)
        text = config.read_text().replace(
            "[web]\nenabled = false  # the test serves the routes itself",
            '[web]\nport = 0\nprefix = "/pw"',
        )
        config.write_text(text)
        daemon = Daemon(load_settings(config))
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        try:
            await first_of(task, daemon.ready.wait())
            await first_of(task, daemon.feeds[0].connected.wait())
            assert daemon.web is not None
            await first_of(task, daemon.web.ready.wait())
            assert daemon.web.url.startswith("http://127.0.0.1:")
            assert daemon.web.url.endswith("/pw/")
            async with httpx.AsyncClient(base_url=daemon.web.url) as client:
                page = await client.get("")
                assert page.status_code == 200
                assert "<title>pairwatch</title>" in page.text
                health = await client.get("healthz")
                assert health.status_code == 200
                assert health.json()["status"] == "ok"
                metrics = parse((await client.get("metrics")).text)
                accepted = metrics[("pairwatch_trades_accepted_total", ())]
                assert 0 < accepted <= daemon.health.accepted
                missing = await client.get("export?y=ETHUSDT&x=BTCUSDT&timeframe=1m&window=5")
                assert missing.status_code == 404
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
        assert daemon.web is not None
        # Stopped with the daemon: nothing listens on the port any more.
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as client:
                await client.get(daemon.web.url)


async def test_a_taken_port_is_a_clear_error_at_start(tmp_path: Path) -> None:
    from pairwatch.config.web_settings import WebSettings
    from pairwatch.errors import PairwatchError
    from pairwatch.web.server import serve_web

    taken = tornado.netutil.bind_sockets(0, "127.0.0.1")
    port = taken[0].getsockname()[1]
    try:
        with pytest.raises(PairwatchError, match=rf"web: cannot listen on 127.0.0.1:{port}"):
            async with serve_web(WebSettings(port=port), tmp_path / "x.sqlite3", timeframes={}):
                pass
    finally:
        for sock in taken:
            sock.close()
