"""``GET /export`` under a leaving client, a failing read and a stopping server.

A database of 120,000 synthetic one-second snapshots (several chunks of CSV, far more than
a socket buffer) is written with ``benchmarks/export.py``'s builder; the page server is the
real one (``serve_web``: its own loop in a thread), reached over loopback with httpx.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Generator
from pathlib import Path

import httpx
import pytest

from pairwatch.config.web_settings import WebSettings
from pairwatch.web import export, export_route
from pairwatch.web.server import serve_web

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from export import build

ROWS = 120_000
QUERY = "export?y=ETHUSDT&x=BTCUSDT&timeframe=1s&window=100&format=csv"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("route") / "big.sqlite3"
    build(path, ROWS)
    return path


async def test_a_whole_download_has_every_row(db: Path) -> None:
    async with (
        serve_web(WebSettings(port=0), db, timeframes={"1s": 1_000}) as server,
        httpx.AsyncClient(base_url=server.url, timeout=60) as client,
    ):
        response = await client.get(QUERY)
        assert response.status_code == 200
        assert response.headers["content-disposition"] == (
            'attachment; filename="ETHUSDT-BTCUSDT-1s-w100.csv"'
        )
        lines = response.text.splitlines()
        assert len(lines) == ROWS + 1  # the header and every row
        assert lines[0].startswith("ts,time,y_open,")


async def test_a_client_leaving_mid_download_ends_the_export(db: Path) -> None:
    async with serve_web(WebSettings(port=0), db, timeframes={"1s": 1_000}) as server:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=60) as client,
            client.stream("GET", QUERY) as response,
        ):
            assert response.status_code == 200
            async for _ in response.aiter_bytes():
                break  # one piece, then the client goes
        # The producer notices and ends; its reader is closed in its thread. The server
        # still answers afterwards.
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            again = await client.get(QUERY.replace("format=csv", "format=parquet"))
            assert again.status_code == 200
    assert await asyncio.to_thread(export_route.wait_idle, 30)


async def test_a_read_failing_after_the_start_aborts_the_download(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*_: object) -> Generator[bytes, None, None]:
        yield b"ts,time\n1,2\n"
        raise OSError("disk I/O error")

    monkeypatch.setattr(export, "export_chunks", failing)
    async with (
        serve_web(WebSettings(port=0), db, timeframes={"1s": 1_000}) as server,
        httpx.AsyncClient(base_url=server.url, timeout=60) as client,
    ):
        # The browser must see a failed download, not a short file that looks complete.
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete"):
            await client.get(QUERY)


async def test_stopping_the_server_during_a_slow_download_does_not_hang(db: Path) -> None:
    async with serve_web(WebSettings(port=0), db, timeframes={"1s": 1_000}) as server:
        client = httpx.AsyncClient(base_url=server.url, timeout=60)
        stream = client.stream("GET", QUERY)
        response = await stream.__aenter__()
        assert response.status_code == 200
        # The client reads nothing more: the server's socket buffer and the chunk queue
        # fill, and the producer waits. Now the daemon stops the page server.
    # serve_web returned: the server thread ended, and with it every export producer.
    assert not [t for t in threading.enumerate() if t.name == "pairwatch-web"]
    assert await asyncio.to_thread(export_route.wait_idle, 30)  # the producer ended too
    await stream.__aexit__(None, None, None)
    await client.aclose()
