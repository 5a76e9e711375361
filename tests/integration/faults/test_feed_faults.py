"""The live client against a faulty Binance-compatible server: it recovers every time.

The simulator runs a paced synthetic market (ten times real time) and reconnecting clients
start at the market's present, as on Binance: trades made while a client is away are lost
for good. Each test injects one kind of fault again and again, then checks, against what the
feed really handed over (parsed with ``json``, not by pairwatch):

* the client came back after every fault;
* every id missing between delivered trades is a row of ``gaps``, and nothing else is;
* every stored bar equals pandas' bar of exactly the delivered trades;
* rejected frames are counted by reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from pairwatch.daemon.sources.simulator import Simulator, SimulatorOptions
from pairwatch.daemon.sources.simulator_faults import Fault, FaultOptions, malformed_frames
from support.delivered import assert_bars_match, delivered_trades, missing_ranges, stored_gaps
from support.feed import FAST, LiveFeed, live_feed

SYMBOLS = ("BTCUSDT", "ETHUSDT")
TIMEFRAMES = (("1s", 1_000), ("1m", 60_000))


def market(faults: FaultOptions | None = None, **changes: object) -> SimulatorOptions:
    """A paced synthetic market: ~100 orders a simulated second, ten times real time."""
    options = SimulatorOptions(
        symbols=SYMBOLS, rate=100.0, speed=10.0, event_clock="simulated",
        faults=faults or FaultOptions(),
    )  # fmt: skip
    return dataclasses.replace(options, **changes)  # type: ignore[arg-type]


async def more_trades(live: LiveFeed, count: int) -> None:
    """Wait until ``count`` more trades were accepted than now."""
    target = live.health.accepted + count
    await live.wait_until(lambda: live.health.accepted >= target)


def check_store(live: LiveFeed, db: Path) -> tuple[int, set[tuple[str, int, int]]]:
    """Check gaps and bars against the delivered frames; return (trades, holes)."""
    assert live.delivered is not None
    trades = delivered_trades(live.delivered, SYMBOLS)
    assert len(trades) == live.health.accepted
    holes = missing_ranges(trades)
    assert stored_gaps(db) == holes
    assert live.health.gaps == len(holes)
    assert live.health.missed_ids == sum(hi - lo + 1 for _, lo, hi in holes)
    for label, length in TIMEFRAMES:
        assert assert_bars_match(db, trades, label, length) > 0
    return len(trades), holes


@pytest.mark.parametrize("how", ["drop", "close"])
async def test_disconnects_every_few_seconds_are_survived_and_missed_ids_are_gaps(
    tmp_path: Path, how: str
) -> None:
    # "drop": TCP abort, no close frame (1006); "close": a clean close (1000) at that age.
    age = 0.3
    faults = FaultOptions(drop_after_s=age) if how == "drop" else FaultOptions(max_connection_s=age)
    db = tmp_path / "bars.sqlite3"
    async with (
        Simulator(market(faults)) as sim,
        live_feed(sim.url, db, symbols=SYMBOLS, record=True) as live,
    ):
        await live.wait_until(lambda: live.health.connects >= 5)
        await more_trades(live, 100)
    ended = sim.connections[:-1]  # the last one is closed by the client, at the end
    assert len(ended) >= 4
    assert {c.close_cause for c in ended} == {"drop" if how == "drop" else "max_age"}
    assert live.health.reconnects >= 4
    _, holes = check_store(live, db)
    assert holes  # the market went on while the client was away
    assert set(live.health.rejected) <= {"duplicate"}


async def test_stalled_connections_are_dropped_by_the_watchdog_every_time(tmp_path: Path) -> None:
    faults = FaultOptions(faults=(Fault("stall", after=150, every=150, stall_s=30.0),))
    options = dataclasses.replace(FAST, watchdog=0.25)
    db = tmp_path / "bars.sqlite3"
    async with (
        Simulator(market(faults)) as sim,
        live_feed(sim.url, db, symbols=SYMBOLS, options=options, record=True) as live,
    ):
        await live.wait_until(lambda: live.health.connects >= 4)
        await more_trades(live, 100)
    ended = sim.connections[:-1]
    assert len(ended) >= 3
    assert all(c.faults == ["stall"] and c.messages == 150 for c in ended)
    _, holes = check_store(live, db)
    assert holes
    assert live.health.rejected == {}


# What the pipeline makes of each frame of the malformed corpus (``malformed_frames``).
# The two the lenient decoder reads as trades repeat the last id sent, so they are dropped
# as duplicates; every other one is rejected before it can touch a bar.
REASONS = {
    "broken_json": "malformed_json",
    "not_an_object": "bad_field",
    "no_data": "bad_field",
    "missing_price": "bad_field",
    "missing_id": "bad_field",
    "missing_time": "bad_field",
    "price_as_number": "duplicate",
    "id_as_string": "duplicate",
    "price_zero": "bad_price",
    "price_negative": "bad_price",
    "price_nan": "bad_price",
    "price_inf": "bad_price",
    "qty_negative": "bad_qty",
    "unknown_symbol": "unknown_symbol",
    "symbol_mismatch": "unknown_symbol",
    "huge_numbers": "bad_field",
    "binary_frame": "binary_frame",
}


def test_the_reason_table_covers_the_whole_corpus() -> None:
    labels = [label for label, _ in malformed_frames("btcusdt@trade", "spot", 1, 0)]
    assert labels == list(REASONS)


async def test_malformed_bursts_are_counted_by_reason_and_touch_no_bar(tmp_path: Path) -> None:
    bursts = 4
    size = len(REASONS)
    faults = FaultOptions(
        faults=tuple(Fault("malformed", after=120 * (k + 1), count=size) for k in range(bursts))
    )
    db = tmp_path / "bars.sqlite3"
    async with (
        Simulator(market(faults)) as sim,
        live_feed(sim.url, db, symbols=SYMBOLS, record=True) as live,
    ):
        # The corpus ends with its binary frame: once the last burst's has arrived, all have.
        await live.wait_until(lambda: live.health.rejected["binary_frame"] == bursts)
        await more_trades(live, 50)
    (connection,) = sim.connections
    assert connection.malformed == list(REASONS) * bursts
    per_burst = Counter(REASONS.values())
    assert live.health.rejected == Counter({r: n * bursts for r, n in per_burst.items()})
    assert live.health.frames == live.health.accepted + size * bursts
    count, holes = check_store(live, db)
    assert holes == set()
    assert count == live.health.accepted


async def test_server_shutdown_on_every_connection_loses_nothing(tmp_path: Path) -> None:
    # Binance: {"stream":"!serverShutdown","data":{"e":"serverShutdown","E":…}}, then it
    # closes. The client opens the next connection at once and overlaps the two, so even
    # though every new connection starts at the market's present, no id goes missing.
    # (``every`` makes a fault per connection; one this large fires once on each.)
    faults = FaultOptions(faults=(Fault("shutdown", after=200, every=10**9, grace_s=1.0),))
    options = dataclasses.replace(FAST, overlap=0.2)
    db = tmp_path / "bars.sqlite3"
    async with (
        Simulator(market(faults)) as sim,
        live_feed(sim.url, db, symbols=SYMBOLS, options=options, record=True) as live,
    ):
        await live.wait_until(lambda: live.health.reconnects >= 3)  # three hand-overs
        await more_trades(live, 100)
    noticed = sim.connections[:3]
    assert [c.notices for c in noticed] == [1, 1, 1]
    assert all(c.close_cause == "peer" for c in noticed)  # the client closed them, in time
    _, holes = check_store(live, db)
    assert holes == set()
    assert live.health.rejected["duplicate"] > 0  # the overlap, dropped by id
    assert set(live.health.rejected) == {"duplicate"}


async def test_a_server_refusing_connections_for_a_while_is_retried_until_it_accepts(
    tmp_path: Path,
) -> None:
    db = tmp_path / "bars.sqlite3"
    async with (
        Simulator(market()) as sim,
        live_feed(sim.url, db, symbols=SYMBOLS, record=True) as live,
    ):
        await more_trades(live, 300)
        sim.refusing = True  # an outage: connections dropped, handshakes answered 503
        assert sim.drop_connections() == 1
        await sim.wait_until(lambda: sim.handshakes.refused >= 3)
        assert live.health.connects == 1
        sim.refusing = False
        await live.wait_until(lambda: live.health.connects == 2)
        await more_trades(live, 100)
    assert sim.handshakes.accepted == 2
    _, holes = check_store(live, db)
    assert {symbol for symbol, _, _ in holes} == set(SYMBOLS)  # the outage, one gap per symbol
    assert len(holes) == len(SYMBOLS)


class _Attempts(logging.Handler):
    """Count the feed's "cannot connect" warnings and wake a waiter at each."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.failed = 0
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("cannot connect"):
            self.failed += 1
            self.event.set()


