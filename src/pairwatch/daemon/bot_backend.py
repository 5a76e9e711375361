"""The daemon's answers to the bot's commands (``notifiers.telegram_backend.BotBackend``).

Reads come from the daemon's memory (health counters, the latest-snapshot cache, the alert
stage) or, for charts, trade rates and the outbox, from SQLite in a worker thread; silences
are written to the store and applied to the running alert stage at once.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from pairwatch import __version__
from pairwatch.analytics.conditions import AllOf, AnyOf, Condition
from pairwatch.config.durations import format_duration
from pairwatch.config.pairs import PairSettings
from pairwatch.daemon import alert_rows, store_reads
from pairwatch.daemon.store import ReadConnection, open_store
from pairwatch.errors import StoreError
from pairwatch.events import PairSnapshot
from pairwatch.notifiers.chart import ChartData, render_chart
from pairwatch.notifiers.formatting import utc
from pairwatch.notifiers.telegram_backend import (
    AlertInfo,
    BackendError,
    BotStatus,
    FeedStatus,
    PairInfo,
    RuleInfo,
    StoreStatus,
)

if TYPE_CHECKING:
    from pairwatch.daemon.service import Daemon

_T = TypeVar("_T")

CHART_BARS = 500
"""Bars a ``/chart`` shows (the latest)."""
RATE_WINDOW_MS = 300_000
"""``/status`` trade rates count the trades of the bars of the last five minutes."""
_MIN_RATE_SPAN_MS = 1000
"""A rate is never taken over less than a second (no spike just after a start)."""


def describe(condition: Condition) -> str:
    """Return a condition as written in a rules file (``all(...)`` for lists)."""
    if isinstance(condition, AllOf | AnyOf):
        word = "all" if isinstance(condition, AllOf) else "any"
        return f"{word}({', '.join(describe(p) for p in condition.parts)})"
    return str(condition)


class DaemonBackend:
    """``BotBackend`` over a running ``Daemon``."""

    def __init__(self, daemon: Daemon, clock: Callable[[], int]) -> None:
        self._daemon = daemon
        self._clock = clock
        self._reader = ReadConnection(daemon.settings.db_path)
        self._charts: ProcessPoolExecutor | None = None
        """Renders charts in a process: matplotlib holds the GIL for ~0.2 s per chart."""
        self.closing = False
        """Set at shutdown: commands that need the store are refused from then on."""

    def close(self) -> None:
        """Close the read connection (after any read still running) and the chart process."""
        self.closing = True
        self._reader.close()
        if self._charts is not None:
            self._charts.shutdown(wait=False, cancel_futures=True)
            self._charts = None

    async def status(self) -> BotStatus:
        daemon = self._daemon
        health = daemon.health
        settings = daemon.settings
        symbols = settings.feed.symbols
        timeframe, bar_ms = settings.bars.timeframe_lengths[0]
        now = self._clock()
        run_start = int(health.started_at * 1000)

        def read(conn: sqlite3.Connection) -> tuple[dict[str, float], dict[str, int]]:
            rates = trade_rates(conn, symbols, timeframe, bar_ms, now, run_start)
            return rates, alert_rows.pending_counts(conn)

        self._open()
        try:
            per_symbol, outbox = await asyncio.to_thread(self._reader.read, read)
        except StoreError as exc:
            raise BackendError(f"the store cannot be read now ({exc})") from None
        store = await asyncio.to_thread(self._store_status, now)
        feeds = []
        for symbol in symbols:
            last = health.last_trade.get(symbol)
            feeds.append(
                FeedStatus(
                    symbol=symbol,
                    price=None if last is None else last.price,
                    last_trade_age_s=None if last is None else max(now - last.ts_recv, 0) / 1000,
                    trades_per_s=per_symbol[symbol],
                )
            )
        feed = daemon.settings.feed
        source = f"{feed.source} {feed.market} {feed.stream}"
        return BotStatus(
            version=__version__,
            uptime_s=time.time() - health.started_at,
            source=source,
            connections_open=health.connections_open,
            reconnects=health.reconnects,
            gaps=health.gaps,
            missed_ids=health.missed_ids,
            trades_per_s=math.fsum(per_symbol.values()),
            bars_closed=health.bars_closed,
            lag_ms=health.lag.percentiles(),
            feeds=feeds,
            queues={name: depth() for name, depth in health.queue_depths.items()},
            outbox=outbox,
            rejected=dict(health.rejected),
            store=store,
        )

    async def pairs(self) -> Sequence[PairInfo]:
        settings = self._daemon.settings
        every = [t for t, _ in settings.bars.timeframe_lengths]
        return [
            PairInfo(p.y, p.x, tuple(p.timeframes or every), tuple(p.windows))
            for p in settings.pairs
        ]

    async def latest(self, y: str, x: str, timeframe: str | None) -> Sequence[PairSnapshot]:
        pair, timeframe = self._pair(y, x, timeframe)
        analytics = self._daemon.analytics
        if analytics is None:
            return []
        return [
            snapshot
            for window in pair.windows
            if (snapshot := analytics.latest.get((f"{pair.y}/{pair.x}", timeframe, window)))
        ]

    async def chart(self, y: str, x: str, timeframe: str | None, window: int | None) -> bytes:
        pair, timeframe = self._pair(y, x, timeframe)
        if window is None:
            window = pair.windows[0]
        elif window not in pair.windows:
            raise BackendError(
                f"{pair.y}/{pair.x} has windows {', '.join(map(str, pair.windows))}, not {window}"
            )
        db = self._daemon.settings.db_path

        def read() -> ChartData:
            conn = open_store(db, readonly=True)
            try:
                return chart_data(conn, pair.y, pair.x, timeframe, window)
            finally:
                conn.close()

        self._open()
        data = await asyncio.to_thread(read)
        if len(data.ts) == 0:
            raise BackendError(f"no analytics yet for {pair.y}/{pair.x} {timeframe} w{window}")
        if self._charts is None:
            self._charts = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._charts, render_chart, data)

    async def alerts(self) -> Sequence[AlertInfo]:
        runtime = self._daemon.alerts
        if runtime is None:
            return []
        stage = runtime.stage
        rules = {r.name: r for r in stage.engine.rules}
        now = self._clock()
        out = []
        for (name, target), state in stage.engine.states.items():
            if state.phase == "inactive":
                continue
            rule = rules[name]
            main = rule.primary
            value = math.nan
            analytics = self._daemon.analytics
            if analytics is not None and rule.timeframe is not None and rule.window is not None:
                key = (target, rule.timeframe, rule.window)
                latest = analytics.latest if rule.kind == "pair" else analytics.latest_symbols
                snap = latest.get(key)
                if snap is not None and main.metric in snap.metrics:
                    value = main.value(snap.metrics)
            out.append(
                AlertInfo(
                    rule=name,
                    target=target,
                    timeframe=rule.timeframe,
                    window=rule.window,
                    phase=state.phase,
                    since=state.since,
                    severity=rule.severity,
                    metric=main.metric,
                    value=value,
                    threshold=main.threshold,
                    muted=stage.silencer.covers(name, target, now),
                )
            )
        return out

    async def rules(self) -> Sequence[RuleInfo]:
        runtime = self._daemon.alerts
        if runtime is None:
            return []
        stage = runtime.stage
        now = self._clock()
        firing: dict[str, int] = {}
        for (name, _), state in stage.engine.states.items():
            if state.phase == "firing":
                firing[name] = firing.get(name, 0) + 1
        out = []
        for rule in stage.engine.rules:
            ends = [
                s.ends_at
                for s in stage.silencer.silences
                if s.rule in ("*", rule.name) and s.target is None and s.starts_at <= now
            ]
            out.append(
                RuleInfo(
                    name=rule.name,
                    severity=rule.severity,
                    targets=", ".join(rule.pair or rule.symbol or ()),
                    timeframe=rule.timeframe,
                    window=rule.window,
                    when=describe(rule.when),
                    firing=firing.get(rule.name, 0),
                    muted_until=max(ends) if ends else None,
                )
            )
        return out

    async def mute(self, rule: str, duration: timedelta, by: str) -> str:
        self._open()
        stored = self._rule_name(rule)
        now = self._clock()
        end = now + int(duration.total_seconds() * 1000)
        db = self._daemon.settings.db_path
        await asyncio.to_thread(self._write, lambda c: alert_rows.add_silence(
            c, stored, None, now, end, by))  # fmt: skip
        await self._refresh()
        what = "every rule" if stored == "*" else f"rule {stored}"
        return f"muted {what} for {format_duration(duration)}, until {utc(end)} ({db.name})"

    async def unmute(self, rule: str, by: str) -> str:
        self._open()
        stored = self._rule_name(rule, check=False)
        now = self._clock()
        ended = await asyncio.to_thread(
            self._write, lambda c: alert_rows.cancel_silences(c, stored, None, now)
        )
        await self._refresh()
        if not ended:
            return f"no active silence of {rule}"
        return f"ended {len(ended)} silence(s) of {rule}"

    # -- helpers ----------------------------------------------------------------------------

    def _store_status(self, now: int) -> StoreStatus | None:
        """Return the store writer's state and the database file's size (stats the file)."""
        writer = self._daemon.writer
        if writer is None:
            return None
        settings = self._daemon.settings
        try:
            size: int | None = settings.db_path.stat().st_size
        except OSError:
            size = None
        since = writer.failing_since
        return StoreStatus(
            healthy=writer.healthy,
            failing_since=since,
            failing_for_s=None if since is None else max(now - since, 0) / 1000,
            last_error=writer.last_error,
            queued_rows=writer.queue_depth,
            size_bytes=size,
            max_size=settings.storage.max_size,
        )

    def _open(self) -> None:
        if self.closing:
            raise BackendError("pairwatch is shutting down; try again once it is back")

    def _pair(self, y: str, x: str, timeframe: str | None) -> tuple[PairSettings, str]:
        settings = self._daemon.settings
        y, x = y.upper(), x.upper()
        for pair in settings.pairs:
            if (pair.y, pair.x) == (y, x):
                every = [t for t, _ in settings.bars.timeframe_lengths]
                timeframes = list(pair.timeframes or every)
                if timeframe is None:
                    return pair, timeframes[0]
                if timeframe not in timeframes:
                    raise BackendError(
                        f"{y}/{x} is analysed on {', '.join(timeframes)}, not {timeframe}"
                    )
                return pair, timeframe
        names = ", ".join(p.name for p in settings.pairs) or "none"
        raise BackendError(f"no pair {y}/{x} (pairs: {names})")

    def _rule_name(self, rule: str, *, check: bool = True) -> str:
        if rule == "all":
            return "*"
        runtime = self._daemon.alerts
        names = [r.name for r in runtime.stage.engine.rules] if runtime is not None else []
        if check and rule not in names:
            raise BackendError(f"no rule {rule!r} (rules: {', '.join(names) or 'none'})")
        return rule

    def _write(self, action: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = open_store(self._daemon.settings.db_path)
        try:
            return action(conn)
        finally:
            conn.close()

    async def _refresh(self) -> None:
        runtime = self._daemon.alerts
        if runtime is not None:
            await runtime.refresh_silences()


def trade_rates(
    conn: sqlite3.Connection,
    symbols: Sequence[str],
    timeframe: str,
    bar_ms: int,
    now: int,
    run_start: int,
    window_ms: int = RATE_WINDOW_MS,
) -> dict[str, float]:
    """Return each symbol's trades per second over the bars of the last ``window_ms``.

    The trades are those the bars of ``timeframe`` (the shortest) counted: closed bars and
    the open one saved at the last checkpoint (up to its ``updated_at``). Unlike trade ids,
    they count every trade of an ``aggTrade`` and nothing missed in a gap. Every symbol is
    divided by the same time: from the first of those bars (of any symbol), or from
    ``run_start`` when that bar is the one open when this run began (a cold start in the
    middle of it), to the end of the last. Neither the clock's steps nor restarted counters
    matter; a symbol without bars, or bars that cover no time yet, give 0: never NaN nor
    negative.
    """
    counted: dict[str, int] = {}
    starts: list[int] = []
    ends: list[int] = []
    for symbol in symbols:
        trades, first, end = conn.execute(
            "SELECT sum(trades), min(ts), "
            "max(CASE WHEN closed THEN ts + ? ELSE min(max(updated_at, ts), ts + ?) END) "
            "FROM bars WHERE symbol = ? AND timeframe = ? AND ts >= ? AND ts < ?",
            (bar_ms, bar_ms, symbol, timeframe, now - window_ms, now),
        ).fetchone()
        if first is None:
            continue
        counted[symbol] = int(trades)
        starts.append(first)
        ends.append(end)
    rates = dict.fromkeys(symbols, 0.0)
    if not starts:
        return rates
    first = min(starts)
    start = first if first + bar_ms <= run_start else max(first, run_start)
    span = max(ends) - start
    if span <= 0:
        return rates
    seconds = max(span, _MIN_RATE_SPAN_MS) / 1000
    rates.update((symbol, trades / seconds) for symbol, trades in counted.items())
    return rates


def chart_data(
    conn: sqlite3.Connection,
    y: str,
    x: str,
    timeframe: str,
    window: int,
    bars: int = CHART_BARS,
) -> ChartData:
    """Return the latest ``bars`` bars of a pair series as chart data.

    A leg's close is NaN at a bar whose close is not stored (e.g. purged).
    """
    last = conn.execute(
        "SELECT ts FROM analytics WHERE y = ? AND x = ? AND timeframe = ? AND window = ? "
        "ORDER BY ts DESC LIMIT 1 OFFSET ?",
        (y, x, timeframe, window, bars - 1),
    ).fetchone()  # the first of the last ``bars`` rows: read only those (primary key)
    start = None if last is None else int(last[0])
    series = store_reads.load_pair_analytics(conn, y, x, timeframe, window, from_ts=start)
    ts = series["ts"][-bars:]
    spread = series["spread"][-bars:]
    zscore = series["zscore"][-bars:]
    closes = store_reads.load_aligned_closes(
        conn, y, x, timeframe, from_ts=int(ts[0]) if len(ts) else None
    )
    index = {int(t): i for i, t in enumerate(closes["ts"])}
    rows = [index.get(int(t), -1) for t in ts]
    y_close = np.array([closes["y_close"][i] if i >= 0 else math.nan for i in rows])
    x_close = np.array([closes["x_close"][i] if i >= 0 else math.nan for i in rows])
    return ChartData(
        title=f"{y}/{x} {timeframe} window {window}", y_name=y, x_name=x, ts=ts,
        y=y_close, x=x_close, spread=spread, zscore=zscore,
    )  # fmt: skip
