"""The write statements of the feed tables, and the pure functions that fill them.

The feed tables are ``bars``, ``ticks``, ``gaps``, ``symbol_state`` and ``feed_stats``
(DDL in ``schema``): each statement here comes with the function that turns events or
records into its parameters, one ``Row`` per row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from pairwatch.analytics.resample_kernel import BarArrays
from pairwatch.daemon.schema import BAR_COLUMNS, Row
from pairwatch.events import Bar, Gap, Trade


@dataclass(frozen=True, slots=True)
class FeedStatsRow:
    """One periodic snapshot of a source's counters (cumulative since it started)."""

    ts: int
    source: str
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    reconnects: int = 0
    gaps: int = 0
    lag_ms_p50: float | None = None
    lag_ms_max: float | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    """Anything else worth keeping; stored as a JSON object."""

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("invalid feed stats: source must not be empty")
        for name in ("received", "accepted", "rejected", "reconnects", "gaps"):
            if getattr(self, name) < 0:
                raise ValueError(f"invalid feed stats: {name} must be >= 0")


@dataclass(frozen=True, slots=True)
class SymbolState:
    """The last trade id and time seen of one symbol's stream."""

    market: str
    stream: str
    symbol: str
    last_trade_id: int
    last_trade_ts: int


_BAR_WRITE_COLUMNS = (*BAR_COLUMNS, "updated_at")
_BAR_UPDATES = ", ".join(f"{c} = excluded.{c}" for c in _BAR_WRITE_COLUMNS[3:])
UPSERT_BARS = (
    f"INSERT INTO bars ({', '.join(_BAR_WRITE_COLUMNS)}) "  # noqa: S608 -- constant names
    f"VALUES ({', '.join('?' * len(_BAR_WRITE_COLUMNS))}) "
    f"ON CONFLICT (symbol, timeframe, ts) DO UPDATE SET {_BAR_UPDATES}"
)
INSERT_TICKS = (
    "INSERT OR IGNORE INTO ticks "
    "(symbol, trade_id, ts, price, qty, buyer_is_maker, count, ts_recv) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_GAPS = (
    "INSERT OR IGNORE INTO gaps (symbol, stream, from_id, to_id, detected_at) "
    "VALUES (?, ?, ?, ?, ?)"
)
UPSERT_SYMBOL_STATE = (
    "INSERT INTO symbol_state "
    "(market, stream, symbol, last_trade_id, last_trade_ts, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (market, stream, symbol) DO UPDATE SET "
    "last_trade_id = excluded.last_trade_id, last_trade_ts = excluded.last_trade_ts, "
    "updated_at = excluded.updated_at"
)
UPSERT_FEED_STATS = (
    "INSERT OR REPLACE INTO feed_stats "
    "(ts, source, received, accepted, rejected, reconnects, gaps, lag_ms_p50, lag_ms_max, "
    "detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def bar_rows(bars: Sequence[Bar], now: int) -> list[Row]:
    """Return bars as ``UPSERT_BARS`` parameters (NaN or zero-volume vwap becomes NULL)."""
    return [
        (
            *(b.symbol, b.timeframe, b.ts, b.open, b.high, b.low, b.close, b.volume),
            b.quote_volume,
            None if b.volume == 0 or b.vwap != b.vwap else b.vwap,
            *(b.trades, b.taker_buy_volume, b.filled, b.closed, now),
        )
        for b in bars
    ]


def bar_array_rows(bars: BarArrays, now: int) -> list[Row]:
    """Return closed bars held as columns as ``UPSERT_BARS`` parameters, without ``Bar``s."""
    n = len(bars)
    vwap = [None if math.isnan(v) else v for v in bars.vwap.tolist()]  # no volume -> NULL
    return list(
        zip(
            repeat(bars.symbol, n),
            repeat(bars.timeframe, n),
            bars.ts.tolist(),
            bars.open.tolist(),
            bars.high.tolist(),
            bars.low.tolist(),
            bars.close.tolist(),
            bars.volume.tolist(),
            bars.quote_volume.tolist(),
            vwap,
            bars.trades.tolist(),
            bars.taker_buy_volume.tolist(),
            bars.filled.astype(int).tolist(),
            repeat(1, n),
            repeat(now, n),
            strict=True,
        )
    )


def tick_rows(trades: Sequence[Trade], now: int) -> list[Row]:
    """Return trades as ``INSERT_TICKS`` parameters (``ts`` is the exchange time)."""
    return [
        (t.symbol, t.trade_id, t.ts_event, t.price, t.qty, t.buyer_is_maker, t.count, t.ts_recv)
        for t in trades
    ]


def gap_rows(gaps: Sequence[Gap], now: int) -> list[Row]:
    """Return gaps as ``INSERT_GAPS`` parameters."""
    return [(g.symbol, g.stream, g.from_id, g.to_id, g.detected_at) for g in gaps]


def symbol_state_rows(states: Sequence[SymbolState], now: int) -> list[Row]:
    """Return symbol states as ``UPSERT_SYMBOL_STATE`` parameters."""
    return [(s.market, s.stream, s.symbol, s.last_trade_id, s.last_trade_ts, now) for s in states]


def feed_stats_rows(rows: Sequence[FeedStatsRow], now: int) -> list[Row]:
    """Return feed stats snapshots as ``UPSERT_FEED_STATS`` parameters."""
    return [
        (
            *(r.ts, r.source, r.received, r.accepted, r.rejected, r.reconnects, r.gaps),
            *(r.lag_ms_p50, r.lag_ms_max, _json_or_null(r.detail)),
        )
        for r in rows
    ]


def _json_or_null(detail: Mapping[str, Any]) -> str | None:
    return json.dumps(dict(detail), default=str) if detail else None
