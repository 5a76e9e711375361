"""The identity of one analysed pair series: pair × timeframe × window."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class SeriesKey:
    """One analysed series: ``y`` regressed on ``x``, on ``timeframe`` bars, over ``window``."""

    y: str
    x: str
    timeframe: str
    window: int

    @property
    def pair(self) -> str:
        """The pair as written in rules and settings: ``ETHUSDT/BTCUSDT``."""
        return f"{self.y}/{self.x}"
