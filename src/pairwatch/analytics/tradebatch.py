"""A columnar batch of one symbol's trades, the unit of the fast replay path."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class TradeBatch:
    """Trades of one symbol as parallel numpy arrays, in exchange-time order."""

    symbol: str
    trade_id: npt.NDArray[np.int64]
    ts_event: npt.NDArray[np.int64]
    """Exchange trade time, epoch ms."""
    price: npt.NDArray[np.float64]
    qty: npt.NDArray[np.float64]
    buyer_is_maker: npt.NDArray[np.bool_]
    count: npt.NDArray[np.int64]
    """Underlying trades per row: 1 for trades, ``last - first + 1`` for aggTrades."""

    def __len__(self) -> int:
        return int(self.ts_event.shape[0])

    def take(self, index: slice | npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> TradeBatch:
        """Return the rows selected by ``index`` (a slice, mask or index array)."""
        return TradeBatch(
            self.symbol,
            self.trade_id[index],
            self.ts_event[index],
            self.price[index],
            self.qty[index],
            self.buyer_is_maker[index],
            self.count[index],
        )
