"""The metrics page and the health answer of a daemon that is built but not run.

The counters are set on the daemon's own ``Health`` (plain data); the page is produced by
the real registry and read back with Prometheus' own parser. A running daemon is scraped
over HTTP in tests/integration/web/test_routes.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pairwatch import __version__
from pairwatch.config.settings import Settings
from pairwatch.daemon.service import Daemon
from pairwatch.events import Trade
from pairwatch.web.answers import Answers
from pairwatch.web.health import health
from pairwatch.web.metrics import Metrics
from pairwatch.web.routes import HealthzHandler, MetricsHandler, extra_patterns

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(page: bytes) -> Samples:
    """Return every sample of a page: (name, sorted labels) → value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page.decode())
        for s in family.samples
    }


def names(got: Samples) -> set[str]:
    return {name for name, _ in got}


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    settings = Settings(
        data_dir=tmp_path / "data", feed={"source": "simulator", "symbols": ["BTCUSDT", "ETHUSDT"]}
    )
    return Daemon(settings)


def test_feed_counters_are_exported_as_the_daemon_holds_them(daemon: Daemon) -> None:
    h = daemon.health
    h.frames, h.accepted, h.connects, h.reconnects = 12, 9, 3, 2
    h.connections_open, h.gaps, h.missed_ids, h.bars_closed = 1, 1, 4, 6
    h.rejected.update({"malformed_json": 2, "duplicate": 1})
    lags = list(range(1, 101))  # ms
    for lag in lags:
        h.lag.add(lag)
    h.last_trade["BTCUSDT"] = Trade("BTCUSDT", 7, 60_000.0, 0.1, 1_700_000_000_000,
                                    1_700_000_000_123, False)  # fmt: skip
    h.queue_depths["writer"] = lambda: 5

    got = samples(generate_latest(Metrics(daemon, process=False).registry))

    p50, p99 = np.percentile(lags, [50, 99]) / 1000
    assert got == {
        ("pairwatch_build_info", (("version", __version__),)): 1.0,
        ("pairwatch_start_time_seconds", ()): h.started_at,
        ("pairwatch_ready", ()): 0.0,
        ("pairwatch_feed_info", (("market", "spot"), ("source", "simulator"),
                                 ("stream", "trade"))): 1.0,
        ("pairwatch_frames_received_total", ()): 12.0,
        ("pairwatch_trades_accepted_total", ()): 9.0,
        ("pairwatch_feed_connects_total", ()): 3.0,
        ("pairwatch_feed_reconnects_total", ()): 2.0,
        ("pairwatch_feed_gaps_total", ()): 1.0,
        ("pairwatch_feed_missed_ids_total", ()): 4.0,
        ("pairwatch_bars_closed_total", ()): 6.0,
        ("pairwatch_rejects_total", (("reason", "duplicate"),)): 1.0,
        ("pairwatch_rejects_total", (("reason", "malformed_json"),)): 2.0,
        ("pairwatch_feed_connections_open", ()): 1.0,
        ("pairwatch_feed_lag_seconds", (("quantile", "0.5"),)): pytest.approx(p50),
        ("pairwatch_feed_lag_seconds", (("quantile", "0.99"),)): pytest.approx(p99),
        ("pairwatch_feed_lag_seconds", (("quantile", "1"),)): 0.1,
        ("pairwatch_last_trade_timestamp_seconds", (("symbol", "BTCUSDT"),)): 1_700_000_000.123,
        ("pairwatch_queue_depth", (("queue", "writer"),)): 5.0,
    }  # fmt: skip


def test_a_daemon_that_has_not_started_has_no_lag_and_no_stage_metrics(daemon: Daemon) -> None:
    got = names(samples(generate_latest(Metrics(daemon, process=False).registry)))
    assert "pairwatch_feed_lag_seconds" not in got  # no trade: no samples, not NaN
    assert not {n for n in got if n.startswith(("pairwatch_writer", "pairwatch_alert",
                                                "pairwatch_notifier", "pairwatch_analytics",
                                                "pairwatch_mqtt"))}  # fmt: skip


