"""systemd's notification protocol (sd_notify(3)), its watchdog, and the daemon's STATUS= line.

Each message is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named by
``$NOTIFY_SOCKET``: a file system path, or an abstract name written with a leading ``@``.
Without ``NOTIFY_SOCKET`` (not under systemd) every call is a no-op. Sending never raises
into the daemon and never blocks the loop (a full socket drops the message); the first
failure is logged, later ones are not.

The watchdog (sd_watchdog_enabled(3)) is on when ``$WATCHDOG_USEC`` is set and
``$WATCHDOG_PID``, if set, is our pid. A task on the event loop then sends ``WATCHDOG=1``
every ``WATCHDOG_USEC / 2``, but only while the daemon is healthy: the task measures how
late it woke up, and a late wake-up (the loop was blocked) or a failed health probe (the
store writer's thread died) skips the ping, so systemd restarts the service. A loop that
stays blocked sends nothing at all.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

from pairwatch.daemon.health import Health

logger = logging.getLogger(__name__)

STATUS_SECONDS = 2.0
"""How often the STATUS= line is refreshed."""

Problem = Callable[[], str | None]
"""Returns why the daemon is unhealthy, or None when it is healthy."""


class NotifySocket:
    """Send sd_notify messages to one socket address; ``None``: not under systemd."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._failed = False
        self.sent = 0
        """Messages handed to the socket."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> NotifySocket:
        """Return the socket ``$NOTIFY_SOCKET`` names (a no-op one when it is unset)."""
        env = os.environ if environ is None else environ
        value = env.get("NOTIFY_SOCKET", "")
        if not value:
            return cls(None)
        if value[0] == "@":
            return cls("\0" + value[1:])  # Linux abstract namespace
        if value[0] == "/":
            return cls(value)
        logger.warning("NOTIFY_SOCKET=%r is not a path or an abstract socket: ignored", value)
        return cls(None)

    @property
    def enabled(self) -> bool:
        """Return whether messages go anywhere."""
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields as one message; return whether it was sent."""
        if self.address is None:
            return False
        message = "\n".join(fields).encode("utf-8", errors="replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)  # a full receive queue drops, never blocks
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                where = self.address.replace("\0", "@")
                logger.warning(
                    "sd_notify to %s failed: %s (further failures are not logged)", where, exc
                )
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        """Close the socket (a later send opens it again)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def status_field(text: str) -> str:
    """Return ``STATUS=text`` on one line."""
    return "STATUS=" + " ".join(text.splitlines())


def watchdog_interval(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float:
    """Return the seconds between watchdog pings (``WATCHDOG_USEC / 2``); 0: no watchdog."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec:
        return 0.0
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return 0.0  # meant for another process (we were started by the service's main process)
    try:
        value = int(usec)
    except ValueError:
        value = 0
    if value <= 0:
        logger.warning("WATCHDOG_USEC=%r is not a positive integer: no watchdog pings", usec)
        return 0.0
    return value / 2 / 1_000_000


class Watchdog:
    """Send ``WATCHDOG=1`` every ``interval`` seconds while the loop is punctual and healthy.

    ``max_lateness`` (default half the interval) is how late a wake-up may be: later, the
    loop was blocked and this ping is skipped. ``clock`` and ``sleep`` are injectable.
    """

    def __init__(
        self,
        notify: NotifySocket,
        interval: float,
        problem: Problem,
        *,
        max_lateness: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not interval > 0 or not math.isfinite(interval):
            raise ValueError(f"watchdog interval must be positive seconds, got {interval!r}")
        self.interval = interval
        self.max_lateness = interval / 2 if max_lateness is None else max_lateness
        self._notify = notify
        self._problem = problem
        self._clock = clock
        self._sleep = sleep
        self.pings = 0
        """Pings sent."""
        self.skipped = 0
        """Pings skipped: the loop was late or the daemon unhealthy."""
        self.last_skip: str | None = None
        """Why the last tick skipped its ping; None once a ping went out again."""

    async def run(self) -> None:
        """Tick every ``interval`` seconds until cancelled."""
        due = self._clock() + self.interval
        while True:
            await self._sleep(max(due - self._clock(), 0.0))
            now = self._clock()
            self.tick(now - due)
            due = now + self.interval

    def tick(self, late: float) -> bool:
        """Ping unless the wake-up was ``late`` s late or a probe fails; return whether sent."""
        if late > self.max_lateness:
            reason: str | None = f"the event loop woke {late:.3f} s late (blocked)"
        else:
            try:
                reason = self._problem()
            except Exception:
                logger.exception("watchdog health probe failed")
                reason = "the health probe failed"
        if reason is None:
            if self.last_skip is not None:
                logger.warning("watchdog: healthy again, pinging systemd")
                self.last_skip = None
            if self._notify.send("WATCHDOG=1"):
                self.pings += 1
                return True
            return False
        self.skipped += 1
        if reason != self.last_skip:
            logger.error("watchdog: ping to systemd skipped: %s", reason)
        self.last_skip = reason
        return False


class Systemd:
    """The daemon's link to systemd: READY, STATUS, WATCHDOG, RELOADING and STOPPING."""

    def __init__(
        self,
        notify: NotifySocket,
        watchdog_interval: float = 0.0,
        *,
        status_seconds: float = STATUS_SECONDS,
    ) -> None:
        self.notify = notify
        self.watchdog_interval = watchdog_interval
        self.status_seconds = status_seconds
        self.watchdog: Watchdog | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Systemd:
        """Return the link ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC`` describe."""
        notify = NotifySocket.from_environ(environ)
        return cls(notify, watchdog_interval(environ) if notify.enabled else 0.0)

    def ready(self, status: Callable[[], str], problem: Problem) -> list[asyncio.Task[None]]:
        """Send READY=1 with a first STATUS=; start the status and watchdog tasks."""
        if not self.notify.enabled:
            return []
        self.notify.send("READY=1", status_field(status()))
        tasks = [asyncio.create_task(self._status_loop(status), name="systemd-status")]
        if self.watchdog_interval > 0:
            self.watchdog = Watchdog(self.notify, self.watchdog_interval, problem)
            tasks.append(asyncio.create_task(self.watchdog.run(), name="systemd-watchdog"))
            logger.info("systemd watchdog: pinging every %.1f s", self.watchdog_interval)
        return tasks

    def reloading(self) -> None:
        """Say a reload started (systemd waits for READY=1)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def reloaded(self) -> None:
        """Say the reload finished."""
        self.notify.send("READY=1")

    def stopping(self) -> None:
        """Say the shutdown started."""
        self.notify.send("STOPPING=1", "STATUS=shutting down")

    def close(self) -> None:
        """Close the socket."""
        self.notify.close()

    async def _status_loop(self, status: Callable[[], str]) -> None:
        last = ""
        failed = False
        while True:
            await asyncio.sleep(self.status_seconds)
            try:
                text = status()
            except Exception:
                if not failed:
                    logger.exception("building the systemd status line failed")
                failed = True
                continue
            if text != last:
                self.notify.send(status_field(text))
                last = text


def status_line(health: Health, feeds: int, firing: int) -> str:
    """Return the daemon's STATUS= line, e.g. ``trades 12345, 3/3 feeds up, …``."""
    p50 = health.lag.percentiles()[0]
    lag = f"{p50:.0f} ms" if math.isfinite(p50) else "-"
    return (
        f"trades {health.accepted}, {health.connections_open}/{feeds} feeds up, "
        f"bars {health.bars_closed}, alerts {firing} firing, lag p50 {lag}"
    )
