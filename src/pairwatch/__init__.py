"""pairwatch: a real-time pairs-trading monitor for Binance."""

from __future__ import annotations

__version__ = "0.1.0"
