"""Encode synthetic trades as Binance combined-stream text frames, byte-compatible.

Key order and number formats follow what Binance sends (checked against the recorded
frames in ``tests/data``)::

    spot  trade    {"e","E","s","t","p","q","T","m","M"}       prices/qtys with 8 decimals
    usdm  trade    {"e","E","T","s","t","p","q","X","m"}       symbol precision
    spot  aggTrade {"e","E","s","a","p","q","f","l","T","m","M"}
    usdm  aggTrade {"e","E","a","s","p","q","f","l","T","m"}

Spot event time ``E`` is ``T + 1`` (the usual lag in the spot recordings); USD-M sends
``E == T``. Frames are compact JSON (no spaces), built with ``%`` templates per symbol.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pairwatch.daemon.sources.synthetic import SymbolSpec, TradeBlock

logger = logging.getLogger(__name__)

Market = Literal["spot", "usdm"]
StreamKind = Literal["trade", "aggTrade"]
STREAM_KINDS: tuple[StreamKind, ...] = ("trade", "aggTrade")
SHUTDOWN_STREAM = "!serverShutdown"


def stream_name(symbol: str, kind: str) -> str:
    """Return the combined-stream name of a symbol's stream, e.g. ``btcusdt@trade``."""
    return f"{symbol.lower()}@{kind}"


def server_shutdown_frame(now_ms: int) -> str:
    """Return the combined-stream ``serverShutdown`` notice Binance sends before closing."""
    return f'{{"stream":"{SHUTDOWN_STREAM}","data":{{"e":"serverShutdown","E":{now_ms}}}}}'


class StreamTable:
    """Map stream names to small integer codes (codes are never reused)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def code(self, name: str) -> int:
        """Return the code of a stream name, registering it on first use."""
        code = self._codes.get(name)
        if code is None:
            code = len(self.names)
            self._codes[name] = code
            self.names.append(name)
        return code

    def find(self, name: str) -> int | None:
        """Return the code of a known stream name, else None."""
        return self._codes.get(name)


@dataclass(frozen=True, slots=True)
class EncodedBlock:
    """Frames of a block in send order, with each frame's stream code and exchange id."""

    frames: list[str]
    streams: list[int]
    ids: list[int]
    event_end: list[int]
    """For each event, the index just past its last frame (to release events by time)."""


def _decimal_format(decimals: int, width: int) -> str:
    """Return a ``%`` format for an integer split (units, fraction) with zero padding."""
    return "%d." + f"%0{decimals}d" + "0" * (width - decimals)


def _templates(spec: SymbolSpec, market: Market) -> tuple[str, str]:
    lower, sym = spec.symbol.lower(), spec.symbol
    if market == "spot":
        price = _decimal_format(spec.price_decimals, 8)
        qty = _decimal_format(spec.qty_decimals, 8)
        trade = (
            f'{{"stream":"{lower}@trade","data":{{"e":"trade","E":%d,"s":"{sym}","t":%d,'
            f'"p":"{price}","q":"{qty}","T":%d,"m":%s,"M":true}}}}'
        )
        agg = (
            f'{{"stream":"{lower}@aggTrade","data":{{"e":"aggTrade","E":%d,"s":"{sym}",'
            f'"a":%d,"p":"{price}","q":"{qty}","f":%d,"l":%d,"T":%d,"m":%s,"M":true}}}}'
        )
        return trade, agg
    price = _decimal_format(spec.price_decimals, spec.price_decimals)
    qty = _decimal_format(spec.qty_decimals, spec.qty_decimals)
    trade = (
        f'{{"stream":"{lower}@trade","data":{{"e":"trade","E":%d,"T":%d,"s":"{sym}","t":%d,'
        f'"p":"{price}","q":"{qty}","X":"MARKET","m":%s}}}}'
    )
    agg = (
        f'{{"stream":"{lower}@aggTrade","data":{{"e":"aggTrade","E":%d,"a":%d,"s":"{sym}",'
        f'"p":"{price}","q":"{qty}","f":%d,"l":%d,"T":%d,"m":%s}}}}'
    )
    return trade, agg


