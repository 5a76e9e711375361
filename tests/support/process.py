"""A ``pairwatch run`` subprocess whose log lines can be awaited, and database reads."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from pathlib import Path

from support.secrets import check_output

STARTED: list[asyncio.subprocess.Process] = []
"""Every daemon process started, so a failing test's are killed (``kill_leftovers``)."""


def kill_leftovers() -> None:
    """Kill the daemons a test started and did not stop (it failed half way)."""
    while STARTED:
        process = STARTED.pop()
        if process.returncode is None:  # (the test's loop is closed: signal the pid itself)
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)


class Daemon:
    """A ``pairwatch run`` subprocess whose log lines can be awaited."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.lines: list[str] = []
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pairwatch", "run", "--config", str(self.config),
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        STARTED.append(self.process)
        await self.wait_for_line("connected to ")

    async def wait_for_line(self, text: str, timeout: float = 30.0) -> str:  # noqa: ASYNC109
        assert self.process is not None
        assert self.process.stderr is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.process.stderr.readline()
                if not raw:
                    raise AssertionError(f"daemon exited before {text!r}:\n" + "".join(self.lines))
                line = raw.decode()
                self.lines.append(line)
                check_output(line, "pairwatch run stderr")
                if text in line:
                    return line

    async def wait_for_text(self, text: str, timeout: float = 30.0) -> str:  # noqa: ASYNC109
        """Return the first line with ``text``, among those read so far or the next ones."""
        for line in self.lines:
            if text in line:
                return line
        return await self.wait_for_line(text, timeout)

    async def terminate(self) -> tuple[int, str]:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        stopped = await self.wait_for_line("stopped: ")
        code = await asyncio.wait_for(self.process.wait(), 30)
        return code, stopped


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()
