"""Parse blocks of whole CSV lines of a Binance dump into typed pyarrow columns."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pairwatch.daemon.sources.csvdump_layout import DumpKind, DumpLayout
from pairwatch.errors import PairwatchError

logger = logging.getLogger(__name__)

TRUE_VALUES = ["True", "true", "TRUE"]
FALSE_VALUES = ["False", "false", "FALSE"]

# Patterns of what pyarrow's converters accept (after trimming spaces), for the slow path
# that sorts good rows from bad ones once a block has failed to convert. Integers are
# capped at 18 digits so that the cast after the check cannot overflow int64.
_INT_PATTERN = r"^-?[0-9]{1,18}$"
_FLOAT_PATTERN = (
    r"^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:nan|inf|infinity))$"
)


@dataclass(frozen=True, slots=True)
class ParsedBlock:
    """Typed columns of one block, and how many of its rows could not be parsed."""

    trade_id: pa.Array
    price: pa.Array
    qty: pa.Array
    ts: pa.Array
    buyer_is_maker: pa.Array
    first_id: pa.Array | None
    last_id: pa.Array | None
    malformed: int


class BlockParser:
    """Parse blocks of whole lines of one dump layout (no header line in the block)."""

    def __init__(self, layout: DumpLayout, *, source: str, use_threads: bool = False) -> None:
        self._source = source
        self._names = [f"c{i}" for i in range(layout.n_columns)]
        self._use_threads = use_threads
        ints = {0: "trade_id", layout.time_col: "ts"}
        if layout.kind is DumpKind.AGG_TRADES:
            ints |= {3: "first_id", 4: "last_id"}
        self._fields = ints | {1: "price", 2: "qty", layout.maker_col: "buyer_is_maker"}
        types = {i: pa.int64() for i in ints} | {1: pa.float64(), 2: pa.float64()}
        types[layout.maker_col] = pa.bool_()
        self._types = {self._names[i]: t for i, t in types.items()}
        # Only the columns we keep are converted: quote_qty and is_best_match are skipped.
        include = [self._names[i] for i in sorted(self._fields)]
        common = {
            "include_columns": include,
            "null_values": [""],  # so "NaN" and "nan" parse as floats and fail validation
            "strings_can_be_null": True,
            "quoted_strings_can_be_null": True,
            "true_values": TRUE_VALUES,
            "false_values": FALSE_VALUES,
        }
        self._typed = pacsv.ConvertOptions(column_types=self._types, **common)
        self._as_text = pacsv.ConvertOptions(
            column_types={name: pa.string() for name in include}, **common
        )
        # Dumps never quote fields; a stray quote must not swallow the lines after it.
        self._parse = pacsv.ParseOptions(quote_char=False, invalid_row_handler=self._skip_row)
        self._skipped = 0

    def _skip_row(self, row: object) -> str:
        """Drop a row with the wrong number of fields, counting it."""
        self._skipped += 1
        return "skip"

    def parse(self, block: pa.Buffer) -> ParsedBlock:
        """Parse one block; rows that cannot be parsed are dropped and counted."""
        try:
            table = self._read(block, self._typed)
        except pa.ArrowInvalid as exc:
            # A field failed to convert. Rare in real dumps, so redo just this block
            # with text columns and sort the rows with vectorised pattern checks.
            logger.debug("block of %d bytes needs the slow path: %s", block.size, exc)
            try:
                return self._parse_as_text(block)
            except pa.ArrowInvalid as slow_exc:  # a value the patterns let through
                raise PairwatchError(f"{self._source}: cannot parse: {slow_exc}") from exc
        return self._columns(table, self._skipped)

    def _read(self, block: pa.Buffer, convert: pacsv.ConvertOptions) -> pa.Table:
        """Read a block as one pyarrow chunk per column."""
        self._skipped = 0
        read = pacsv.ReadOptions(
            column_names=self._names,
            block_size=max(block.size + 1, 1 << 10),
            use_threads=self._use_threads,
        )
        return pacsv.read_csv(
            pa.BufferReader(block),
            read_options=read,
            parse_options=self._parse,
            convert_options=convert,
        )

    def _parse_as_text(self, block: pa.Buffer) -> ParsedBlock:
        """Parse a block whose fields did not all convert, dropping the rows that did not."""
        table = self._read(block, self._as_text)
        ok = pa.array([True] * table.num_rows, pa.bool_())
        for name, target in self._types.items():
            column = pc.utf8_trim_whitespace(table.column(name))
            if target == pa.bool_():
                good = pc.is_in(column, value_set=pa.array(TRUE_VALUES + FALSE_VALUES))
            else:
                pattern = _INT_PATTERN if target == pa.int64() else _FLOAT_PATTERN
                good = pc.match_substring_regex(column, pattern)
            ok = pc.and_(ok, pc.fill_null(good, False))
        kept = table.filter(ok)
        typed = {}
        for name, target in self._types.items():
            column = pc.utf8_trim_whitespace(kept.column(name))
            if target == pa.bool_():
                typed[name] = pc.is_in(column, value_set=pa.array(TRUE_VALUES))
            else:
                typed[name] = pc.cast(column, target)
        malformed = self._skipped + table.num_rows - kept.num_rows
        return self._columns(pa.table(typed), malformed)

    def _columns(self, table: pa.Table, malformed: int) -> ParsedBlock:
        """Pick the named columns out of a typed table."""
        arrays: dict[str, pa.Array | None] = {"first_id": None, "last_id": None}
        for index, field in self._fields.items():
            column = table.column(self._names[index])
            arrays[field] = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        return ParsedBlock(
            trade_id=arrays["trade_id"],
            price=arrays["price"],
            qty=arrays["qty"],
            ts=arrays["ts"],
            buyer_is_maker=arrays["buyer_is_maker"],
            first_id=arrays["first_id"],
            last_id=arrays["last_id"],
            malformed=malformed,
        )
