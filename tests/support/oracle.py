"""Independent oracles: bars computed by pandas from raw trades."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd


def resample_oracle(
    trades: pd.DataFrame, length_ms: int, max_fill_ms: int = 3_600_000
) -> pd.DataFrame:
    """Closed bars per pandas from a frame of ts, price, qty, maker, count (one symbol).

    Buckets are epoch-aligned and left-closed; empty intervals carry the previous close
    with zero volume and ``filled`` set, for at most ``max_fill_ms`` after the last traded bar.
    """
    frame = pd.DataFrame(
        {
            "price": trades["price"].to_numpy(),
            "volume": trades["qty"].to_numpy(),
            "quote_volume": (trades["price"] * trades["qty"]).to_numpy(),
            "taker_buy_volume": np.where(trades["maker"], np.nan, trades["qty"]),
            "trades": trades["count"].to_numpy(),
        },
        index=pd.to_datetime(trades["ts"].to_numpy(), unit="ms"),
    )
    grouped = frame.resample(f"{length_ms}ms", origin="epoch", label="left", closed="left")
    bars = grouped["price"].ohlc()
    for column in ["volume", "quote_volume", "taker_buy_volume", "trades"]:
        bars[column] = grouped[column].sum()
    bars["filled"] = bars["open"].isna()
    close = bars["close"].ffill()
    for column in ["open", "high", "low", "close"]:
        bars[column] = bars[column].fillna(close)
    bars["vwap"] = np.where(bars["volume"] > 0, bars["quote_volume"] / bars["volume"], np.nan)
    bars["ts"] = bars.index.as_unit("ms").asi8
    filled = bars["filled"].to_numpy()
    ts = bars["ts"].to_numpy()
    traded_end = pd.Series(np.where(filled, np.nan, ts + length_ms)).ffill().to_numpy()
    keep = ~filled | (ts < traded_end + max_fill_ms)
    return bars[keep].reset_index(drop=True)


def read_frames_with_json(path: Path) -> pd.DataFrame:
    """Parse trade frames of a recording with the json module (independent of pairwatch)."""
    rows = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            start = line.find("{")
            if start < 0:
                continue
            message = json.loads(line[start:])
            data = message.get("data", {})
            if data.get("e") not in ("trade", "aggTrade") or data.get("X", "MARKET") != "MARKET":
                continue
            ident = data["t"] if data["e"] == "trade" else data["a"]
            count = 1 if data["e"] == "trade" else data["l"] - data["f"] + 1
            rows.append(
                (data["s"], ident, data["T"], float(data["p"]), float(data["q"]), data["m"], count)
            )
    return pd.DataFrame(rows, columns=["symbol", "id", "ts", "price", "qty", "maker", "count"])
