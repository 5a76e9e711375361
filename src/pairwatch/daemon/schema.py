"""The SQLite schema: DDL and migration steps, and the catalogue of its tables.

``MIGRATIONS[n]`` takes a database from ``PRAGMA user_version = n`` to ``n + 1``.
Steps are only ever appended: a released step is never edited, so every database
reaches the same shape whatever version it started from. Column names are a
contract with users (``docs/schema.md``): add columns freely, rename none.

The statements that write rows live next to the tables they fill, with the pure
functions that turn events into their parameters: ``feed_rows`` (bars, ticks, gaps,
symbol state, feed stats), ``metrics_schema`` (the metrics tables) and ``retention``.
"""

from __future__ import annotations

from typing import Final

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
    # the primary key per symbol instead (see retention.PURGE_BARS).
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

# Frozen: the metric columns as of version 2, spelled out. Metrics registered later are
# added by ``store.add_metric_columns`` on open, never by a migration step.
_V2: Final[tuple[str, ...]] = (
    """
    CREATE TABLE analytics (
        y TEXT NOT NULL,
        x TEXT NOT NULL,
        timeframe TEXT NOT NULL,
        window INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        hedge_ratio REAL,
        intercept REAL,
        spread REAL,
        spread_std REAL,
        zscore REAL,
        correlation REAL,
        price_correlation REAL,
        half_life REAL,
        kalman_beta REAL,
        kalman_alpha REAL,
        kalman_spread REAL,
        kalman_zscore REAL,
        max_abs_zscore REAL,
        adf_stat REAL,
        adf_pvalue REAL,
        adf_lag REAL,
        coint_pvalue REAL,
        adf_at INTEGER,
        thin INTEGER NOT NULL DEFAULT 0,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (y, x, timeframe, window, ts)
    ) WITHOUT ROWID
    """,
    # No other index: reads are per series over a time range, and retention deletes one
    # primary-key range per series (see retention), so a ts index would only slow writes.
    """
    CREATE TABLE symbol_analytics (
        symbol TEXT NOT NULL,
        timeframe TEXT NOT NULL,
        window INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        log_return REAL,
        volatility REAL,
        vwap REAL,
        volume_zscore REAL,
        trades_zscore REAL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (symbol, timeframe, window, ts)
    ) WITHOUT ROWID
    """,
)

_V3: Final[tuple[str, ...]] = (
    # The Kalman filter's state after the last bar it took, per pair series: the rolling
    # metrics are rebuilt from stored bars at start-up, but the filter remembers every bar
    # it ever saw, so it is saved (once a second, at checkpoints) and restored instead.
    """
    CREATE TABLE kalman_state (
        y TEXT NOT NULL,
        x TEXT NOT NULL,
        timeframe TEXT NOT NULL,
        window INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        beta REAL NOT NULL,
        alpha REAL NOT NULL,
        p00 REAL NOT NULL,
        p01 REAL NOT NULL,
        p11 REAL NOT NULL,
        bars INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (y, x, timeframe, window)
    ) WITHOUT ROWID
    """,
)

_V4: Final[tuple[str, ...]] = (
    # Alerts (docs/rules.md): the lifecycle state of every rule × target, every transition,
    # the notifications waiting for delivery, and silences. An event, its outbox rows and
    # its alert's state are written in one transaction, before anything is delivered.
    # Outbox ids never repeat (AUTOINCREMENT): the delivery workers read past the last id
    # they handled, and retention may delete the newest row.
    """
    CREATE TABLE alert_state (
        rule TEXT NOT NULL,
        target TEXT NOT NULL,
        timeframe TEXT,
        window INTEGER,
        phase TEXT NOT NULL CHECK (phase IN ('inactive', 'pending', 'firing')),
        since INTEGER,
        held_bars INTEGER NOT NULL,
        notified_at INTEGER,
        resolving_since INTEGER,
        last_at INTEGER,
        seen_data INTEGER NOT NULL,
        no_data_since INTEGER,
        no_data_bars INTEGER NOT NULL,
        no_data_firing INTEGER NOT NULL,
        previous TEXT,
        muted INTEGER NOT NULL DEFAULT 0,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (rule, target)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE alert_events (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        rule TEXT NOT NULL,
        target TEXT NOT NULL,
        timeframe TEXT,
        window INTEGER,
        kind TEXT NOT NULL,
        at INTEGER NOT NULL,
        severity TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL,
        threshold REAL,
        message TEXT NOT NULL,
        vals TEXT NOT NULL,
        labels TEXT NOT NULL,
        notify INTEGER NOT NULL,
        since INTEGER,
        silenced INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    )
    """,
    "CREATE INDEX alert_events_at ON alert_events (at)",
    "CREATE INDEX alert_events_rule_at ON alert_events (rule, at)",
    "CREATE INDEX alert_events_alert ON alert_events (rule, target, id)",
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL,
        notifier TEXT NOT NULL,
        route TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        delivered_at INTEGER,
        failed_at INTEGER,
        last_error TEXT,
        UNIQUE (key, notifier, route)
    )
    """,
    # What the notifiers' workers look for: only undelivered rows are in this index.
    """
    CREATE INDEX outbox_pending ON outbox (notifier, id)
    WHERE delivered_at IS NULL AND failed_at IS NULL
    """,
    "CREATE INDEX outbox_created_at ON outbox (created_at)",
    """
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY,
        rule TEXT NOT NULL,
        target TEXT,
        starts_at INTEGER NOT NULL,
        ends_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        reason TEXT,
        cancelled_at INTEGER,
        CHECK (ends_at > starts_at)
    )
    """,
    "CREATE INDEX silences_ends_at ON silences (ends_at)",
)

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1, _V2, _V3, _V4)
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

TABLES: Final = (
    "meta",
    "bars",
    "ticks",
    "gaps",
    "symbol_state",
    "feed_stats",
    "analytics",
    "symbol_analytics",
    "kalman_state",
    "alert_state",
    "alert_events",
    "outbox",
    "silences",
)
"""Every table of the current schema version."""


Row = tuple[object, ...]
"""The parameters of one row of a write statement."""
