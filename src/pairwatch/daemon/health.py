"""Health counters of the running daemon, kept in one place for /status and /metrics."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Reversible
from dataclasses import dataclass, field

import numpy as np

from pairwatch.events import Trade


class LagWindow:
    """Feed lag samples (receive time − exchange time, ms) in a bounded ring buffer.

    A plain list: one item assignment per trade is several times cheaper than numpy's.
    """

    __slots__ = ("_n", "_size", "_values")

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._values = [0] * size
        self._n = 0

    def add(self, lag_ms: int) -> None:
        """Record one lag sample."""
        self._values[self._n % self._size] = lag_ms
        self._n += 1

    def percentiles(self) -> tuple[float, float, float]:
        """Return (p50, p99, max) of the samples in the window; NaNs when empty."""
        n = min(self._n, self._size)
        if n == 0:
            return (float("nan"),) * 3
        window = np.array(self._values[:n], dtype=np.int64)
        p50, p99 = np.percentile(window, [50, 99])
        return float(p50), float(p99), float(window.max())


@dataclass(slots=True)
class Health:
    """Counters of every stage; plain attributes so the hot path pays one increment."""

    started_at: float = field(default_factory=time.time)
    frames: int = 0
    """Frames received from the feed (any kind)."""
    accepted: int = 0
    """Trades that passed validation and dedup."""
    rejected: Counter[str] = field(default_factory=Counter)
    """Rejected frames and trades by reason (malformed_json, duplicate, late, …)."""
    connects: int = 0
    reconnects: int = 0
    connections_open: int = 0
    gaps: int = 0
    missed_ids: int = 0
    bars_closed: int = 0
    gap_times: dict[str, deque[int]] = field(default_factory=dict)
    """Per symbol: when its recent gaps were detected (epoch ms, the last 1,000)."""
    last_trade: dict[str, Trade] = field(default_factory=dict)
    """Per symbol: its last accepted trade (receive and exchange times, price)."""
    lag: LagWindow = field(default_factory=LagWindow)
    loop_lag: LagWindow = field(default_factory=lambda: LagWindow(1_200))
    """The event loop's lag (µs), the last minute (``daemon/loop_monitor.py``)."""
    queue_depths: dict[str, Callable[[], int]] = field(default_factory=dict)
    """Named callables returning the current depth of each queue."""
    stages: dict[str, Callable[[], Mapping[str, int]]] = field(default_factory=dict)
    """Named callables returning a later stage's own counters (e.g. ``analytics``)."""

    def snapshot(self) -> dict[str, object]:
        """Return a JSON-ready view of every counter."""
        p50, p99, lag_max = self.lag.percentiles()
        return {
            "uptime_s": round(time.time() - self.started_at, 3),
            "frames": self.frames,
            "accepted": self.accepted,
            "rejected": dict(self.rejected),
            "connects": self.connects,
            "reconnects": self.reconnects,
            "connections_open": self.connections_open,
            "gaps": self.gaps,
            "missed_ids": self.missed_ids,
            "bars_closed": self.bars_closed,
            "lag_ms": {"p50": p50, "p99": p99, "max": lag_max},
            "last_trade": {
                symbol: {"ts_event": t.ts_event, "ts_recv": t.ts_recv, "price": t.price}
                for symbol, t in self.last_trade.items()
            },
            "queues": {name: depth() for name, depth in self.queue_depths.items()},
            **{name: dict(counters()) for name, counters in self.stages.items()},
        }


def health_values(
    health: Health, symbols: Iterable[str], now: int, since: int
) -> dict[str, dict[str, float]]:
    """Return each symbol's health metrics at ``now`` (gaps counted from ``since``).

    A symbol without a trade since the daemon started has none (no data).
    """
    out: dict[str, dict[str, float]] = {}
    for symbol in symbols:
        last = health.last_trade.get(symbol)
        if last is None:
            out[symbol] = {}
            continue
        out[symbol] = {
            "feed_lag_ms": float(last.ts_recv - last.ts_event),
            "seconds_since_trade": max(now - last.ts_recv, 0) / 1000,
            "gaps": float(_count_between(health.gap_times.get(symbol, ()), since, now)),
        }
    return out


def _count_between(times: Reversible[int], since: int, until: int) -> int:
    """Count the times in [since, until), reading a time-ordered deque from its newest end."""
    count = 0
    for t in reversed(times):
        if t < since:
            break
        if t < until:
            count += 1
    return count
