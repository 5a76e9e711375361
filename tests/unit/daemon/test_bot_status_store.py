"""``/status`` shows the store: OK and its size, or failing since when, the error, what waits.

A ``Daemon`` that is not run holds a real writer whose database is at its
``storage.max_size``; ``DaemonBackend.status`` reads it and ``status_html`` shows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pairwatch.config.settings import Settings
from pairwatch.daemon.bot_backend import DaemonBackend
from pairwatch.daemon.health import Health
from pairwatch.daemon.service import Daemon
from pairwatch.daemon.store import open_store
from pairwatch.daemon.writer import Writer
from pairwatch.events import Bar
from pairwatch.notifiers.telegram_backend import StoreStatus
from pairwatch.notifiers.telegram_format import size, status_html
from support.botapi import check_html
from support.timing import Clock, wait_until

T0 = 1_700_000_040_000
FULL = "OperationalError: database or disk is full"


@dataclass
class World:
    daemon: Daemon
    backend: DaemonBackend
    writer: Writer
    clock: Clock
    size: int


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    db = tmp_path / "pairwatch.sqlite3"
    conn = open_store(db)
    conn.execute("CREATE TABLE filler (b BLOB)")
    conn.executemany("INSERT INTO filler VALUES (randomblob(32768))", [()] * 40)
    conn.close()
    file_size = db.stat().st_size
    settings = Settings(
        data_dir=tmp_path,
        feed={"source": "simulator", "symbols": ["BTCUSDT", "ETHUSDT"]},
        bars={"timeframes": ["1m"]},
        storage={"max_size": file_size},
    )
    clock = Clock(T0)
    daemon = Daemon(settings, clock=clock)
    daemon.health = Health(started_at=(T0 - 3_600_000) / 1000)
    writer = daemon.writer = Writer(
        settings.db_path, max_size=settings.storage.max_size, clock=clock
    )
    writer.start()
    backend = DaemonBackend(daemon, clock)
    try:
        yield World(daemon, backend, writer, clock, file_size)
    finally:
        backend.close()
        writer.close(10)


def bars(n: int) -> list[Bar]:
    return [
        Bar("BTCUSDT", "1m", T0 + i * 60_000, 99.0, 101.0, 98.0, 100.0, 2.0, 199.0, 99.5, 3, 1.0)
        for i in range(n)
    ]


def store_part(text: str) -> list[str]:
    """Return the store's lines of a ``/status`` text: from its Store line to the feeds."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "Store:" in line)
    end = next(i for i, line in enumerate(lines) if line.startswith("<pre>"))
    return lines[start:end]


async def test_status_says_when_the_store_began_failing_its_error_and_what_waits(
    world: World,
) -> None:
    status = await world.backend.status()
    assert status.store == StoreStatus(
        healthy=True, failing_since=None, failing_for_s=None, last_error=None, queued_rows=0,
        size_bytes=world.size, max_size=world.size,
    )  # fmt: skip
    cap = size(world.size)
    assert store_part(status_html(status)) == [f"Store: OK · {cap} of {cap} max"]

    world.writer.put_bars(bars(1_500))
    done = world.writer.flush()
    await asyncio.to_thread(wait_until, lambda: world.writer.errors >= 1)
    world.clock.now = T0 + 185_000  # three minutes and five seconds later

    status = await world.backend.status()
    assert status.store == StoreStatus(
        healthy=False, failing_since=T0, failing_for_s=185.0, last_error=FULL,
        queued_rows=1_500, size_bytes=world.size, max_size=world.size,
    )  # fmt: skip
    text = status_html(status)
    assert check_html(text) is None
    assert store_part(text) == [
        "⚠️ Store: <b>FAILING</b> for 3m05s (since 2023-11-14 22:14:00 UTC) · "
        "1,500 rows waiting in memory",
        f"Last error: <code>{FULL}</code>",
        f"Database file {cap} (max {cap})",
    ]

    conn = open_store(world.daemon.settings.db_path)
    conn.execute("DROP TABLE filler")
    conn.close()
    await asyncio.wait_for(asyncio.wrap_future(done), 30)
    status = await world.backend.status()
    assert status.store is not None
    assert (status.store.healthy, status.store.failing_since, status.store.queued_rows) == (
        True, None, 0,
    )  # fmt: skip
    assert status.store.last_error == FULL  # kept: /healthz shows it too
    assert store_part(status_html(status))[0].startswith("Store: OK · ")


async def test_status_says_a_stopped_writer_writes_nothing_any_more(world: World) -> None:
    world.writer.close(10)
    status = await world.backend.status()
    assert status.store is not None
    assert (status.store.healthy, status.store.failing_since) == (False, None)
    assert store_part(status_html(status))[0] == (
        "⚠️ Store: <b>STOPPED</b>: nothing is written any more · 0 rows waiting in memory"
    )
