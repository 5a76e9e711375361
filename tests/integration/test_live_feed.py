"""The live client against the simulator serving real recorded trades, with faults injected.

Every scenario replays the recorded BTCUSDT and ETHUSDT spot trades at full speed and checks
that the client ends with exactly those trades (none lost, none doubled) or records the
gaps where the server skipped ids, and that the stored bars equal a pandas oracle.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import ssl
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pairwatch.daemon.sources.simulator import Simulator, SimulatorOptions
from pairwatch.daemon.sources.simulator_faults import Fault, FaultOptions, ReconnectPolicy
from support.feed import FAST, live_feed
from support.oracle import read_frames_with_json, resample_oracle

REAL = Path(__file__).resolve().parents[1] / "data" / "real"
FILES = (
    str(REAL / "hftbacktest_spot_btcusdt_20240808_trades.gz"),
    str(REAL / "hftbacktest_spot_ethusdt_20240808_trades.gz"),
)
TRADES = pd.concat([read_frames_with_json(Path(f)) for f in FILES])
TOTAL = len(TRADES)  # 9,757 BTC + 6,106 ETH


def recorded(faults: FaultOptions) -> SimulatorOptions:
    return SimulatorOptions(mode="recorded", files=FILES, speed=None, faults=faults)


def stored(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def assert_bars_match_recording(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        for symbol, rows in TRADES.groupby("symbol"):
            bars = pd.read_sql_query(
                "select ts, open, high, low, close, volume, trades from bars "
                "where symbol = ? and timeframe = '1s' order by ts",
                conn,
                params=(symbol,),
            )
            expected = resample_oracle(rows.sort_values("id"), 1_000)
            assert len(bars) == len(expected)
            for column in ["ts", "open", "high", "low", "close", "trades"]:
                np.testing.assert_array_equal(bars[column], expected[column], column)
            np.testing.assert_allclose(bars["volume"], expected["volume"], rtol=1e-12)


async def test_all_trades_arrive_once_and_bars_match(tmp_path: Path) -> None:
    db = tmp_path / "bars.sqlite3"
    async with Simulator(recorded(FaultOptions())) as sim, live_feed(sim.url, db) as live:
        await live.wait_for_trades(TOTAL)
    assert live.health.rejected == {}
    assert live.health.gaps == 0
    assert_bars_match_recording(db)


@pytest.mark.parametrize("kind", ["drop", "close"])
async def test_disconnects_with_resend_lose_and_double_nothing(tmp_path: Path, kind: str) -> None:
    faults = FaultOptions(
        faults=(Fault(kind, after=3_000, every=4_000),),  # type: ignore[arg-type]
        reconnect=ReconnectPolicy("overlap", 50),
    )
    db = tmp_path / "bars.sqlite3"
    async with Simulator(recorded(faults)) as sim, live_feed(sim.url, db) as live:
        await live.wait_for_trades(TOTAL)
    assert len(sim.connections) >= 4
    assert live.health.reconnects >= 3
    assert live.health.rejected["duplicate"] == 50 * (len(sim.connections) - 1)
    assert live.health.gaps == 0
    assert_bars_match_recording(db)


async def test_skipped_ids_are_recorded_as_gaps(tmp_path: Path) -> None:
    faults = FaultOptions(
        faults=(Fault("drop", after=5_000),), reconnect=ReconnectPolicy("skip", 7)
    )
    db = tmp_path / "bars.sqlite3"
    async with Simulator(recorded(faults)) as sim, live_feed(sim.url, db) as live:
        await live.wait_for_trades(TOTAL - 7)
    sent = set(sim.sent_ids("btcusdt@trade")) | set(sim.sent_ids("ethusdt@trade"))
    missing = sorted(set(TRADES["id"]) - sent)
    assert len(missing) == 7
    gaps = stored(db, "select symbol, stream, from_id, to_id from gaps order by from_id")
    covered = sorted(i for _, _, lo, hi in gaps for i in range(int(lo), int(hi) + 1))  # type: ignore[call-overload]
    assert covered == missing
    assert live.health.missed_ids == 7


async def test_a_stalled_stream_is_dropped_by_the_watchdog(tmp_path: Path) -> None:
    faults = FaultOptions(
        faults=(Fault("stall", after=2_000, stall_s=30.0),), reconnect=ReconnectPolicy("continue")
    )
    db = tmp_path / "bars.sqlite3"
    async with Simulator(recorded(faults)) as sim, live_feed(sim.url, db) as live:
        await live.wait_for_trades(TOTAL, timeout=20)
    assert sim.connections[0].faults == ["stall"]
    assert len(sim.connections) == 2
    assert live.health.rejected == {}
    assert_bars_match_recording(db)


async def test_server_shutdown_hands_over_to_a_new_connection(tmp_path: Path) -> None:
    faults = FaultOptions(
        faults=(Fault("shutdown", after=4_000, grace_s=0.05),),
        reconnect=ReconnectPolicy("overlap", 200),
    )
    db = tmp_path / "bars.sqlite3"
    async with Simulator(recorded(faults)) as sim, live_feed(sim.url, db) as live:
        await live.wait_for_trades(TOTAL)
    assert sim.connections[0].notices == 1
    assert len(sim.connections) == 2
    assert live.health.rejected.get("duplicate", 0) > 0
    assert set(live.health.rejected) <= {"duplicate"}
    assert live.health.gaps == 0
    assert_bars_match_recording(db)


async def test_old_connections_rotate_with_overlap(tmp_path: Path) -> None:
    options = dataclasses.replace(FAST, max_connection_age=0.5, overlap=0.2)
    sim_options = SimulatorOptions(
        mode="recorded",
        files=FILES,
        speed=200.0,  # ~6 min of recording in ~2 s
        faults=FaultOptions(reconnect=ReconnectPolicy("overlap", 100)),
    )
    db = tmp_path / "bars.sqlite3"
    async with Simulator(sim_options) as sim, live_feed(sim.url, db, options=options) as live:
        await live.wait_for_trades(TOTAL, timeout=30)
    assert len(sim.connections) >= 3
    assert live.health.gaps == 0
    assert_bars_match_recording(db)


async def test_malformed_frames_are_counted_and_the_stream_goes_on(tmp_path: Path) -> None:
    faults = FaultOptions(faults=(Fault("malformed", after=1_000, count=12),))
    db = tmp_path / "bars.sqlite3"
    async with Simulator(recorded(faults)) as sim, live_feed(sim.url, db) as live:
        await live.wait_for_trades(TOTAL)
    assert len(sim.connections) == 1
    assert sum(live.health.rejected.values()) == 12
    assert live.health.frames == TOTAL + 12
    assert_bars_match_recording(db)


async def test_refused_connections_are_retried_with_backoff(tmp_path: Path) -> None:
    faults = FaultOptions(refuse_first=3)
    db = tmp_path / "bars.sqlite3"
    async with Simulator(recorded(faults)) as sim, live_feed(sim.url, db) as live:
        await live.wait_for_trades(TOTAL)
    assert sim.handshakes.refused == 3
    assert live.health.connects == 1
    assert_bars_match_recording(db)


async def test_server_pings_are_answered_and_the_connection_stays(tmp_path: Path) -> None:
    options = SimulatorOptions(
        mode="recorded", files=FILES, speed=20.0, ping_interval_s=0.05, ping_timeout_s=0.5
    )
    db = tmp_path / "bars.sqlite3"
    async with Simulator(options) as sim, live_feed(sim.url, db) as live:
        await live.wait_for_trades(3_000, timeout=30)  # well over a second: many pings
    assert len(sim.connections) == 1
    assert live.health.reconnects == 0


TLS = Path(__file__).resolve().parents[1] / "data" / "tls"


def _server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
    return context


async def test_the_client_speaks_tls_and_verifies_the_server(tmp_path: Path) -> None:
    trusting = ssl.create_default_context(cafile=str(TLS / "cert.pem"))
    options = dataclasses.replace(FAST, ssl_context=trusting)
    sim_options = dataclasses.replace(recorded(FaultOptions()), ssl=_server_context())
    db = tmp_path / "bars.sqlite3"
    async with Simulator(sim_options) as sim, live_feed(sim.url, db, options=options) as live:
        assert sim.url.startswith("wss://127.0.0.1:")
        await live.wait_for_trades(TOTAL)
    assert live.health.rejected == {}
    assert_bars_match_recording(db)


async def test_an_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    """The default context (system CAs) must not accept a self-signed server."""
    from pairwatch.daemon.sources.wsclient import FrameConnection

    sim_options = dataclasses.replace(recorded(FaultOptions()), ssl=_server_context())
    async with Simulator(sim_options) as sim:
        with pytest.raises(ssl.SSLCertVerificationError):
            await FrameConnection.open(
                sim.url + "/stream?streams=btcusdt@trade", lambda raw, ts: None, open_timeout=5
            )
        assert sim.handshakes.accepted == 0
