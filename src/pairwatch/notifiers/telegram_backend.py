"""The bot's view of the daemon: a narrow, typed seam the daemon implements.

The command handlers read daemon state and change it only through ``BotBackend``; the
daemon supplies the real implementation, the tests a fake one. The views are plain frozen
dataclasses so texts can be made from them without the daemon.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from pairwatch.events import PairSnapshot


class BackendError(Exception):
    """A request the backend refuses (unknown pair, rule or timeframe…).

    Its message is shown to the user as it is (escaped), so it says what was wrong.
    """


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """One symbol's feed: its last trade and rate."""

    symbol: str
    price: float | None
    last_trade_age_s: float | None
    """Seconds since its last trade was received; None before the first."""
    trades_per_s: float


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """The SQLite store's writer: whether its writes succeed, and what waits."""

    healthy: bool
    """The writer runs and its last write succeeded."""
    failing_since: int | None
    """When the current spell of failing writes began, epoch ms; None when writes succeed."""
    failing_for_s: float | None
    """How long that spell has lasted, in seconds."""
    last_error: str | None
    """The most recent write error (kept after recovery)."""
    queued_rows: int
    """Rows waiting in memory to be written."""
    size_bytes: int | None = None
    """The database file's size; None when unknown."""
    max_size: int | None = None
    """``storage.max_size``; None: no cap."""


@dataclass(frozen=True, slots=True)
class BotStatus:
    """What ``/status`` shows."""

    version: str
    uptime_s: float
    source: str
    """Where trades come from: ``binance spot``, ``simulator``, ``replay …``."""
    connections_open: int
    reconnects: int
    gaps: int
    missed_ids: int
    trades_per_s: float
    bars_closed: int
    lag_ms: tuple[float, float, float]
    """Feed lag (receive − exchange time) p50, p99 and max; NaN when unknown."""
    feeds: Sequence[FeedStatus] = ()
    queues: Mapping[str, int] = field(default_factory=dict)
    outbox: Mapping[str, int] = field(default_factory=dict)
    """Undelivered notifications per notifier."""
    rejected: Mapping[str, int] = field(default_factory=dict)
    store: StoreStatus | None = None
    """The store writer's state; None when the daemon has none (yet)."""


@dataclass(frozen=True, slots=True)
class PairInfo:
    """A configured pair and where its analytics run."""

    y: str
    x: str
    timeframes: Sequence[str]
    windows: Sequence[int]


@dataclass(frozen=True, slots=True)
class AlertInfo:
    """An alert that is pending or firing now."""

    rule: str
    target: str
    timeframe: str | None
    window: int | None
    phase: str
    """``pending`` or ``firing``."""
    since: int | None
    """When the current pending or firing spell began, epoch ms."""
    severity: str
    metric: str
    value: float
    threshold: float
    muted: bool = False


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """A loaded rule, as ``/rules`` lists it."""

    name: str
    severity: str
    targets: str
    """The pairs or symbols it watches, as written (``ETHUSDT/BTCUSDT``, ``*``)."""
    timeframe: str | None
    window: int | None
    when: str
    """The condition, as written."""
    firing: int = 0
    muted_until: int | None = None


class BotBackend(Protocol):
    """What the bot's commands may read and change in the daemon.

    Every method may raise ``BackendError`` with a message for the user; anything else
    is reported to the user as an internal error and logged with its traceback. Slow work
    (SQLite reads, chart rendering) must run off the event loop.
    """

    async def status(self) -> BotStatus:
        """Return the daemon's health for ``/status``."""
        ...

    async def pairs(self) -> Sequence[PairInfo]:
        """Return the configured pairs."""
        ...

    async def latest(self, y: str, x: str, timeframe: str | None) -> Sequence[PairSnapshot]:
        """Return the latest snapshot of every window of the pair (``None``: default tf).

        Empty while the pair warms up; ``BackendError`` for an unknown pair or timeframe.
        """
        ...

    async def chart(self, y: str, x: str, timeframe: str | None, window: int | None) -> bytes:
        """Return a PNG of the pair's prices, spread and z-score (``None``: defaults)."""
        ...

    async def alerts(self) -> Sequence[AlertInfo]:
        """Return the alerts firing or pending now."""
        ...

    async def rules(self) -> Sequence[RuleInfo]:
        """Return the loaded rules."""
        ...

    async def mute(self, rule: str, duration: timedelta, by: str) -> str:
        """Silence ``rule`` (or every rule for ``all``) for ``duration``; return a confirmation.

        ``by`` names who asked (``telegram:@user``), for the silence's record.
        """
        ...

    async def unmute(self, rule: str, by: str) -> str:
        """End the silences of ``rule`` (or of ``all``); return a confirmation."""
        ...
