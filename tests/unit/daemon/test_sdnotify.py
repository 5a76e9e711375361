"""sd_notify against a real AF_UNIX datagram socket the test listens on (path and abstract)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pairwatch.daemon.hangup import HangupReload
from pairwatch.daemon.health import Health
from pairwatch.daemon.sdnotify import (
    NotifySocket,
    Systemd,
    Watchdog,
    status_line,
    watchdog_interval,
)


class Listener:
    """The service manager's end: a bound datagram socket and what it received."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value
        """What ``NOTIFY_SOCKET`` says for it."""
        self.senders: list[NotifySocket] = []

    def sender(self) -> NotifySocket:
        """Return a NotifySocket to this listener, closed with it."""
        notify = NotifySocket.from_environ({"NOTIFY_SOCKET": self.env_value})
        self.senders.append(notify)
        return notify

    def close(self) -> None:
        for notify in self.senders:
            notify.close()
        self.sock.close()

    async def receive(self, timeout: float = 5.0) -> str:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            data = await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        return data.decode()

    def pending(self) -> list[str]:
        """Return the messages already queued, without waiting."""
        out = []
        while True:
            try:
                out.append(self.sock.recv(65536).decode())
            except BlockingIOError:
                return out


@pytest.fixture
def path_listener() -> Iterator[Listener]:
    # AF_UNIX paths are limited to 107 bytes: a short directory, not pytest's tmp_path.
    with tempfile.TemporaryDirectory(prefix="sdn-") as directory:
        path = str(Path(directory) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.setblocking(False)
        listener = Listener(sock, path)
        yield listener
        listener.close()


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    name = f"pairwatch-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    listener = Listener(sock, "@" + name)
    yield listener
    listener.close()


async def test_messages_arrive_exactly_on_a_path_socket(path_listener: Listener) -> None:
    notify = path_listener.sender()
    assert notify.enabled
    assert notify.send("READY=1", "STATUS=trades 3")
    assert await path_listener.receive() == "READY=1\nSTATUS=trades 3"
    assert notify.send("WATCHDOG=1")
    assert await path_listener.receive() == "WATCHDOG=1"


async def test_messages_arrive_exactly_on_an_abstract_socket(abstract_listener: Listener) -> None:
    systemd = Systemd(abstract_listener.sender())
    systemd.stopping()
    assert await abstract_listener.receive() == "STOPPING=1\nSTATUS=shutting down"
    systemd.reloaded()
    assert await abstract_listener.receive() == "READY=1"


async def test_reloading_carries_the_monotonic_clock(path_listener: Listener) -> None:
    systemd = Systemd(path_listener.sender())
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    systemd.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = (await path_listener.receive()).split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


async def test_ready_sends_ready_with_a_status_line_and_refreshes_it(
    path_listener: Listener,
) -> None:
    systemd = Systemd(path_listener.sender(), status_seconds=0.01)
    counter = iter(range(100))
    tasks = systemd.ready(lambda: f"trades {next(counter)}\nsecond line", lambda: None)
    try:
        assert [t.get_name() for t in tasks] == ["systemd-status"]  # no WATCHDOG_USEC
        assert await path_listener.receive() == "READY=1\nSTATUS=trades 0 second line"
        assert await path_listener.receive() == "STATUS=trades 1 second line"
        assert await path_listener.receive() == "STATUS=trades 2 second line"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_without_notify_socket_everything_is_a_no_op() -> None:
    notify = NotifySocket.from_environ({"WATCHDOG_USEC": "1000"})
    assert not notify.enabled
    assert notify.send("READY=1") is False
    systemd = Systemd.from_environ({"WATCHDOG_USEC": "1000"})
    assert systemd.watchdog_interval == 0.0
    assert systemd.ready(lambda: "x", lambda: None) == []
    systemd.reloading()
    systemd.reloaded()
    systemd.stopping()
    systemd.close()
    assert systemd.notify.sent == 0


def test_a_relative_notify_socket_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    notify = NotifySocket.from_environ({"NOTIFY_SOCKET": "run/notify"})
    assert not notify.enabled
    assert "is not a path or an abstract socket" in caplog.text


def test_a_failed_send_never_raises_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    notify = NotifySocket.from_environ({"NOTIFY_SOCKET": "/nonexistent/pairwatch/notify"})
    with (
        contextlib.closing(notify),
        caplog.at_level(logging.WARNING, logger="pairwatch.daemon.sdnotify"),
    ):
        assert notify.send("READY=1") is False
        assert notify.send("WATCHDOG=1") is False
        assert notify.send("STOPPING=1") is False
    failures = [r for r in caplog.records if "sd_notify to" in r.getMessage()]
    assert len(failures) == 1
    assert "/nonexistent/pairwatch/notify" in failures[0].getMessage()
    assert notify.sent == 0


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, 0.0),
        ({"WATCHDOG_USEC": "2000000"}, 1.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, 0.0),
        ({"WATCHDOG_USEC": "0"}, 0.0),
        ({"WATCHDOG_USEC": "soon"}, 0.0),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_our_pid(
    environ: dict[str, str], expected: float
) -> None:
    assert watchdog_interval(environ, pid=4242) == expected