@pytest.fixture
def attempts() -> Iterator[_Attempts]:
    handler = _Attempts()
    feed_logger = logging.getLogger("pairwatch.daemon.sources.binance")
    feed_logger.addHandler(handler)
    yield handler
    feed_logger.removeHandler(handler)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_server_that_is_not_up_yet_is_retried_until_it_listens(
    tmp_path: Path, attempts: _Attempts
) -> None:
    port = _free_port()
    db = tmp_path / "bars.sqlite3"
    async with live_feed(f"ws://127.0.0.1:{port}", db, symbols=SYMBOLS, record=True) as live:
        while attempts.failed < 3:  # connection refused at the TCP level, three times
            attempts.event.clear()
            await asyncio.wait_for(attempts.event.wait(), 10)
        async with Simulator(market(port=port)) as sim:
            await more_trades(live, 300)
    assert live.health.connects == 1
    assert sim.handshakes.accepted == 1
    _, holes = check_store(live, db)
    assert holes == set()


async def test_every_fault_at_once_and_the_client_still_ends_up_consistent(
    tmp_path: Path,
) -> None:
    faults = FaultOptions(
        faults=(
            Fault("malformed", after=50, every=170, count=len(REASONS)),
            Fault("shutdown", after=260, connection=2, grace_s=1.0),
            Fault("stall", after=90, connection=4, stall_s=30.0),
            Fault("close", after=120, connection=5, code=1011, reason="internal error"),
        ),
        drop_after_s=0.6,
    )
    options = dataclasses.replace(FAST, watchdog=0.25, overlap=0.2)
    db = tmp_path / "bars.sqlite3"
    async with (
        Simulator(market(faults)) as sim,
        live_feed(sim.url, db, symbols=SYMBOLS, options=options, record=True) as live,
    ):
        await live.wait_until(lambda: live.health.connects >= 6)
        sim.refusing = True
        sim.drop_connections()
        await sim.wait_until(lambda: sim.handshakes.refused >= 2)
        sim.refusing = False
        await live.wait_until(lambda: live.health.connects >= 7)
        await more_trades(live, 200)
    causes = [c.close_cause for c in sim.connections]
    assert {"drop", "close"} <= set(causes)
    assert sim.connections[1].notices == 1
    assert "stall" in sim.connections[3].faults
    assert live.delivered is not None
    assert live.health.frames == len(live.delivered)
    _, holes = check_store(live, db)
    assert holes
    rejected = live.health.rejected
    notices = sum(c.notices for c in sim.connections)
    assert live.health.frames == live.health.accepted + sum(rejected.values()) + notices
    # Whole bursts, but the last one may have been cut short by the end of the test.
    bursts = rejected["binary_frame"]  # the corpus's last frame
    assert bursts >= 3
    per_burst = Counter(r for r in REASONS.values() if r != "duplicate")
    for reason, n in per_burst.items():
        assert n * bursts <= rejected[reason] <= n * (bursts + 1), reason
