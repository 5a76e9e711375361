"""The page's own process (``web/child.py``) as the daemon runs it (``daemon/web_setup.py``).

A real ``python -m pairwatch.web.child`` serves the page over loopback; its questions
reach a recording ``Answers`` stand-in (the seam: what the daemon would answer), and
httpx asks /healthz and /metrics as a monitor would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from pairwatch.config.settings import Settings
from pairwatch.config.web_settings import WebSettings
from pairwatch.daemon.service import Daemon
from pairwatch.daemon.web_setup import WebProcess, child_config, child_env
from pairwatch.errors import PairwatchError
from pairwatch.web.child import NICENESS, ChildConfig, encode
from pairwatch.web.server import free_port
from support.secrets import ENV_TELEGRAM_TOKEN


class Recorded:
    """Answers like the daemon, from fixed values; records the questions."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.fed = asyncio.Event()

    async def __call__(self, question: str) -> Mapping[str, Any]:
        self.asked.append(question)
        if question == "healthz":
            return {"status": 503, "body": {"status": "failing", "problems": ["feed 0 down"]}}
        if question == "metrics":
            return {"text": "# TYPE pairwatch_x counter\npairwatch_x_total 7.0\n"}
        self.fed.set()
        return {"feed": {"connected": True, "lag_ms": 1.5, "trades_per_s": 2.0, "gaps": 0}}


def config(tmp_path: Path, **web: Any) -> ChildConfig:
    return ChildConfig(
        web=WebSettings(port=free_port("127.0.0.1"), **web),
        db_path=tmp_path / "none.sqlite3",
        timeframes={"1s": 1_000},
        cookie_secret="s" * 32,
    )


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[WebProcess, Recorded]]:
    answers = Recorded()
    web = WebProcess(config(tmp_path, prefix="/pw"), answers)  # type: ignore[arg-type]
    web.start()
    try:
        async with asyncio.timeout(60):
            await web.wait_ready()
        yield web, answers
    finally:
        await web.stop()


async def test_the_page_process_serves_the_page_and_asks_the_daemon(
    running: tuple[WebProcess, Recorded],
) -> None:
    web, answers = running
    assert web.url.endswith("/pw/")
    async with httpx.AsyncClient(base_url=web.url) as client:
        page = await client.get("")
        health = await client.get("healthz")
        metrics = await client.get("metrics")
    assert (page.status_code, "<title>pairwatch</title>" in page.text) == (200, True)
    assert health.status_code == 503
    assert health.json() == {"status": "failing", "problems": ["feed 0 down"]}
    assert health.headers["cache-control"] == "no-store"
    assert metrics.status_code == 200
    assert metrics.text == "# TYPE pairwatch_x counter\npairwatch_x_total 7.0\n"
    assert [q for q in answers.asked if q != "feed"] == ["healthz", "metrics"]
    await asyncio.wait_for(answers.fed.wait(), 10)  # the health strip is pushed


async def test_a_dead_page_process_is_started_again_where_it_listened(
    running: tuple[WebProcess, Recorded],
) -> None:
    web, _ = running
    first = web.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    async with asyncio.timeout(60):
        await web.wait_ready(starts=2)
    assert web.pid not in (None, first)
    async with httpx.AsyncClient(base_url=web.url) as client:
        assert (await client.get("metrics")).text.endswith("pairwatch_x_total 7.0\n")


async def test_stop_ends_the_page_process_and_frees_its_port(tmp_path: Path) -> None:
    web = WebProcess(config(tmp_path), Recorded())  # type: ignore[arg-type]
    web.start()
    async with asyncio.timeout(60):
        await web.wait_ready()
    pid = web.pid
    assert pid is not None
    await web.stop()
    assert not web.ready.is_set()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # exited and reaped
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(web.url)


async def test_a_stop_while_the_page_process_starts_ends_it(tmp_path: Path) -> None:
    web = WebProcess(config(tmp_path), Recorded())  # type: ignore[arg-type]
    web.start()
    async with asyncio.timeout(60):
        while web.pid is None:  # noqa: ASYNC110 (spawned, not yet listening: no event)
            await asyncio.sleep(0.005)
        assert not web.ready.is_set()
        await web.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(web.pid, 0)


async def test_the_page_process_is_nicer_ignores_ctrl_c_and_gets_no_pairwatch_secrets(
    running: tuple[WebProcess, Recorded], monkeypatch: pytest.MonkeyPatch
) -> None:
    web, _ = running
    status = proc(web.pid, "status").decode()
    ignored = int(next(line for line in status.splitlines() if line.startswith("SigIgn:"))
                  .split()[1], 16)  # fmt: skip
    assert ignored & (1 << (signal.SIGINT - 1))
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, web.pid) == min(mine + NICENESS, 19)
    environ = proc(web.pid, "environ").split(b"\0")
    assert os.environ["PAIRWATCH_WEB__PORT"] == "0"  # set by tests/conftest.py
    assert [v for v in environ if v.startswith(b"PAIRWATCH_")] == []
    monkeypatch.setenv("PAIRWATCH_TELEGRAM__TOKEN", ENV_TELEGRAM_TOKEN)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/pairwatch.service")
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    env = child_env(os.environ)
    assert {"PAIRWATCH_TELEGRAM__TOKEN", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET",
            "WATCHDOG_USEC"}.isdisjoint(env)  # fmt: skip
    assert env["PATH"] == os.environ["PATH"]


async def test_the_page_process_ends_when_the_daemons_pipe_closes(tmp_path: Path) -> None:
    # The daemon killed with SIGKILL: its end of the pipe closes, and the page goes too.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pairwatch.web.child",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(encode({"config": config(tmp_path).to_json()}))
    hello = json.loads(await asyncio.wait_for(process.stdout.readline(), 60))
    assert hello["ready"]["pid"] == process.pid
    process.stdin.close()
    assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_a_taken_port_is_said_by_the_page_process(tmp_path: Path) -> None:
    wanted = config(tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pairwatch.web.child",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None
    assert process.stdout is not None
    with socket_on(wanted.web.port):
        process.stdin.write(encode({"config": wanted.to_json()}))
        hello = json.loads(await asyncio.wait_for(process.stdout.readline(), 60))
    assert hello == {
        "failed": f"web: cannot listen on 127.0.0.1:{wanted.web.port}: Address already in use"
    }
    assert await asyncio.wait_for(process.wait(), 30) == 1


def test_a_daemon_whose_page_port_is_taken_fails_at_start_clearly(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    daemon = Daemon(Settings(data_dir=tmp_path, web={"port": port}))
    with socket_on(port), pytest.raises(PairwatchError) as error:
        child_config(daemon)
    assert str(error.value) == f"web: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_a_free_port_is_chosen_once_and_a_cookie_secret_made(tmp_path: Path) -> None:
    daemon = Daemon(Settings(data_dir=tmp_path, web={"port": 0, "password": "pw"}))
    made = child_config(daemon)
    assert made.web.port > 0
    assert len(made.cookie_secret) >= 32
    again = ChildConfig.from_json(json.loads(json.dumps(made.to_json())))
    assert again == made
    assert again.web.password is not None
    assert again.web.password.get_secret_value() == "pw"


@contextlib.contextmanager
def socket_on(port: int) -> Iterator[None]:
    """Hold ``port`` on 127.0.0.1 while the context is open."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        yield


def proc(pid: int | None, name: str) -> bytes:
    """Read ``/proc/<pid>/<name>``."""
    return Path(f"/proc/{pid}/{name}").read_bytes()
