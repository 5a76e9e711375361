"""Decode Binance combined-stream frames at the edge into validated ``Trade`` events.

Wire messages are decoded straight into typed msgspec structs (prices arrive as
decimal strings and are parsed to float by msgspec in non-strict mode), then
checked and turned into domain events. Every rejected frame is counted by reason;
nothing here raises on bad input.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Collection
from typing import Annotated, Final, Literal

import msgspec

from pairwatch.events import Trade

logger = logging.getLogger(__name__)

# Rejection reasons: part of the /status and metrics vocabulary, keep them stable.
MALFORMED_JSON: Final = "malformed_json"
BAD_FIELD: Final = "bad_field"
UNEXPECTED_EVENT: Final = "unexpected_event"
BAD_PRICE: Final = "bad_price"
BAD_QTY: Final = "bad_qty"
BAD_ID: Final = "bad_id"
UNKNOWN_SYMBOL: Final = "unknown_symbol"
STALE_TIMESTAMP: Final = "stale_timestamp"
NON_MARKET: Final = "non_market"
BINARY_FRAME: Final = "binary_frame"


Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
"""Exchange ids fit SQLite's and numpy's int64."""
Millis = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
"""Epoch milliseconds, within the range a float64 holds exactly."""


class TradeData(msgspec.Struct, tag_field="e", tag="trade"):
    """Payload of a ``<symbol>@trade`` stream (spot and USD-M)."""

    E: Millis
    T: Millis
    s: str
    t: Id
    p: float
    q: float
    m: bool
    X: str = "MARKET"
    """USD-M only: order type; non-MARKET prints (liquidation, ADL) are skipped."""


class AggTradeData(msgspec.Struct, tag_field="e", tag="aggTrade"):
    """Payload of a ``<symbol>@aggTrade`` stream (spot and USD-M)."""

    E: Millis
    T: Millis
    s: str
    a: Id
    p: float
    q: float
    f: Id
    l: Id  # noqa: E741 - Binance's field name
    m: bool


class ServerShutdown(msgspec.Struct, tag_field="e", tag="serverShutdown"):
    """Binance's notice that the server will close this connection soon."""

    E: int = 0


class BareShutdown(msgspec.Struct):
    """The shutdown notice outside a combined-stream envelope: ``{"e": "serverShutdown"}``."""

    e: Literal["serverShutdown"]
    E: int = 0


class Envelope(msgspec.Struct):
    """A combined-stream frame: ``{"stream": ..., "data": ...}``."""

    stream: str
    data: TradeData | AggTradeData | ServerShutdown


SERVER_SHUTDOWN: Final = "server_shutdown"
"""``decode`` result for Binance's notice that the server will close this connection soon."""


class FrameDecoder:
    """Turn raw frames into trades or rejection reasons for a set of symbols (``None``: any).

    ``max_skew_ms`` rejects trades whose exchange time is further than that from
    the local receive time (live feeds only; ``None`` disables the check, as in replay).
    """

    def __init__(self, symbols: Collection[str] | None, *, max_skew_ms: int | None = None) -> None:
        self._symbols = None if symbols is None else frozenset(symbols)
        self._max_skew_ms = max_skew_ms
        self._decoder = msgspec.json.Decoder(Envelope, strict=False)
        self._bare_shutdown = msgspec.json.Decoder(BareShutdown)

    def decode(self, raw: str | bytes, ts_recv: int) -> Trade | str:
        """Decode and validate one frame received at ``ts_recv`` (epoch ms).

        Return the trade, ``SERVER_SHUTDOWN``, or the reason the frame was rejected.
        """
        try:
            data = self._decoder.decode(raw).data
        except msgspec.ValidationError as exc:
            try:  # the notice may also come bare, outside a combined-stream envelope
                self._bare_shutdown.decode(raw)
            except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
                unexpected = str(exc).startswith("Invalid value") and str(exc).endswith("$.data.e`")
                return UNEXPECTED_EVENT if unexpected else BAD_FIELD
            return SERVER_SHUTDOWN
        except msgspec.DecodeError:
            return MALFORMED_JSON
        except (RecursionError, UnicodeDecodeError):
            # Nesting past msgspec's depth limit, or bytes that are not UTF-8 in a string.
            return MALFORMED_JSON
        if type(data) is TradeData:
            if data.X != "MARKET":
                return NON_MARKET
            trade_id, count = data.t, 1
        elif type(data) is AggTradeData:
            trade_id, count = data.a, data.l - data.f + 1
            if count < 1:
                return BAD_ID
        else:
            return SERVER_SHUTDOWN
        price, qty = data.p, data.q
        # Comparisons with NaN are false, so these also reject NaN; inf is caught explicitly.
        if not (price > 0.0 and price != math.inf):
            return BAD_PRICE
        if not (qty > 0.0 and qty != math.inf):
            return BAD_QTY
        if self._symbols is not None and data.s not in self._symbols:
            return UNKNOWN_SYMBOL
        if self._max_skew_ms is not None and abs(ts_recv - data.T) > self._max_skew_ms:
            return STALE_TIMESTAMP
        return Trade(data.s, trade_id, price, qty, data.T, ts_recv, data.m, count)


class RejectLog:
    """Log a sample of rejected frames: at most ``per_window`` per reason per window."""

    def __init__(self, *, per_window: int = 5, window_s: float = 60.0) -> None:
        self._per_window = per_window
        self._window_s = window_s
        self._window_start = 0.0
        self._logged: Counter[str] = Counter()

    def sample(self, reason: str, raw: str | bytes) -> None:
        """Log this rejected frame unless its reason already used up the window's budget."""
        now = time.monotonic()
        if now - self._window_start >= self._window_s:
            self._window_start = now
            self._logged.clear()
        if self._logged[reason] >= self._per_window:
            return
        self._logged[reason] += 1
        text = raw if isinstance(raw, str) else repr(raw[:200])
        logger.warning("rejected frame (%s): %.200s", reason, text)
