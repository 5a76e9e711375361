"""A real ``pairwatch run`` whose database is full rides it out and catches up afterwards.

The database is made before the start with a 2 MB filler table, and ``storage.max_size``
caps the file at exactly its size: it cannot grow by one page. The daemon (a subprocess)
reads a paced synthetic market from a simulator in this process and keeps raw trades, 1 s
bars and one pair, so its first page split fails with "database or disk is full". While
the store is full, /healthz (served by the page process) says so, the log says it once,
and trades and analytics go on in memory. Dropping the filler from another connection
frees its pages; SQLite reuses them, the writer catches up and /healthz is 200 again.

What docs/operations.md ("Disk full") promises, checked here: nothing the daemon took in
while the store was full is lost: every trade it accepted is in ``ticks``, and its 1 s
bars have no hole and equal pandas' bars of the trades the simulator sent.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from pairwatch.daemon.sources.simulator import Simulator, SimulatorOptions
from pairwatch.daemon.store import open_store
from support.delivered import parse_trade
from support.oracle import resample_oracle
from support.process import Daemon, kill_leftovers, query

SYMBOLS = ("BTCUSDT", "ETHUSDT")
FULL = "OperationalError: database or disk is full"
FILLER_BLOBS = 64
"""32 kB blobs in the filler table: 2 MB, freed when it is dropped."""


@pytest.fixture(autouse=True)
def _no_leftover_daemons() -> Iterator[None]:
    yield
    kill_leftovers()


def make_full_store(db: Path) -> int:
    """Create the store with a 2 MB filler table; return the file's size in bytes."""
    conn = open_store(db)
    try:
        conn.execute("CREATE TABLE filler (b BLOB)")
        conn.executemany("INSERT INTO filler VALUES (randomblob(32768))", [()] * FILLER_BLOBS)
    finally:
        conn.close()  # the last connection: the WAL is checkpointed into the file
    pages, page_size = (query(db, f"pragma {name}")[0][0] for name in ("page_count", "page_size"))
    size = db.stat().st_size
    assert size == pages * page_size  # type: ignore[operator]
    return size


def write_config(tmp_path: Path, base_url: str, max_size: int) -> Path:
    config = tmp_path / "pairwatch.toml"
    config.write_text(
        f"""
data_dir = "{tmp_path / "data"}"
log_level = "INFO"

[feed]
source = "binance"
base_url = "{base_url}"
symbols = {list(SYMBOLS)}

[bars]
timeframes = ["1s"]

[storage]
store_ticks = true
max_size = {max_size}

[[pairs]]
y = "ETHUSDT"
x = "BTCUSDT"
windows = [5]
adf_lookback = 50
adf_refresh = "1h"
"""
    )
    return config


def metric(text: str, name: str) -> float:
    """Return one sample's value from a Prometheus text page (``name`` with its labels)."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"{name} not on /metrics"
    return float(found.group(1))


class Monitor:
    """Asks /healthz and /metrics of the daemon's page, as a monitor would."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def health(self) -> tuple[int, dict[str, Any]]:
        response = await self.client.get("/healthz")
        return response.status_code, response.json()

    async def health_until(
        self, predicate: Callable[[int, dict[str, Any]], bool], seconds: float = 20.0
    ) -> dict[str, Any]:
        """Poll /healthz (the observable) until ``predicate(status, body)`` holds."""
        async with asyncio.timeout(seconds):
            while True:
                status, body = await self.health()
                if predicate(status, body):
                    return body
                await asyncio.sleep(0.1)

    async def metrics(self) -> str:
        response = await self.client.get("/metrics")
        assert response.status_code == 200
        return response.text

    async def metrics_until(self, predicate: Callable[[str], bool], seconds: float = 20.0) -> str:
        """Poll /metrics until ``predicate(text)`` holds."""
        async with asyncio.timeout(seconds):
            while True:
                text = await self.metrics()
                if predicate(text):
                    return text
                await asyncio.sleep(0.1)


def sent_trades(sim: Simulator) -> pd.DataFrame:
    """Return the trades the simulator sent on its one connection, from its log."""
    [record] = sim.connections
    log = sim.feed.log
    assert log.base == 0  # nothing trimmed: every frame is still there to look up
    by_id: dict[tuple[str, int], tuple[object, ...]] = {}
    for frame, ident in zip(log.frames, log.ids, strict=True):
        row = parse_trade(frame, SYMBOLS)
        if row is not None:
            by_id[(str(row[0]), ident)] = row
    out = [by_id[(s, i)] for s in SYMBOLS for i in record.ids(f"{s.lower()}@trade")]
    return pd.DataFrame(out, columns=["symbol", "id", "ts", "price", "qty", "maker", "count"])


