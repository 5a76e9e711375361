"""The daemon's MQTT runtime against a real mosquitto and a real SQLite store file.

Each ``running`` block is one daemon run: it starts the link as the ``mqtt`` notifier does,
runs ``MqttRuntime.run`` as the daemon's task, and stops in the daemon's order (flush,
cancel, close the link). Runs share the store file, so what one run keeps in ``meta``
decides what the next one clears.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from pairwatch.analytics.engine import PairEngine
from pairwatch.config.settings import Settings
from pairwatch.daemon import mqtt_service
from pairwatch.daemon.analytics import pair_specs
from pairwatch.daemon.health import Health
from pairwatch.daemon.mqtt_service import DISCOVERY_KEY, RETAINED_KEY, MqttRuntime
from pairwatch.daemon.store import open_store
from pairwatch.events import Bar
from support.mosquitto import Mosquitto, Subscriber, available

PREFIX = "test/v1"
T0 = 1_700_000_000_000
SENTINEL = "sentinel"
PRICES = {"BTCUSDT": 90_000.0, "ETHUSDT": 3_000.0, "SOLUSDT": 200.0}
ETH_5 = {"y": "ETHUSDT", "x": "BTCUSDT", "windows": [5]}
ETH_5_10 = {"y": "ETHUSDT", "x": "BTCUSDT", "windows": [5, 10]}
SOL_5 = {"y": "SOLUSDT", "x": "BTCUSDT", "windows": [5]}

if not available():
    pytest.fail("mosquitto is not installed: run scripts/system-deps", pytrace=False)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as mosquitto:
        yield mosquitto


def settings(
    tmp_path: Path, broker: Mosquitto, pairs: list[dict[str, Any]], /, **mqtt: Any
) -> Settings:
    options = {"host": "127.0.0.1", "port": broker.port, "client_id": "pairwatch-test",
               "topic_prefix": PREFIX} | mqtt  # fmt: skip
    return Settings(
        data_dir=tmp_path / "data",
        feed={"symbols": list(PRICES)},
        bars={"timeframes": ["1m"]},
        pairs=pairs,
        mqtt=options,
    )


@asynccontextmanager
async def running(config: Settings) -> AsyncIterator[MqttRuntime]:
    """Run the runtime as the daemon does, from start to a clean stop."""
    runtime = MqttRuntime(config, Health())
    await runtime.link.start()  # as the mqtt notifier's start()
    task = asyncio.create_task(runtime.run())
    try:
        assert await runtime.link.wait_connected(10)
        yield runtime
    finally:
        await runtime.flush(2.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runtime.link.close()
    assert task.cancelled()  # it ran until cancelled: it did not fail


async def published(runtime: MqttRuntime) -> int:
    """Wait until what was given to the publisher is sent; return how many were."""
    await asyncio.wait_for(runtime.recorded.wait(), 15)  # retained values may go out now
    assert await runtime.publisher.flush(15)
    return runtime.publisher.published


def publish_engine_snapshots(runtime: MqttRuntime) -> int:
    """Run the real engine on three bars of every symbol; give its snapshots to the publisher.

    Returns how many topics they fill.
    """
    engine = PairEngine(pair_specs(runtime.settings))
    bars = []
    for i in range(3):
        for symbol, price in PRICES.items():
            p = price * (1 + 0.001 * i * (1 + len(symbol) % 3))
            bars.append(Bar(symbol, "1m", T0 + i * 60_000, p, p, p, p, 1.0, p, p, 5, 0.5))
    pairs, symbols = engine.on_bars(bars)
    runtime.publisher.on_snapshots(pairs, symbols)
    return len({(p.y, p.x, p.timeframe, p.window) for p in pairs}) + len(
        {(s.symbol, s.timeframe, s.window) for s in symbols}
    )


async def retained(broker: Mosquitto, pattern: str) -> dict[str, bytes]:
    """Return the retained messages on ``pattern``, as a subscriber connecting now gets them."""
    async with Subscriber(broker.port, [pattern, SENTINEL]) as late:
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.publish(SENTINEL, b"end", qos=1)
        await late.wait_on(SENTINEL)  # retained messages come before a later message
    return {m.topic.value: bytes(m.payload) for m in late.messages if m.retain}  # type: ignore[arg-type]


def meta(config: Settings, key: str) -> list[str] | None:
    conn = open_store(config.db_path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    finally:
        conn.close()
    return None if row is None else json.loads(row[0])


def snapshot_topics(*series: str) -> list[str]:
    """Return ``<prefix>/<series>`` for each, sorted (``analytics/…`` or ``symbols/…``)."""
    return sorted(f"{PREFIX}/{s}" for s in series)


def configs(*series: str) -> list[str]:
    """Return the Home Assistant config topics of series given as ``eth_1m_5`` (Y/BTCUSDT)."""
    return sorted(
        f"homeassistant/sensor/pairwatch_{y}usdt_btcusdt_{series_id}_{metric}/config"
        for y, series_id in (s.split("_", 1) for s in series)
        for metric in ("zscore", "hedge_ratio", "correlation")
    )


STATUS = f"{PREFIX}/status"
FIRST_RUN = snapshot_topics(
    "analytics/ETHUSDT-BTCUSDT/1m/5", "analytics/ETHUSDT-BTCUSDT/1m/10",
    "analytics/SOLUSDT-BTCUSDT/1m/5",
    "symbols/BTCUSDT/1m/5", "symbols/BTCUSDT/1m/10", "symbols/ETHUSDT/1m/5",
    "symbols/ETHUSDT/1m/10", "symbols/SOLUSDT/1m/5",
)  # fmt: skip


async def first_run(tmp_path: Path, broker: Mosquitto) -> Settings:
    """Run once with ETH/BTC (windows 5, 10) and SOL/BTC (5), publishing real snapshots."""
    config = settings(tmp_path, broker, [ETH_5_10, SOL_5])
    async with running(config) as runtime:
        topics = publish_engine_snapshots(runtime)
        assert await published(runtime) == topics == len(FIRST_RUN)
    return config


async def test_a_run_publishes_retained_snapshots_and_keeps_their_topics(
    tmp_path: Path, broker: Mosquitto
) -> None:
    config = settings(tmp_path, broker, [ETH_5_10, SOL_5])
    async with running(config) as runtime:
        assert await asyncio.wait_for(runtime.settled.wait(), 15)  # nothing to clear
        assert meta(config, RETAINED_KEY) == sorted([STATUS, *FIRST_RUN])  # before any snapshot
        topics = publish_engine_snapshots(runtime)
        assert await published(runtime) == topics
        online = await retained(broker, f"{PREFIX}/#")
    after = await retained(broker, f"{PREFIX}/#")
    assert (online[STATUS], after[STATUS]) == (b"online", b"offline")
    assert sorted(after) == sorted([STATUS, *FIRST_RUN])  # what the engine made is what was kept
    assert meta(config, RETAINED_KEY) == sorted(after)
    assert meta(config, DISCOVERY_KEY) == []
    eth = json.loads(after[f"{PREFIX}/analytics/ETHUSDT-BTCUSDT/1m/10"])
    assert (eth["pair"], eth["window"], eth["ts"]) == ("ETHUSDT/BTCUSDT", 10, T0 + 120_000)
    assert runtime.publisher.counters() == {
        "published": 8, "coalesced": 16, "dropped": 0, "pending": 0, "max_pending": 8,
    }  # fmt: skip


async def test_the_snapshots_of_removed_pairs_and_windows_are_cleared_at_the_next_start(
    tmp_path: Path, broker: Mosquitto
) -> None:
    await first_run(tmp_path, broker)
    config = settings(tmp_path, broker, [ETH_5])  # SOL/BTC and window 10 removed
    async with running(config) as runtime:
        await asyncio.wait_for(runtime.settled.wait(), 15)
        now = await retained(broker, f"{PREFIX}/#")
    kept = snapshot_topics(
        "analytics/ETHUSDT-BTCUSDT/1m/5", "symbols/BTCUSDT/1m/5", "symbols/ETHUSDT/1m/5"
    )
    assert sorted(now) == sorted([STATUS, *kept])  # the last values of the kept ones stay
    assert json.loads(now[kept[0]])["ts"] == T0 + 120_000
    assert meta(config, RETAINED_KEY) == sorted([STATUS, *kept])


async def test_settings_changes_clear_what_is_no_longer_published(
    tmp_path: Path, broker: Mosquitto
) -> None:
    await first_run(tmp_path, broker)
    only_eth = settings(tmp_path, broker, [ETH_5_10, SOL_5], pairs=["ETHUSDT/BTCUSDT"])
    async with running(only_eth) as runtime:
        await asyncio.wait_for(runtime.settled.wait(), 15)
    gone = snapshot_topics("analytics/SOLUSDT-BTCUSDT/1m/5", "symbols/SOLUSDT/1m/5")
    kept = sorted(set(FIRST_RUN) - set(gone))  # BTCUSDT/1m/10 stays: a leg of ETH/BTC
    assert sorted(await retained(broker, f"{PREFIX}/#")) == sorted([STATUS, *kept])

    no_analytics = settings(tmp_path, broker, [ETH_5_10, SOL_5], publish_analytics=False)
    async with running(no_analytics) as runtime:
        await asyncio.wait_for(runtime.settled.wait(), 15)
    assert sorted(await retained(broker, f"{PREFIX}/#")) == [STATUS]
    assert meta(no_analytics, RETAINED_KEY) == [STATUS]

    moved = settings(tmp_path, broker, [ETH_5], topic_prefix="desk/v1")
    async with running(moved) as runtime:
        await asyncio.wait_for(runtime.settled.wait(), 15)
    assert await retained(broker, f"{PREFIX}/#") == {}  # the old status topic is gone too
    assert await retained(broker, "desk/v1/status") == {"desk/v1/status": b"offline"}


async def test_home_assistant_sensors_are_announced_and_removed_across_two_runs(
    tmp_path: Path, broker: Mosquitto
) -> None:
    first = settings(tmp_path, broker, [ETH_5_10, SOL_5], ha_discovery=True)
    async with running(first) as runtime:
        await asyncio.wait_for(runtime.publisher.discovery_sent.wait(), 15)
        announced = await retained(broker, "homeassistant/#")
    assert sorted(announced) == configs("eth_1m_5", "eth_1m_10", "sol_1m_5")
    assert meta(first, DISCOVERY_KEY) == sorted(announced)
    z = json.loads(announced["homeassistant/sensor/pairwatch_solusdt_btcusdt_1m_5_zscore/config"])
    assert z["state_topic"] == f"{PREFIX}/analytics/SOLUSDT-BTCUSDT/1m/5"

    second = settings(tmp_path, broker, [ETH_5], ha_discovery=True)
    async with running(second) as runtime:
        await asyncio.wait_for(runtime.settled.wait(), 15)
    assert sorted(await retained(broker, "homeassistant/#")) == configs("eth_1m_5")
    assert meta(second, DISCOVERY_KEY) == configs("eth_1m_5")

    off = settings(tmp_path, broker, [ETH_5])  # ha_discovery turned off: all sensors go
    async with running(off) as runtime:
        await asyncio.wait_for(runtime.settled.wait(), 15)
    assert await retained(broker, "homeassistant/#") == {}
    assert meta(off, DISCOVERY_KEY) == []


async def test_a_stop_before_the_final_record_forgets_no_topic(
    tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = settings(tmp_path, broker, [ETH_5], ha_discovery=True)
    async with running(first) as runtime:
        await asyncio.wait_for(runtime.settled.wait(), 15)

    # The second run announces SOL/BTC, removes ETH/BTC and stops before it records the
    # final set, as a daemon killed right after publishing would.
    monkeypatch.setattr(mqtt_service, "record", lambda db, topics: None)
    second = settings(tmp_path, broker, [SOL_5], ha_discovery=True)
    async with running(second) as runtime:
        await asyncio.wait_for(runtime.publisher.discovery_sent.wait(), 15)
    assert sorted(await retained(broker, "homeassistant/#")) == configs("sol_1m_5")
    assert meta(second, DISCOVERY_KEY) == configs("eth_1m_5", "sol_1m_5")  # a superset
    assert meta(second, RETAINED_KEY) == sorted([STATUS, *snapshot_topics(
        "analytics/ETHUSDT-BTCUSDT/1m/5", "analytics/SOLUSDT-BTCUSDT/1m/5",
        "symbols/BTCUSDT/1m/5", "symbols/ETHUSDT/1m/5", "symbols/SOLUSDT/1m/5",
    )])  # fmt: skip

    monkeypatch.undo()
    third = settings(tmp_path, broker, [ETH_5_10], ha_discovery=True)
    async with running(third) as runtime:
        await asyncio.wait_for(runtime.settled.wait(), 15)
    # SOL/BTC's sensors were never in a final record, and still they are removed.
    assert sorted(await retained(broker, "homeassistant/#")) == configs("eth_1m_5", "eth_1m_10")
    assert meta(third, DISCOVERY_KEY) == configs("eth_1m_5", "eth_1m_10")


async def test_a_row_of_series_from_before_topics_were_kept_still_removes_their_sensors(
    tmp_path: Path, broker: Mosquitto
) -> None:
    config = settings(tmp_path, broker, [ETH_5], ha_discovery=True)
    old = "homeassistant/sensor/pairwatch_solusdt_btcusdt_1m_5_zscore/config"
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.publish(old, b"{}", qos=1, retain=True)
    conn = open_store(config.db_path)
    with conn:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            (DISCOVERY_KEY, json.dumps([["SOLUSDT", "BTCUSDT", "1m", 5]])),
        )
    conn.close()
    async with running(config) as runtime:
        await asyncio.wait_for(runtime.settled.wait(), 15)
    assert sorted(await retained(broker, "homeassistant/#")) == configs("eth_1m_5")
    assert meta(config, DISCOVERY_KEY) == configs("eth_1m_5")


async def test_an_unreadable_row_is_reported_and_replaced(
    tmp_path: Path, broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(tmp_path, broker, [ETH_5])
    conn = open_store(config.db_path)
    with conn:
        conn.execute("INSERT INTO meta (key, value) VALUES (?, 'not json')", (RETAINED_KEY,))
    conn.close()
    with caplog.at_level(logging.WARNING, logger="pairwatch.daemon.mqtt_service"):
        async with running(config) as runtime:
            await asyncio.wait_for(runtime.settled.wait(), 15)
    [warning] = [r.getMessage() for r in caplog.records if r.name.endswith("mqtt_service")]
    assert warning.startswith("meta mqtt_retained is unreadable (")
    assert meta(config, RETAINED_KEY) == sorted([STATUS, *snapshot_topics(
        "analytics/ETHUSDT-BTCUSDT/1m/5", "symbols/BTCUSDT/1m/5", "symbols/ETHUSDT/1m/5",
    )])  # fmt: skip
