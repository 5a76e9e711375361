"""``pairwatch run`` as a real process talking sd_notify to a socket the test listens on.

The test plays systemd's part: it binds an abstract AF_UNIX datagram socket, starts the
daemon with ``NOTIFY_SOCKET`` and a short ``WATCHDOG_USEC``, and reads what arrives:
READY=1 once start-up is done, STATUS= lines, WATCHDOG=1 pings, RELOADING=1 then READY=1
around a SIGHUP, STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.process import Daemon

RULES = """
rules:
  - name: always
    pair: ETHUSDT/BTCUSDT
    timeframe: 1s
    window: 5
    when: hedge_ratio > -1000000     # holds on every bar with a hedge ratio
"""

STATUS = re.compile(
    r"^STATUS=trades (\d+), (\d+)/(\d+) feeds up, bars (\d+), alerts (\d+) firing, "
    r"lag p50 (\d+ ms|-)$"
)


def write_config(tmp_path: Path) -> Path:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES)
    config = tmp_path / "pairwatch.toml"
    config.write_text(
        f"""
data_dir = "{tmp_path / "data"}"
log_level = "INFO"

[feed]
source = "simulator"
symbols = ["BTCUSDT", "ETHUSDT"]

[bars]
timeframes = ["1s"]

[alerts]
rules_file = "{rules_file}"

[[pairs]]
y = "ETHUSDT"
x = "BTCUSDT"
windows = [5]
adf_lookback = 50
adf_refresh = "1h"
"""
    )
    return config


class Manager:
    """systemd's end of the notification socket."""

    def __init__(self) -> None:
        self.name = f"pairwatch-e2e-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.setblocking(False)
        self.messages: list[str] = []

    async def until(self, wanted: Callable[[str], bool], timeout: float = 30.0) -> str:  # noqa: ASYNC109
        """Read messages until one is ``wanted``; return it."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                message = (await loop.sock_recv(self.sock, 65536)).decode()
                self.messages.append(message)
                if wanted(message):
                    return message


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Manager]:
    manager = Manager()
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + manager.name)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # a ping every 0.5 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    with manager.sock:
        yield manager


async def test_ready_status_watchdog_reload_and_stopping(tmp_path: Path, manager: Manager) -> None:
    daemon = Daemon(write_config(tmp_path))
    await daemon.start()
    # Read the daemon's log while the test listens, so a full pipe never stalls its loop.
    drain = asyncio.create_task(daemon.wait_for_line("\0never\0", timeout=300))
    try:
        ready = await manager.until(lambda m: m.startswith("READY=1"))
        assert manager.messages == [ready]  # nothing before start-up finished
        first = ready.split("\n")
        assert first[0] == "READY=1"
        assert STATUS.match(first[1]), first[1]

        for _ in range(3):
            await manager.until(lambda m: m == "WATCHDOG=1")
        status = await manager.until(lambda m: m.startswith("STATUS="))
        match = STATUS.match(status)
        assert match is not None, status
        assert match.group(3) == "1"  # both symbols' streams on one connection
        assert int(match.group(2)) == 1  # and it is up
        # Trades keep arriving: a later line counts more of them.
        later = await manager.until(
            lambda m: (s := STATUS.match(m)) is not None and int(s.group(1)) > int(match.group(1))
        )
        assert STATUS.match(later)

        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)
        reloading = await manager.until(lambda m: m.startswith("RELOADING=1"))
        assert re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", reloading)
        await manager.until(lambda m: m == "READY=1")
        await manager.until(lambda m: m == "WATCHDOG=1")  # still pinging after the reload
    finally:
        drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain

    # Logged before READY=1 was sent (the log is read only now).
    await daemon.wait_for_text("running: 2 symbols")
    await daemon.wait_for_text("rules reloaded (SIGHUP): 1 rules")
    code, _ = await daemon.terminate()
    assert code == 0
    stopping = await manager.until(lambda m: m.startswith("STOPPING=1"))
    assert stopping == "STOPPING=1\nSTATUS=shutting down"
    watchdog = [i for i, m in enumerate(manager.messages) if m == "WATCHDOG=1"]
    assert len(watchdog) >= 4
    assert manager.messages.index(stopping) > watchdog[-1]