async def test_a_full_database_is_reported_ridden_out_in_memory_and_caught_up(
    tmp_path: Path,
) -> None:
    db = tmp_path / "data" / "pairwatch.sqlite3"
    db.parent.mkdir()
    size = make_full_store(db)
    options = SimulatorOptions(symbols=SYMBOLS, rate=150.0, speed=1.0, event_clock="wall")
    async with (
        Simulator(options) as sim,
        httpx.AsyncClient(timeout=10) as client,
    ):
        daemon = Daemon(write_config(tmp_path, sim.url, size))
        await daemon.start()
        # The page listens on a free port (tests' PAIRWATCH_WEB__PORT=0) that it logs.
        page = re.search(
            r"web page at (http://\S+?)/? ", await daemon.wait_for_text("web page at ")
        )
        assert page is not None
        client.base_url = httpx.URL(page.group(1))
        web = Monitor(client)

        # --- full: reported on /healthz with the error, once in the log
        body = await web.health_until(lambda status, _: status == 503)
        full_seen = time.time_ns() // 1_000_000
        assert body["status"] == "failing"
        assert body["problems"] == [f"the store writer is unhealthy: {FULL}"]
        assert body["writer"]["healthy"] is False
        assert body["writer"]["last_error"] == FULL
        failed = await daemon.wait_for_text("store write failed")
        assert FULL in failed
        assert f"(storage.max_size is {size} bytes)" in failed
        assert db.stat().st_size == size

        # --- still computing in memory: trades and analytics go on, writes keep failing
        before = await web.metrics()
        trades, snapshots = (
            metric(before, "pairwatch_trades_accepted_total"),
            metric(before, 'pairwatch_analytics_snapshots_total{kind="pair"}'),
        )
        during = await web.metrics_until(
            lambda m: (
                metric(m, "pairwatch_trades_accepted_total") >= trades + 300
                and metric(m, 'pairwatch_analytics_snapshots_total{kind="pair"}') >= snapshots + 3
                and metric(m, "pairwatch_writer_errors_total") >= 3
            )  # retried, not re-logged
        )
        assert metric(during, "pairwatch_writer_healthy") == 0
        status, body = await web.health()
        assert (status, body["writer"]["last_error"]) == (503, FULL)
        assert body["writer"]["queued_rows"] > 0
        assert query(db, "select count(*) from ticks") == [(0,)]

        # --- space returns: the filler's pages are free for the writer to reuse
        with sqlite3.connect(db, timeout=10) as conn:
            conn.execute("DROP TABLE filler")
        body = await web.health_until(lambda status, _: status == 200)
        recovered_seen = time.time_ns() // 1_000_000
        assert body["status"] in ("ok", "starting")
        assert body["writer"]["healthy"] is True
        assert body["writer"]["last_error"] == FULL  # kept after recovery
        await daemon.wait_for_text("store writes recovered after ")
        # A few more bars written after the catch-up, then a clean stop.
        after = metric(await web.metrics(), "pairwatch_bars_closed_total")
        await web.metrics_until(lambda m: metric(m, "pairwatch_bars_closed_total") >= after + 4)
        code, _ = await daemon.terminate()
    assert code == 0
    log = "".join(daemon.lines)
    assert log.count("store write failed") == 1  # once, not per retry
    assert log.count("store writes recovered") == 1
    errors = [
        line for line in daemon.lines if " ERROR " in line and "tornado.access" not in line
    ]  # (tornado logs each 503 answer of /healthz at ERROR)
    assert errors == []
    assert "Traceback" not in log

    # --- nothing lost: every accepted trade is stored, and the bars are the trades' bars
    assert query(db, "pragma integrity_check") == [("ok",)]
    assert db.stat().st_size <= size
    sent = sent_trades(sim)
    with sqlite3.connect(db) as conn:
        last_ids = dict(conn.execute("select symbol, last_trade_id from symbol_state").fetchall())
        ticks = pd.read_sql_query("select symbol, trade_id from ticks order by trade_id", conn)
    for symbol in SYMBOLS:
        # What the daemon took in: up to the last id it saved (later ones were in flight).
        mine = sent[(sent.symbol == symbol) & (sent["id"] <= last_ids[symbol])].sort_values("id")
        stored = ticks[ticks.symbol == symbol]["trade_id"].tolist()
        assert stored == mine["id"].tolist()
        with sqlite3.connect(db) as conn:
            bars = pd.read_sql_query(
                "select ts, open, high, low, close, volume, trades from bars "
                "where symbol = ? and timeframe = '1s' order by ts",
                conn,
                params=(symbol,),
            ).set_index("ts")
        assert bars.index[0] <= full_seen - 1_000  # the bars span the spell the store was full
        assert bars.index[-1] >= recovered_seen
        assert (np.diff(bars.index) == 1_000).all(), f"{symbol}: a hole in the 1s bars"
        assert int(bars["trades"].sum()) == int(mine["count"].sum())
        expected = resample_oracle(mine, 1_000).set_index("ts")
        assert list(bars.index) == list(expected.index)
        for column in ["open", "high", "low", "close", "trades"]:
            np.testing.assert_array_equal(bars[column], expected[column], f"{symbol} {column}")
        np.testing.assert_allclose(bars["volume"], expected["volume"], rtol=1e-12)
