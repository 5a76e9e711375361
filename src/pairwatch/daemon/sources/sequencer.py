"""Per-symbol exchange-id bookkeeping: drop duplicates, detect gaps.

Binance ids (``t`` for trades, ``a`` for aggTrades) increase by one per symbol, so an id
at or below the last one seen is a duplicate (from a reconnect overlap or a resend) and
an id more than one above it means ids were missed.
"""

from __future__ import annotations

from collections.abc import Mapping

DUPLICATE = -1
"""``check`` result for an id already seen."""


class Sequencer:
    """Track the last id per symbol; ``last_ids`` seeds it after a restart."""

    __slots__ = ("last_ids", "last_ts")

    def __init__(self, last_ids: Mapping[str, tuple[int, int]] | None = None) -> None:
        self.last_ids: dict[str, int] = {}
        self.last_ts: dict[str, int] = {}
        for symbol, (last_id, last_ts) in (last_ids or {}).items():
            self.last_ids[symbol] = last_id
            self.last_ts[symbol] = last_ts

    def check(self, symbol: str, trade_id: int, ts: int) -> int:
        """Record ``trade_id``; return ``DUPLICATE``, 0, or the number of ids missed before it."""
        last = self.last_ids.get(symbol)
        if last is None:
            missed = 0
        elif trade_id <= last:
            return DUPLICATE
        else:
            missed = trade_id - last - 1
        self.last_ids[symbol] = trade_id
        self.last_ts[symbol] = ts
        return missed

    def states(self) -> list[tuple[str, int, int]]:
        """Return ``(symbol, last_id, last_ts)`` for every symbol seen."""
        return [(s, i, self.last_ts[s]) for s, i in self.last_ids.items()]
