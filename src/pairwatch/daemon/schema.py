"""The SQLite schema: DDL and migration steps, and the statements that write rows.

``MIGRATIONS[n]`` takes a database from ``PRAGMA user_version = n`` to ``n + 1``.
Steps are only ever appended: a released step is never edited, so every database
reaches the same shape whatever version it started from. Column names are a
contract with users (``docs/schema.md``): add columns freely, rename none.

The write statements live here too, next to the tables they fill, with the pure
functions that turn events into their parameters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Final

from pairwatch.analytics.resample_kernel import BarArrays
from pairwatch.events import Bar, Gap, Trade

APPLICATION_ID: Final = 0x50574154
"""``PRAGMA application_id`` of a pairwatch database (ASCII ``PWAT``)."""

_V1: Final[tuple[str, ...]] = (
    """
    CREATE TABLE meta (
        key TEXT PRIMARY KEY NOT NULL,
        value
    )
    """,
    """
    INSERT INTO meta (key, value)
    VALUES ('created_at', CAST(strftime('%s', 'now') AS INTEGER) * 1000)
    """,
    """
    CREATE TABLE bars (
        symbol TEXT NOT NULL,
        timeframe TEXT NOT NULL,
        ts INTEGER NOT NULL,
        open REAL NOT NULL,
        high REAL NOT NULL,
        low REAL NOT NULL,
        close REAL NOT NULL,
        volume REAL NOT NULL,
        quote_volume REAL NOT NULL,
        vwap REAL,
        trades INTEGER NOT NULL,
        taker_buy_volume REAL NOT NULL,
        filled INTEGER NOT NULL DEFAULT 0,
        closed INTEGER NOT NULL DEFAULT 1,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (symbol, timeframe, ts)
    ) WITHOUT ROWID
    """,
    # No (timeframe, ts) index: it made every bar insert ~1.4x slower, and retention uses
    # the primary key per symbol instead (see purge_sql).
    # Partial index: only checkpointed open bars, so finding them at start-up costs nothing.
    "CREATE INDEX bars_open ON bars (timeframe, ts) WHERE closed = 0",
    """
    CREATE TABLE ticks (
        symbol TEXT NOT NULL,
        trade_id INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        price REAL NOT NULL,
        qty REAL NOT NULL,
        buyer_is_maker INTEGER NOT NULL,
        count INTEGER NOT NULL DEFAULT 1,
        ts_recv INTEGER NOT NULL,
        PRIMARY KEY (symbol, trade_id)
    ) WITHOUT ROWID
    """,
    # ts grows almost monotonically, so this index is appended to cheaply; retention needs it.
    "CREATE INDEX ticks_ts ON ticks (ts)",
    """
    CREATE TABLE gaps (
        id INTEGER PRIMARY KEY,
        symbol TEXT NOT NULL,
        stream TEXT NOT NULL CHECK (stream IN ('trade', 'aggTrade')),
        from_id INTEGER NOT NULL,
        to_id INTEGER NOT NULL,
        detected_at INTEGER NOT NULL,
        backfilled_at INTEGER,
        UNIQUE (symbol, stream, from_id, to_id)
    )
    """,
    "CREATE INDEX gaps_symbol_detected_at ON gaps (symbol, detected_at)",
    "CREATE INDEX gaps_detected_at ON gaps (detected_at)",
    """
    CREATE TABLE symbol_state (
        market TEXT NOT NULL,
        stream TEXT NOT NULL,
        symbol TEXT NOT NULL,
        last_trade_id INTEGER NOT NULL,
        last_trade_ts INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (market, stream, symbol)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE feed_stats (
        ts INTEGER NOT NULL,
        source TEXT NOT NULL,
        received INTEGER NOT NULL,
        accepted INTEGER NOT NULL,
        rejected INTEGER NOT NULL,
        reconnects INTEGER NOT NULL,
        gaps INTEGER NOT NULL,
        lag_ms_p50 REAL,
        lag_ms_max REAL,
        detail TEXT,
        PRIMARY KEY (source, ts)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX feed_stats_ts ON feed_stats (ts)",
)

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1,)
"""``MIGRATIONS[n]``: the statements that upgrade ``user_version`` n to n + 1."""

SCHEMA_VERSION: Final = len(MIGRATIONS)
"""The ``user_version`` this code writes and reads."""

BAR_COLUMNS: Final = (
    "symbol",
    "timeframe",
    "ts",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "vwap",
    "trades",
    "taker_buy_volume",
    "filled",
    "closed",
)
"""Columns of ``bars`` that mirror ``events.Bar`` fields, in field order."""

TICK_COLUMNS: Final = (
    "symbol",
    "trade_id",
    "ts",
    "price",
    "qty",
    "buyer_is_maker",
    "count",
    "ts_recv",
)

TIME_COLUMNS: Final = {
    "bars": "ts",
    "ticks": "ts",
    "gaps": "detected_at",
    "feed_stats": "ts",
}
"""Tables that retention may purge, with the epoch-ms column compared to the cutoff."""

TABLES: Final = ("meta", "bars", "ticks", "gaps", "symbol_state", "feed_stats")
"""Every table of the current schema version."""


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

Row = tuple[object, ...]


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


BAR_SYMBOLS = """
    WITH RECURSIVE symbols(symbol) AS (
        SELECT min(symbol) FROM bars
        UNION ALL
        SELECT (SELECT min(symbol) FROM bars WHERE symbol > symbols.symbol)
        FROM symbols WHERE symbols.symbol IS NOT NULL
    )
    SELECT symbol FROM symbols WHERE symbol IS NOT NULL
"""
"""The distinct symbols of ``bars``, walking its primary key with one seek per symbol."""

PURGE_BARS = "DELETE FROM bars WHERE symbol = ? AND timeframe = ? AND ts < ?"
"""Retention of one symbol and timeframe: a primary-key range, not a table scan."""


def purge_sql(table: str) -> str:
    """Return the retention DELETE of a purgeable table (parameter: the cutoff)."""
    column = TIME_COLUMNS[table]  # a KeyError for anything but a known table
    return f"DELETE FROM {table} WHERE {column} < ?"  # noqa: S608 -- names from TIME_COLUMNS