def test_watchdog_pid_defaults_to_this_process() -> None:
    ours = {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(ours) == 0.5
    assert watchdog_interval({**ours, "WATCHDOG_PID": str(os.getpid() + 1)}) == 0.0


class ScriptOver(Exception):
    """The scripted ticks are used up."""


class Script:
    """A fake clock and sleep: each sleep lasts as asked plus the next scripted lateness."""

    def __init__(self, lateness: list[float]) -> None:
        self.now = 1000.0
        self.lateness = lateness
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if not self.lateness:
            raise ScriptOver
        self.slept.append(seconds)
        self.now += seconds + self.lateness.pop(0)
        await asyncio.sleep(0)


async def test_watchdog_pings_only_when_punctual_and_healthy(path_listener: Listener) -> None:
    # Ticks:          0     1     2      3     4      5
    lateness = [0.0, 0.01, 0.80, 0.0, 0.0, 0.0]  # tick 2: the loop was blocked 0.8 s
    healthy = [True, True, False, False, True]  # asked at ticks 0, 1, 3, 4, 5 (not 2: late)
    script = Script(lateness)
    probes = iter(healthy)

    def problem() -> str | None:
        alive = next(probes)
        return None if alive else "the store writer thread has stopped"

    watchdog = Watchdog(
        path_listener.sender(),
        1.0,
        problem,
        clock=script.clock,
        sleep=script.sleep,
    )
    with pytest.raises(ScriptOver):
        await watchdog.run()
    # Each sleep is the interval again, counted from the actual (late) wake-up.
    assert script.slept == pytest.approx([1.0] * 6)
    assert watchdog.pings == 3  # ticks 0, 1, 5
    assert watchdog.skipped == 3
    assert watchdog.last_skip is None
    assert path_listener.pending() == ["WATCHDOG=1"] * 3


async def test_watchdog_late_tick_does_not_even_ask_the_probe(path_listener: Listener) -> None:
    asked: list[int] = []
    watchdog = Watchdog(path_listener.sender(), 1.0, lambda: asked.append(1))
    assert watchdog.max_lateness == 0.5
    assert watchdog.tick(0.6) is False
    assert asked == []
    assert watchdog.last_skip == "the event loop woke 0.600 s late (blocked)"
    assert watchdog.tick(0.4) is True
    assert asked == [1]
    assert path_listener.pending() == ["WATCHDOG=1"]


async def test_a_failing_probe_skips_the_ping(
    path_listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> str | None:
        raise KeyError("bug")

    watchdog = Watchdog(path_listener.sender(), 1.0, broken)
    assert watchdog.tick(0.0) is False
    assert watchdog.last_skip == "the health probe failed"
    assert "watchdog health probe failed" in caplog.text
    assert path_listener.pending() == []


async def test_watchdog_pings_arrive_on_a_short_real_interval_and_stop_when_blocked(
    abstract_listener: Listener,
) -> None:
    env = {"NOTIFY_SOCKET": abstract_listener.env_value, "WATCHDOG_USEC": "100000"}
    systemd = Systemd.from_environ(env)
    abstract_listener.senders.append(systemd.notify)
    assert systemd.watchdog_interval == 0.05
    tasks = systemd.ready(lambda: "up", lambda: None)
    try:
        assert await abstract_listener.receive() == "READY=1\nSTATUS=up"
        for _ in range(3):
            assert await abstract_listener.receive() == "WATCHDOG=1"
        watchdog = systemd.watchdog
        assert watchdog is not None
        path_pending = abstract_listener.pending()  # a ping sent since the last one read
        pings = watchdog.pings
        assert pings == 3 + len(path_pending)
        time.sleep(0.3)  # noqa: ASYNC251  # the fault: block the loop six intervals long
        assert abstract_listener.pending() == []  # nothing was sent while it was blocked
        # The next tick runs late and is skipped; the one after is punctual again.
        assert await abstract_listener.receive() == "WATCHDOG=1"
        assert watchdog.skipped >= 1
        assert watchdog.pings == pings + 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_sighup_is_announced_as_a_reload(path_listener: Listener) -> None:
    systemd = Systemd(path_listener.sender())
    done = asyncio.Event()
    done.set()  # an earlier reload finished
    reloads: list[str] = []
    hangup = HangupReload(systemd)
    assert hangup.install(lambda: reloads.append("asked"), done)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        first = await path_listener.receive()
        assert first.startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert reloads == ["asked"]
        assert not done.is_set()
        assert path_listener.pending() == []  # READY=1 waits for the reload to finish
        done.set()
        assert await path_listener.receive() == "READY=1"
    finally:
        hangup.remove()


async def test_sighup_without_a_rules_file_is_not_announced(path_listener: Listener) -> None:
    systemd = Systemd(path_listener.sender())
    asked = asyncio.Event()
    hangup = HangupReload(systemd)
    assert hangup.install(asked.set, None)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.wait_for(asked.wait(), 5)
        assert path_listener.pending() == []
    finally:
        hangup.remove()


def test_status_line_shows_the_live_counters() -> None:
    health = Health()
    health.accepted = 12345
    health.connections_open = 3
    health.bars_closed = 678
    for lag in (10, 12, 14):
        health.lag.add(lag)
    assert status_line(health, feeds=3, firing=2) == (
        "trades 12345, 3/3 feeds up, bars 678, alerts 2 firing, lag p50 12 ms"
    )
    assert status_line(Health(), feeds=1, firing=0) == (
        "trades 0, 0/1 feeds up, bars 0, alerts 0 firing, lag p50 -"
    )