def test_the_process_metrics_are_on_the_page_but_not_in_the_global_registry(
    daemon: Daemon,
) -> None:
    from prometheus_client import REGISTRY

    metrics = Metrics(daemon)
    got = names(samples(generate_latest(metrics.registry)))
    assert "process_resident_memory_bytes" in got
    assert "pairwatch_frames_received_total" in got
    assert "pairwatch_frames_received_total" not in names(samples(generate_latest(REGISTRY)))


async def test_an_unreadable_store_leaves_out_the_outbox_count_and_logs_once(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics(daemon, process=False)
    with caplog.at_level(logging.WARNING, logger="pairwatch.web.metrics"):
        first = await metrics.render()
        await metrics.render()
    assert "pairwatch_outbox_pending" not in first.decode()
    assert [r.getMessage() for r in caplog.records] == [
        "metrics: cannot count the pending outbox rows: StoreError: cannot open store "
        f"{daemon.settings.db_path}: no such database file"
    ]


def test_a_daemon_still_starting_is_healthy_within_the_grace_only(daemon: Daemon) -> None:
    status, body = health(daemon)
    assert (status, body["status"], body["problems"]) == (200, "starting", [])
    assert body["waiting"] == ["start-up has not finished", "the store writer is not running"]
    assert body["feeds"] == []
    assert body["last_trade_age_s"] == {"BTCUSDT": None, "ETHUSDT": None}
    assert (body["version"], body["source"]) == (__version__, "simulator spot trade")

    status, body = health(daemon, startup_grace_s=0.0)
    assert (status, body["status"]) == (503, "failing")
    assert body["problems"] == ["start-up has not finished", "the store writer is not running"]


def test_the_event_loop_lag_is_exported_and_its_maximum_is_in_healthz(daemon: Daemon) -> None:
    _, body = health(daemon)
    assert body["loop_lag_s"] is None  # not measured yet
    assert "pairwatch_event_loop_lag_seconds" not in names(samples(generate_latest(
        Metrics(daemon, process=False).registry)))  # fmt: skip
    for lag_us in [1_000] * 98 + [40_000, 123_456]:
        daemon.health.loop_lag.add(lag_us)
    got = samples(generate_latest(Metrics(daemon, process=False).registry))
    assert got[("pairwatch_event_loop_lag_seconds", (("quantile", "0.5"),))] == 0.001
    assert got[("pairwatch_event_loop_lag_seconds", (("quantile", "1"),))] == 0.123456
    _, body = health(daemon)
    assert body["loop_lag_s"] == 0.123


def test_extra_patterns_gives_both_routes_in_a_new_list_each_call(daemon: Daemon) -> None:
    answers = Answers(daemon)
    first = extra_patterns(answers)
    assert [(pattern, handler) for pattern, handler, _ in first] == [
        ("/healthz", HealthzHandler),
        ("/metrics", MetricsHandler),
    ]
    assert first[0][2] == {"ask": answers}
    assert first[1][2] == {"ask": answers}
    first.append(("/login", HealthzHandler, {}))  # as Bokeh does with its auth routes
    assert len(extra_patterns(answers)) == 2


async def test_answers_are_json_ready_and_an_unknown_question_is_refused(
    daemon: Daemon,
) -> None:
    answers = Answers(daemon, startup_grace_s=0.0)
    healthz = await answers("healthz")
    assert healthz["status"] == 503
    assert healthz["body"]["problems"] == [
        "start-up has not finished",
        "the store writer is not running",
    ]
    daemon.health.accepted = 5
    metrics = samples((await answers("metrics"))["text"].encode())
    assert metrics[("pairwatch_trades_accepted_total", ())] == 5
    feed = (await answers("feed"))["feed"]
    assert (feed["connected"], feed["gaps"], feed["trades_per_s"]) == (False, 0, 0.0)
    json.dumps([healthz, feed])  # what goes down the pipe
    with pytest.raises(ValueError, match=r"unknown question .x. \(known: healthz, metrics, feed"):
        await answers("x")


@pytest.mark.parametrize("grace", [-1.0, float("nan")])
def test_answers_refuse_an_invalid_grace(daemon: Daemon, grace: float) -> None:
    with pytest.raises(ValueError, match="startup_grace_s must be finite and >= 0"):
        Answers(daemon, startup_grace_s=grace)
