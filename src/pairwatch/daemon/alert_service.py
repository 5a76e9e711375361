"""The alert stage in the running daemon: start-up, the rules-file watch, silences, delivery.

``AlertRuntime`` owns the ``AlertStage`` (rules, states, events), the ``Dispatcher``
(outbox delivery, one worker per notifier) and one task that watches the rules file and
re-reads the silences ``pairwatch mute`` stores. SIGHUP asks for a reload too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from pairwatch.config.rules import RulesFile
from pairwatch.config.rules_load import load_rules
from pairwatch.config.settings import Settings
from pairwatch.daemon import alert_rows
from pairwatch.daemon.alerts import AlertStage
from pairwatch.daemon.health import Health
from pairwatch.daemon.silences import BITS
from pairwatch.daemon.store import ReadConnection
from pairwatch.daemon.writer import Writer
from pairwatch.notifiers.log import LogNotifier
from pairwatch.notifiers.outbox import Dispatcher, Notifier

logger = logging.getLogger(__name__)

WATCH_SETTLE_S = 0.1
"""After a change is seen, wait this long for the file to settle before reading it."""


class AlertRuntime:
    """Rules, silences and notification delivery of one daemon."""

    def __init__(
        self,
        settings: Settings,
        writer: Writer,
        health: Health,
        *,
        clock: Callable[[], int],
        notifiers: list[Notifier] | None = None,
    ) -> None:
        self.settings = settings
        self.path = settings.alerts.rules_file
        self._writer = writer
        self._clock = clock
        alerts = settings.alerts
        notifiers = notifiers if notifiers is not None else [LogNotifier()]
        self.dispatcher = Dispatcher(
            notifiers,
            settings.db_path,
            writer,
            retry_initial=alerts.retry_initial.total_seconds(),
            retry_max=alerts.retry_max.total_seconds(),
            clock=clock,
        )
        writer.on_outbox = self._offer  # rows committed go to the workers without a read
        self.stage = AlertStage(
            writer,
            health,
            pairs=[p.name for p in settings.pairs],
            symbols=settings.feed.symbols,
            clock=clock,
            grace_ms=int(settings.bars.grace.total_seconds() * 1000),
            admin_notify=alerts.admin_notify,
            notifiers=self.dispatcher.names,
            defaults={"telegram": [{"chat": chat} for chat in settings.telegram.chat_ids]},
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch = RulesWatch(self.path) if self.path is not None else None
        self._reload_requests: asyncio.Queue[str] | None = None
        self._reader = ReadConnection(settings.db_path)
        self.reloaded = asyncio.Event()
        """Set after every reload attempt (tests wait on it)."""

    def load(self, conn: sqlite3.Connection) -> None:
        """At start-up (in a worker): load the rules and the stored alert states.

        Raises ``ConfigError`` when the rules file is invalid: the daemon does not start.
        """
        rules = self._load() if self.path is not None else RulesFile()
        stored = alert_rows.load_alert_states(conn)
        muted_keys = [
            (s.rule, s.target, kind) for s in stored for kind, bit in BITS.items() if s.muted & bit
        ]
        muted = alert_rows.load_raising_events(conn, muted_keys)
        self.stage.install(rules, stored, muted)
        self.stage.set_silences(alert_rows.load_silences(conn, self._clock()))
        if self.path is not None:
            firing = sum(s.phase == "firing" for s in self.stage.engine.states.values())
            logger.info(
                "rules: %d from %s, %d alerts (%d firing, restored from the store)",
                len(rules.rules), self.path, len(self.stage.engine.states), firing,
            )  # fmt: skip

    def _load(self) -> RulesFile:
        assert self.path is not None
        if self._watch is not None:
            self._watch.signature = self._watch.read()  # what this load reads
        return load_rules(self.path, self.settings)

    def request_reload(self, why: str = "SIGHUP") -> None:
        """Ask for a reload of the rules file (e.g. from a SIGHUP handler on the loop)."""
        if self._reload_requests is not None:
            self._reload_requests.put_nowait(why)

    async def run(self) -> None:
        """Deliver notifications and watch the rules file and silences until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._reload_requests = asyncio.Queue()
        tasks = [asyncio.create_task(self.dispatcher.run(), name="dispatcher")]
        tasks.append(asyncio.create_task(self._reloader(), name="rules-reload"))
        tasks.append(asyncio.create_task(self._watcher(), name="rules-watch"))
        # Whatever the last run left in the outbox now; what the start-up wrote once it
        # is committed (a worker reading before the commit would wait for a wake-up).
        self.dispatcher.kick()
        self._kick_when_stored()
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(self._reader.close)  # after a read still running

    async def _reloader(self) -> None:
        assert self._reload_requests is not None
        while True:
            why = await self._reload_requests.get()
            if self.path is None:
                logger.info("reload asked (%s): no rules file configured", why)
                continue
            try:
                await self.stage.reload(self._load, why)
            finally:
                self.reloaded.set()

    async def _watcher(self) -> None:
        interval = self.settings.alerts.watch_interval.total_seconds()
        missing = False
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh_silences()
            except Exception as exc:  # a busy or failing store: try again next time
                logger.warning("reading silences failed: %s", exc)
            watch = self._watch
            if watch is None or not watch.changed():
                missing = False
                continue
            first = watch.read()
            if first is None and not missing:
                missing = True  # an editor's atomic save may be between unlink and rename
                continue
            missing = False
            # A save in progress (an editor writing in place, cp): reload only once the
            # file stayed the same for WATCH_SETTLE_S.
            await asyncio.sleep(WATCH_SETTLE_S)
            if watch.read() == first:
                self.request_reload("file changed")

    async def refresh_silences(self) -> None:
        """Read the active silences from the store and apply them now."""
        now = self._clock()
        silences = await asyncio.to_thread(self._read_silences, now)
        self.stage.set_silences(silences)

    def _read_silences(self, now: int) -> list[alert_rows.Silence]:
        return self._reader.read(lambda conn: alert_rows.load_silences(conn, now))

    def _offer(self, offer: alert_rows.OutboxOffer) -> None:
        """Hand committed outbox rows to the delivery workers (called in the writer thread)."""
        loop = self._loop
        if loop is None:
            return  # not running yet: run() makes the workers read what is committed
        with contextlib.suppress(RuntimeError):  # the loop closed: the next start delivers
            loop.call_soon_threadsafe(self.dispatcher.offer, offer)

    def _kick_when_stored(self) -> None:
        """Wake the delivery workers once what is queued now is committed."""
        loop = self._loop
        if loop is None:
            return  # not running yet: run() kicks at its start
        future: Future[None] = self._writer.flush()

        def committed(_: Future[None]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the next start delivers
                loop.call_soon_threadsafe(self.dispatcher.kick)

        future.add_done_callback(committed)


class RulesWatch:
    """Whether a rules file changed since it was last loaded (mtime, size, inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.signature = self.read()

    def read(self) -> tuple[int, int, int] | None:
        """Return the file's current signature; None when it cannot be read."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def changed(self) -> bool:
        """Return whether the signature differs from the last loaded one."""
        return self.read() != self.signature
