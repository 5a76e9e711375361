"""Layouts of Binance public-data trade dumps and how to recognise them.

The dumps on data.binance.vision (binance-public-data README) come in four layouts,
all with the same leading column positions:

==============  ===  =========================================================================
layout          cols columns
==============  ===  =========================================================================
spot aggTrades  8    agg_trade_id, price, quantity, first_trade_id, last_trade_id,
                     transact_time, is_buyer_maker, is_best_match
USD-M aggTrades 7    agg_trade_id, price, quantity, first_trade_id, last_trade_id,
                     transact_time, is_buyer_maker
spot trades     7    id, price, qty, quote_qty, time, is_buyer_maker, is_best_match
USD-M trades    6    id, price, qty, quote_qty, time, is_buyer_maker
==============  ===  =========================================================================

Spot files have no header line; newer USD-M files start with one (older ones do not).
Spot timestamps are milliseconds until 2024-12-31 and microseconds from 2025-01-01 on;
the unit is told per file from the timestamps' magnitude (> 1e14 means µs) in the
file's head, by majority.
This module is pure: it looks at a file name and the first lines of text, never at a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from pairwatch.errors import PairwatchError


class DumpKind(StrEnum):
    """Which Binance dump a file is."""

    TRADES = "trades"
    AGG_TRADES = "aggTrades"


class TimeUnit(StrEnum):
    """The unit of a dump's timestamps."""

    MS = "ms"
    US = "us"


#: A raw timestamp above this is in microseconds (1e14 ms would be the year 5138).
US_THRESHOLD = 10**14

#: Column counts each kind comes in: spot has one more (is_best_match) than USD-M.
_COLUMN_COUNTS = {DumpKind.TRADES: (6, 7), DumpKind.AGG_TRADES: (7, 8)}

_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9]+)-(?P<kind>aggTrades|trades)-\d{4}-\d{2}(?:-\d{2})?\.(?:csv|zip)$"
)
_INTEGER = re.compile(r"^[+-]?\d+$")
_BOOLEANS = frozenset({"true", "false"})
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class DumpLayout:
    """Column positions of one dump layout."""

    kind: DumpKind
    n_columns: int

    def __post_init__(self) -> None:
        if self.n_columns not in _COLUMN_COUNTS[self.kind]:
            raise ValueError(f"a {self.kind} dump has no {self.n_columns}-column layout")

    @property
    def market(self) -> str:
        """Return ``spot`` or ``usdm`` (spot dumps carry the extra is_best_match column)."""
        return "spot" if self.n_columns == max(_COLUMN_COUNTS[self.kind]) else "usdm"

    @property
    def time_col(self) -> int:
        """Return the index of the trade time column."""
        return 5 if self.kind is DumpKind.AGG_TRADES else 4

    @property
    def maker_col(self) -> int:
        """Return the index of the is_buyer_maker column."""
        return self.time_col + 1

    @property
    def id_range_cols(self) -> tuple[int, int] | None:
        """Return the first/last trade id columns of an aggTrades dump, else None."""
        return (3, 4) if self.kind is DumpKind.AGG_TRADES else None


@dataclass(frozen=True, slots=True)
class DumpInfo:
    """What a dump file is: whose trades, which layout, header or not, which time unit."""

    symbol: str
    kind: DumpKind
    n_columns: int
    has_header: bool
    time_unit: TimeUnit

    @property
    def layout(self) -> DumpLayout:
        """Return the column layout."""
        return DumpLayout(self.kind, self.n_columns)

    @property
    def market(self) -> str:
        """Return ``spot`` or ``usdm``."""
        return self.layout.market


@dataclass(frozen=True, slots=True)
class SniffedText:
    """What the first lines of a dump tell: layout, header and time unit."""

    layout: DumpLayout
    has_header: bool
    time_unit: TimeUnit


def parse_dump_name(name: str) -> tuple[str, DumpKind] | None:
    """Return (symbol, kind) of a standard dump name like ``BTCUSDT-trades-2024-08.zip``."""
    match = _NAME.match(name)
    if match is None:
        return None
    return match.group("symbol"), DumpKind(match.group("kind"))


def sniff_text(lines: list[str], *, kind: DumpKind | None, source: str) -> SniffedText:
    """Tell the layout, header and time unit of a dump from its first lines.

    ``kind`` comes from the file name when it is standard; otherwise the header's
    column names or the column count decide, and for the ambiguous 7-column case
    (spot trades vs USD-M aggTrades) the sixth field: a boolean in spot trades, an
    integer time in aggTrades. ``source`` names the file in error messages.
    """
    lines = [line.strip() for line in lines]
    lines = [line for line in lines if line]
    if not lines:
        raise PairwatchError(f"{source}: the file is empty; cannot tell its layout")
    rows = [line.split(",") for line in lines]
    first = [field.strip() for field in rows[0]]
    first[0] = first[0].removeprefix(_BOM)
    has_header = _INTEGER.match(first[0]) is None
    data = rows[1:] if has_header else rows
    if has_header:
        names = [name.lower() for name in first]
        n_columns = len(names)
        header_kind = DumpKind.AGG_TRADES if "first_trade_id" in names else DumpKind.TRADES
        if kind is not None and kind is not header_kind:
            raise PairwatchError(
                f"{source}: the file name says {kind} but the header "
                f"({','.join(names)}) is that of {header_kind}"
            )
        kind = header_kind
    else:
        n_columns = len(first)
        kind = kind if kind is not None else _kind_from_fields(first, source)
    if n_columns not in _COLUMN_COUNTS[kind]:
        expected = " or ".join(str(n) for n in _COLUMN_COUNTS[kind])
        raise PairwatchError(
            f"{source}: a {kind} dump has {expected} columns but this one has {n_columns}"
        )
    layout = DumpLayout(kind, n_columns)
    return SniffedText(layout, has_header, _time_unit(data, layout))


def _kind_from_fields(fields: list[str], source: str) -> DumpKind:
    """Tell trades from aggTrades by a headerless row's column count and content."""
    if len(fields) == 8:
        return DumpKind.AGG_TRADES
    if len(fields) == 6:
        return DumpKind.TRADES
    if len(fields) == 7:
        sixth = fields[5]
        if sixth.lower() in _BOOLEANS:
            return DumpKind.TRADES  # spot trades: ..., time, is_buyer_maker, is_best_match
        if _INTEGER.match(sixth):
            return DumpKind.AGG_TRADES  # USD-M aggTrades: ..., transact_time, is_buyer_maker
    raise PairwatchError(
        f"{source}: cannot tell whether this is a trades or an aggTrades dump from its "
        f"{len(fields)} columns; give it its standard name, e.g. BTCUSDT-trades-2024-08-08.csv "
        "or BTCUSDT-aggTrades-2024-08-08.csv"
    )


def _time_unit(rows: list[list[str]], layout: DumpLayout) -> TimeUnit:
    """Return the unit most well-formed rows of the head agree on (ms when none is).

    A majority, not the first row: one junk line must not turn a whole file's times
    into bad ones.
    """
    votes = [0, 0]
    for fields in rows:
        if len(fields) != layout.n_columns:
            continue
        raw = fields[layout.time_col].strip()
        if _INTEGER.match(raw):
            votes[int(raw) > US_THRESHOLD] += 1
    return TimeUnit.US if votes[1] > votes[0] else TimeUnit.MS
