"""Events that flow through the pipeline: one module, frozen and slotted.

They are ``msgspec.Struct`` classes rather than dataclasses: equally frozen and
slotted, but several times cheaper to create, which matters on the per-trade path.
Times are UTC epoch milliseconds.
"""

from __future__ import annotations

import msgspec


class Trade(msgspec.Struct, frozen=True):
    """One validated trade (or aggregated trade) from any source."""

    symbol: str
    """Upper-case symbol, e.g. ``BTCUSDT``."""
    trade_id: int
    """Exchange id: ``t`` for trade streams, ``a`` for aggTrade streams."""
    price: float
    qty: float
    ts_event: int
    """Exchange trade time (``T``), epoch ms."""
    ts_recv: int
    """Local receive time, epoch ms."""
    buyer_is_maker: bool
    """Binance ``m``: true when the buyer was the maker (the taker sold)."""
    count: int = 1
    """Underlying trades: 1 for a trade, ``l - f + 1`` for an aggTrade."""


class Bar(msgspec.Struct, frozen=True):
    """One OHLCV bar of a symbol and timeframe, keyed by its open time."""

    symbol: str
    timeframe: str
    """The configured label, e.g. ``1m``."""
    ts: int
    """Open time, epoch ms, aligned to the timeframe."""
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    vwap: float
    """quote_volume / volume; NaN when the bar has no volume."""
    trades: int
    taker_buy_volume: float
    filled: bool = False
    """True for an empty interval carried forward from the last close."""
    closed: bool = True
    """False for an open bar checkpointed before its end (resumed on restart)."""


class Gap(msgspec.Struct, frozen=True):
    """A run of missing exchange ids in one symbol's stream."""

    symbol: str
    from_id: int
    to_id: int
    detected_at: int
    stream: str = "trade"
    """``trade`` or ``aggTrade``: the id sequence the gap is in."""


class PairSnapshot(msgspec.Struct, frozen=True):
    """The analytics of one pair × timeframe × window at one aligned closed bar."""

    y: str
    x: str
    timeframe: str
    window: int
    ts: int
    """Open time of the aligned bar (both legs closed a bar at this ts), epoch ms."""
    metrics: dict[str, float]
    """Metric name → value (NaN while warming up or undefined); see ``docs/analytics.md``."""
    adf_at: int | None = None
    """When the riding ``adf_*`` and ``coint_pvalue`` values were computed (epoch ms)."""
    thin: bool = False
    """True when a leg had fewer trades than ``min_trades``: skipped, ``metrics`` empty."""

    @property
    def pair(self) -> str:
        """Return the pair as written in rules and topics: ``ETHUSDT/BTCUSDT``."""
        return f"{self.y}/{self.x}"


class SymbolSnapshot(msgspec.Struct, frozen=True):
    """The analytics of one symbol × timeframe × window at one closed bar."""

    symbol: str
    timeframe: str
    window: int
    ts: int
    metrics: dict[str, float]


class AlertEvent(msgspec.Struct, frozen=True):
    """One transition of one alert rule × target, with the values that caused it."""

    rule: str
    target: str
    """The pair (``ETHUSDT/BTCUSDT``) or symbol."""
    timeframe: str | None
    window: int | None
    kind: str
    """``pending``, ``firing``, ``repeat``, ``resolved``, ``no_data`` or ``data``."""
    at: int
    """Close time of the bar that caused it, epoch ms."""
    severity: str
    metric: str
    value: float
    threshold: float
    message: str
    values: dict[str, float]
    labels: dict[str, str]
    notify: bool
    """Whether it is a notification to deliver (per the rule's routes)."""
    since: int | None = None
    """When the raised spell began: for firing, repeat and resolved, when the alert started
    firing; for no_data and data, when data went missing. None for other kinds."""
    seq: int = 0
    """Told apart from an earlier event of the same alert, kind and time (a clamped clock)."""

    @property
    def key(self) -> str:
        """Return the idempotency key receivers can dedupe on."""
        key = f"{self.rule}|{self.target}|{self.timeframe}|{self.window}|{self.kind}|{self.at}"
        return f"{key}#{self.seq}" if self.seq else key