class BlockEncoder:
    """Encode :class:`TradeBlock` s of one market into frames of the chosen stream kinds."""

    def __init__(
        self,
        specs: tuple[SymbolSpec, ...],
        market: Market,
        kinds: tuple[StreamKind, ...],
        table: StreamTable,
    ) -> None:
        if not kinds or any(k not in STREAM_KINDS for k in kinds):
            raise ValueError(f"kinds must be a non-empty subset of {STREAM_KINDS}, got {kinds}")
        self.market = market
        self.kinds = kinds
        pairs = [_templates(spec, market) for spec in specs]
        self._trade_tpl = [p[0] for p in pairs]
        self._agg_tpl = [p[1] for p in pairs]
        # Register only published streams: the table then lists exactly what can appear.
        self._trade_code = self._codes(specs, "trade", table)
        self._agg_code = self._codes(specs, "aggTrade", table)
        self._price_scale = np.array([10**s.price_decimals for s in specs], np.int64)
        self._qty_scale = np.array([10**s.qty_decimals for s in specs], np.int64)
        self._e_lag = 1 if market == "spot" else 0

    def _codes(
        self, specs: tuple[SymbolSpec, ...], kind: StreamKind, table: StreamTable
    ) -> list[int]:
        if kind not in self.kinds:
            return []
        return [table.code(stream_name(s.symbol, kind)) for s in specs]

    def encode(self, block: TradeBlock) -> EncodedBlock:
        """Return the block's frames: each event's trade frames, then its aggTrade frame."""
        trades = self._encode_trades(block) if "trade" in self.kinds else None
        aggs = self._encode_aggs(block) if "aggTrade" in self.kinds else None
        if aggs is None:
            assert trades is not None
            frames, streams, ids = trades
            counts = np.bincount(block.fill_event, minlength=len(block))
            return EncodedBlock(frames, streams, ids, np.cumsum(counts).tolist())
        if trades is None:
            frames, streams, ids = aggs
            return EncodedBlock(frames, streams, ids, list(range(1, len(frames) + 1)))
        # Interleave: an event's fills (trade stream) come before its aggTrade frame.
        fills_per_event = (block.last_id - block.first_id + 1).tolist()
        t_frames, t_streams, t_ids = trades
        a_frames, a_streams, a_ids = aggs
        frames, streams, ids, event_end = [], [], [], []
        pos = 0
        for k, count in enumerate(fills_per_event):
            end = pos + count
            frames += t_frames[pos:end]
            streams += t_streams[pos:end]
            ids += t_ids[pos:end]
            frames.append(a_frames[k])
            streams.append(a_streams[k])
            ids.append(a_ids[k])
            event_end.append(len(frames))
            pos = end
        return EncodedBlock(frames, streams, ids, event_end)

    def _encode_trades(self, block: TradeBlock) -> tuple[list[str], list[int], list[int]]:
        ev = block.fill_event
        sym = block.symbol[ev]
        p_int, p_frac = np.divmod(block.price_ticks[ev], self._price_scale[sym])
        q_int, q_frac = np.divmod(block.fill_qty_lots, self._qty_scale[sym])
        t_ms = block.time_ms[ev]
        e_ms = t_ms + self._e_lag
        maker = np.where(block.buyer_is_maker[ev], "true", "false").tolist()
        tpl = self._trade_tpl
        ids = block.fill_trade_id.tolist()
        cols = (e_ms.tolist(), t_ms.tolist(), sym.tolist(), ids, p_int.tolist(),
                p_frac.tolist(), q_int.tolist(), q_frac.tolist(), maker)  # fmt: skip
        if self.market == "spot":
            frames = [
                tpl[s] % (e, t, pi, pf, qi, qf, tt, m)
                for e, tt, s, t, pi, pf, qi, qf, m in zip(*cols, strict=True)
            ]
        else:
            frames = [
                tpl[s] % (e, tt, t, pi, pf, qi, qf, m)
                for e, tt, s, t, pi, pf, qi, qf, m in zip(*cols, strict=True)
            ]
        codes = self._trade_code
        return frames, [codes[s] for s in cols[2]], ids

    def _encode_aggs(self, block: TradeBlock) -> tuple[list[str], list[int], list[int]]:
        sym = block.symbol
        p_int, p_frac = np.divmod(block.price_ticks, self._price_scale[sym])
        q_int, q_frac = np.divmod(block.qty_lots, self._qty_scale[sym])
        t_ms = block.time_ms
        e_ms = t_ms + self._e_lag
        maker = np.where(block.buyer_is_maker, "true", "false").tolist()
        tpl = self._agg_tpl
        ids = block.agg_id.tolist()
        syms = sym.tolist()
        cols = (e_ms.tolist(), syms, ids, p_int.tolist(), p_frac.tolist(), q_int.tolist(),
                q_frac.tolist(), block.first_id.tolist(), block.last_id.tolist(), t_ms.tolist(),
                maker)  # fmt: skip
        frames = [
            tpl[s] % (e, a, pi, pf, qi, qf, f, last, tt, m)
            for e, s, a, pi, pf, qi, qf, f, last, tt, m in zip(*cols, strict=True)
        ]
        codes = self._agg_code
        return frames, [codes[s] for s in syms], ids
