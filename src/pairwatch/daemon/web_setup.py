"""The daemon's web page: served by a process of its own, started, watched and stopped here.

``WebProcess`` runs ``python -m pairwatch.web.child`` (why a process: that module's
docstring), sends it its settings on stdin, answers its questions (/healthz, /metrics) on
the daemon's loop through ``answers.Answers``, and pushes the feed-health strip once a
second. A page process that dies is started again (1 s, 2 s, … 30 s apart) on the same
port; the daemon runs on without its page meanwhile. The daemon does not wait for the
page at start-up (its imports take seconds); ``WebProcess.ready`` is set once it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from pairwatch.errors import PairwatchError
from pairwatch.web.child import ChildConfig, encode

if TYPE_CHECKING:
    from pairwatch.daemon.service import Daemon
    from pairwatch.web.answers import Answers

logger = logging.getLogger(__name__)

FEED_PUSH_S = 1.0
"""How often the feed-health strip is pushed to the page process."""
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Waits before starting a dead page process again (the last one repeats)."""
STOP_TIMEOUT_S = 2.0
"""How long a stopping page process may take before it is terminated (it keeps no state;
one still importing at start-up reads its closed stdin only once it listens)."""
PIPE_LIMIT = 1 << 20
"""Longest line read from the page process (its questions are tiny)."""
DROPPED_ENV = ("PAIRWATCH_", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_")
"""Environment left out of the page process: its settings come on the pipe, it needs no
secret but the page's own, and only the daemon talks to systemd."""


def child_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The page process's environment: the daemon's, without pairwatch's settings and
    secrets (the Telegram token, the MQTT password) and systemd's notify variables."""
    return {k: v for k, v in environ.items() if not k.startswith(DROPPED_ENV)}


class WebProcess:
    """The page process of a running daemon: where it listens, and its lifecycle."""

    def __init__(
        self,
        config: ChildConfig,
        answers: Answers,
        *,
        command: tuple[str, ...] = (sys.executable, "-m", "pairwatch.web.child"),
    ) -> None:
        from pairwatch.web.server import WebServer

        self.config = config
        self.server = WebServer(config.web.host, config.web.port, config.web.prefix)
        self._answers = answers
        self._command = command
        self.ready = asyncio.Event()
        """Set while a page process listens."""
        self.pid: int | None = None
        """The pid of the page process last started."""
        self.starts = 0
        """How many page processes were started."""
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return self.server.url

    async def wait_ready(self, starts: int = 1) -> None:
        """Wait until the ``starts``-th page process (or a later one) listens."""
        while not (self.ready.is_set() and self.starts >= starts):
            await self._changed.wait()

    def _change(self, ready: bool) -> None:
        if ready:
            self.ready.set()
        else:
            self.ready.clear()
        self._changed.set()
        self._changed = asyncio.Event()

    def start(self) -> None:
        """Start the page process and keep it running until ``stop``."""
        self._task = asyncio.create_task(self._supervise(), name="web-page-process")

    async def stop(self) -> None:
        """Stop the page process: close its stdin (it exits on that), then terminate or kill
        it if it lingers. Safe at any point, also while it is being started."""
        self._stopping.set()
        task = self._task
        if task is not None:
            task.cancel()  # its ``finally`` ends the process
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for pending in list(self._pending):
            pending.cancel()

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                await self._run_once()
            except Exception:
                logger.exception("web: the page process failed")
            if self._stopping.is_set():
                return
            # A process that served for a while is started again after the shortest wait.
            failures = 1 if time.monotonic() - started > 60 else failures + 1
            wait = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S)) - 1]
            logger.warning("web: the page process is down; starting it again in %.0f s", wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)

    async def _run_once(self) -> None:
        process = await asyncio.create_subprocess_exec(
            *self._command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=child_env(os.environ),
            limit=PIPE_LIMIT,
        )
        self.starts += 1
        self.pid = process.pid
        assert process.stdin is not None
        assert process.stdout is not None
        pusher: asyncio.Task[None] | None = None
        try:
            process.stdin.write(encode({"config": self.config.to_json()}))
            await process.stdin.drain()
            first = await process.stdout.readline()
            if not first:
                logger.error("web: the page process ended at start (exit %s)", await process.wait())
                return
            hello = json.loads(first)
            if "ready" not in hello:
                logger.error("%s", hello.get("failed", f"web: the page process said {hello!r}"))
                await process.wait()
                return
            self._change(ready=True)
            logger.info(
                "web page at %s (%s; /healthz, /metrics; process %d)",
                self.url,
                "login required" if self.config.web.password else "no login",
                self.pid,
            )
            pusher = asyncio.create_task(self._push_feed(process.stdin))
            async for line in process.stdout:
                self._spawn(self._answer(process.stdin, line))
        except (ConnectionError, ValueError) as exc:
            logger.error("web: lost the page process's pipe: %s", exc)
        finally:
            self._change(ready=False)
            if pusher is not None:
                pusher.cancel()
            if process.returncode is None:
                await _end(process)
            if self._stopping.is_set():
                logger.info("web page stopped (exit %s)", process.returncode)
            else:
                logger.error("web: the page process ended (exit %s)", process.returncode)

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _answer(self, stdin: asyncio.StreamWriter, line: bytes) -> None:
        number = None
        try:
            question = json.loads(line)
            number = int(question["id"])
            reply: dict[str, Any] = {"id": number, "answer": await self._answers(question["ask"])}
        except Exception as exc:  # a question the daemon cannot answer: say why
            logger.error("web: cannot answer the page process (%s): %.200r", exc, line)
            if number is None:
                return
            reply = {"id": number, "error": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(ConnectionError):
            stdin.write(encode(reply))
            await stdin.drain()

    async def _push_feed(self, stdin: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                stdin.write(encode(await self._answers("feed")))
                await stdin.drain()
                await asyncio.sleep(FEED_PUSH_S)


async def _end(process: asyncio.subprocess.Process) -> None:
    """Close ``process``'s stdin (it exits on that), then terminate or kill it."""
    if process.stdin is not None:
        process.stdin.close()
    for signal_it in (None, process.terminate, process.kill):
        if signal_it is not None:
            with contextlib.suppress(ProcessLookupError):
                signal_it()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            return


def child_config(daemon: Daemon) -> ChildConfig:
    """The page process's settings, with a free port chosen now for ``web.port = 0``."""
    from pairwatch.web.server import check_port, free_port

    web = daemon.settings.web
    if web.port == 0:
        web = web.model_copy(update={"port": free_port(web.host)})
    else:
        try:
            check_port(web.host, web.port)
        except OSError as exc:
            raise PairwatchError(
                f"web: cannot listen on {web.host}:{web.port}: {exc.strerror}"
            ) from exc
    return ChildConfig(
        web=web,
        db_path=daemon.settings.db_path,
        timeframes=dict(daemon.settings.bars.timeframe_lengths),
        cookie_secret=secrets.token_urlsafe(32),
        log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
    )


@contextlib.asynccontextmanager
async def open_web(daemon: Daemon) -> AsyncIterator[WebProcess | None]:
    """Run the page process while the context is open, unless ``web.enabled`` is false.

    Raises ``PairwatchError`` at once when the page's address cannot be listened on."""
    if not daemon.settings.web.enabled:
        yield None
        return
    from pairwatch.web.answers import Answers

    web = WebProcess(child_config(daemon), Answers(daemon))
    web.start()
    try:
        yield web
    finally:
        await web.stop()
