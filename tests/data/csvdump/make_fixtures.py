"""Re-encode real Binance trades as data.binance.vision dump fixtures (see README.md here).

Run from the repository root:
    .venv/bin/python tests/data/csvdump/make_fixtures.py /path/to/shared/data/real
"""

from __future__ import annotations

import gzip
import json
import sys
import zipfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).parent
N_TRADES = 300
SPOT_SOURCE = "hftbacktest_spot_btcusdt_20240808.gz"
USDM_SOURCE = "hftbacktest_usdm_btcusdt_20240808.gz"
# Not in the trade stream: aggregate ids are numbered on from an arbitrary base.
AGG_ID_BASE = {"spot": 3_100_000_000, "usdm": 2_300_000_000}
USDM_TRADES_HEADER = "id,price,qty,quote_qty,time,is_buyer_maker"
USDM_AGG_HEADER = (
    "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
)


@dataclass(frozen=True)
class Trade:
    """One trade frame of the websocket recording."""

    trade_id: int
    price: Decimal
    qty: Decimal
    time_ms: int
    buyer_is_maker: bool
    recv_ns: int


def load_trades(path: Path, n: int) -> list[Trade]:
    """Return the first ``n`` trade frames of a ``<ts_ns> <json>`` recording."""
    trades: list[Trade] = []
    with gzip.open(path, "rt") as lines:
        for line in lines:
            recv, _, payload = line.partition(" ")
            data = json.loads(payload).get("data", {})
            if data.get("e") != "trade" or data.get("X", "MARKET") != "MARKET":
                continue
            trades.append(
                Trade(
                    data["t"],
                    Decimal(data["p"]),
                    Decimal(data["q"]),
                    data["T"],
                    data["m"],
                    int(recv),
                )
            )
            if len(trades) == n:
                break
    return trades


def aggregate(trades: list[Trade]) -> list[list[Trade]]:
    """Group consecutive trades of one time, price and side, as Binance's aggTrades do."""
    groups: list[list[Trade]] = []
    for trade in trades:
        last = groups[-1][-1] if groups else None
        if last and (last.time_ms, last.price, last.buyer_is_maker) == (
            trade.time_ms,
            trade.price,
            trade.buyer_is_maker,
        ):
            groups[-1].append(trade)
        else:
            groups.append([trade])
    return groups


def spot_time(trade: Trade, micros: bool) -> int:
    """Return the trade time in ms, or in µs with sub-ms digits from the receive time."""
    return trade.time_ms * 1000 + (trade.recv_ns // 1000) % 1000 if micros else trade.time_ms


def spot_rows(trades: list[Trade], *, agg: bool, micros: bool) -> list[str]:
    """Encode trades in the spot layouts: 8 decimals, True/False, no header."""
    if not agg:
        return [
            f"{t.trade_id},{t.price:.8f},{t.qty:.8f},{t.price * t.qty:.8f},"
            f"{spot_time(t, micros)},{t.buyer_is_maker},True"
            for t in trades
        ]
    rows = []
    for agg_id, group in enumerate(aggregate(trades), AGG_ID_BASE["spot"]):
        head = group[0]
        qty = sum((t.qty for t in group), Decimal(0))
        rows.append(
            f"{agg_id},{head.price:.8f},{qty:.8f},{head.trade_id},{group[-1].trade_id},"
            f"{spot_time(head, micros)},{head.buyer_is_maker},True"
        )
    return rows


def usdm_rows(trades: list[Trade], *, agg: bool) -> list[str]:
    """Encode trades in the USD-M layouts: shortest decimals, true/false."""

    def num(value: Decimal) -> str:
        return repr(float(value))

    if not agg:
        return [
            f"{t.trade_id},{num(t.price)},{num(t.qty)},{(t.price * t.qty).normalize():f},"
            f"{t.time_ms},{str(t.buyer_is_maker).lower()}"
            for t in trades
        ]
    rows = []
    for agg_id, group in enumerate(aggregate(trades), AGG_ID_BASE["usdm"]):
        head = group[0]
        qty = sum((t.qty for t in group), Decimal(0))
        rows.append(
            f"{agg_id},{num(head.price)},{num(qty)},{head.trade_id},{group[-1].trade_id},"
            f"{head.time_ms},{str(head.buyer_is_maker).lower()}"
        )
    return rows


def write(path: Path, header: str | None, rows: list[str], *, zipped: bool) -> None:
    """Write a dump as plain CSV or as a zip holding one CSV of the same stem."""
    text = "".join(f"{line}\n" for line in ([header] if header else []) + rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if zipped:
        # A fixed member date keeps the bytes the same from run to run.
        member = zipfile.ZipInfo(path.with_suffix(".csv").name, date_time=(2024, 8, 9, 0, 0, 0))
        member.compress_type = zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(member, text)
    else:
        path.write_text(text)


def main(source_dir: Path) -> None:
    """Write every fixture."""
    spot = load_trades(source_dir / SPOT_SOURCE, N_TRADES)
    usdm = load_trades(source_dir / USDM_SOURCE, N_TRADES)
    for kind, agg in (("trades", False), ("aggTrades", True)):
        name = f"BTCUSDT-{kind}-2024-08-08"
        write(
            HERE / "spot" / f"{name}.csv",
            None,
            spot_rows(spot, agg=agg, micros=False),
            zipped=False,
        )
        write(
            HERE / "spot" / f"{name}.zip", None, spot_rows(spot, agg=agg, micros=False), zipped=True
        )
        write(
            HERE / "spot_us" / f"{name}.zip",
            None,
            spot_rows(spot, agg=agg, micros=True),
            zipped=True,
        )
        header = USDM_AGG_HEADER if agg else USDM_TRADES_HEADER
        write(HERE / "usdm" / f"{name}.csv", header, usdm_rows(usdm, agg=agg), zipped=False)
        write(HERE / "usdm" / f"{name}.zip", header, usdm_rows(usdm, agg=agg), zipped=True)
        write(HERE / "usdm_noheader" / f"{name}.csv", None, usdm_rows(usdm, agg=agg), zipped=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
