"""What a feed really delivered, read independently of pairwatch, and checks against the store.

Frames are parsed with the ``json`` module and a strict reading of Binance's trade payload
(prices and quantities as decimal strings, ids and times as integers): a frame that is not a
well-formed trade of a followed symbol is not a trade here, whatever the daemon made of it.
"""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from support.oracle import resample_oracle

COLUMNS = ["symbol", "id", "ts", "price", "qty", "maker", "count"]


def _positive(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value > 0 and math.isfinite(value) else None


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def parse_trade(raw: str | bytes, symbols: Iterable[str]) -> tuple[object, ...] | None:
    """Return (symbol, id, ts, price, qty, maker, 1) of a well-formed trade frame, else None."""
    if not isinstance(raw, str):
        return None
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    data = message.get("data") if isinstance(message, dict) else None
    if not isinstance(data, dict) or data.get("e") != "trade":
        return None
    symbol, ident, ts = data.get("s"), data.get("t"), data.get("T")
    price, qty = _positive(data.get("p")), _positive(data.get("q"))
    if symbol not in set(symbols) or not (_integer(ident) and _integer(ts)):
        return None
    if message.get("stream") != f"{str(symbol).lower()}@trade":
        return None
    if price is None or qty is None or not isinstance(data.get("m"), bool):
        return None
    return (symbol, ident, ts, price, qty, data["m"], 1)


def delivered_trades(frames: Sequence[str | bytes], symbols: Iterable[str]) -> pd.DataFrame:
    """Return the distinct well-formed trades among ``frames`` (first delivery of each id)."""
    wanted = list(symbols)
    rows = [row for raw in frames if (row := parse_trade(raw, wanted)) is not None]
    trades = pd.DataFrame(rows, columns=COLUMNS)
    return trades.drop_duplicates(["symbol", "id"], keep="first").reset_index(drop=True)


def missing_ranges(trades: pd.DataFrame) -> set[tuple[str, int, int]]:
    """Return (symbol, from_id, to_id) of every run of ids missing between delivered ones."""
    holes = set()
    for symbol, rows in trades.groupby("symbol"):
        ids = np.sort(rows["id"].to_numpy())
        for before, after in itertools.pairwise(ids):
            if after > before + 1:
                holes.add((str(symbol), int(before) + 1, int(after) - 1))
    return holes


def stored_gaps(db: Path) -> set[tuple[str, int, int]]:
    """Return the ``gaps`` rows as (symbol, from_id, to_id)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select symbol, from_id, to_id from gaps").fetchall()
    return {(str(s), int(lo), int(hi)) for s, lo, hi in rows}


def assert_bars_match(db: Path, trades: pd.DataFrame, timeframe: str, length_ms: int) -> int:
    """Assert every stored bar of ``timeframe`` equals pandas' bar of ``trades``; return the count.

    Empty intervals (missed trades, a reconnect) are carried bars in both, as the pipeline's
    default fill policy does; the last, still open bar is the checkpointed one.
    """
    count = 0
    with sqlite3.connect(db) as conn:
        for symbol, rows in trades.groupby("symbol"):
            bars = pd.read_sql_query(
                "select ts, open, high, low, close, volume, trades from bars "
                "where symbol = ? and timeframe = ? order by ts",
                conn,
                params=(symbol, timeframe),
            )
            expected = resample_oracle(rows.sort_values("id"), length_ms)
            assert len(bars) == len(expected), (symbol, timeframe, len(bars), len(expected))
            for column in ["ts", "open", "high", "low", "close", "trades"]:
                np.testing.assert_array_equal(bars[column], expected[column], column)
            np.testing.assert_allclose(bars["volume"], expected["volume"], rtol=1e-12)
            count += len(bars)
    return count
