"""Stream Binance public-data trade dumps (data.binance.vision) as validated TradeBatches.

Reads the four dump layouts (spot/USD-M x trades/aggTrades, see ``csvdump_layout``),
plain ``.csv`` or the standard ``.zip`` holding one CSV (streamed from the archive,
never extracted), with or without a header line, booleans as True/False or true/false,
timestamps in milliseconds or (spot, from 2025-01-01) microseconds, floored to ms.

The file is read ``chunk_bytes`` at a time and cut at the last newline, so memory stays
bounded whatever the file's size; pyarrow parses each block and numpy validates it.
Rows keep their file order and ids are not checked for order: non-increasing or
repeated ids are passed on, and replay deduplicates. Each dropped row is counted once,
under the first reason that applies, in this order:

- ``malformed_row``: wrong number of fields, an empty or unparsable field;
- ``bad_price`` / ``bad_qty``: zero, negative, NaN or infinite;
- ``bad_time``: outside 2010-01-01 .. 2100-01-01 once in ms (e.g. a µs value in a ms file);
- ``bad_count``: an aggTrade whose last_trade_id is below its first_trade_id.

The time unit is decided once per file, from the first well-formed row (> 1e14 → µs).
Batch arrays are zero-copy views of pyarrow memory where possible and may therefore be
read-only: copy one before changing it in place.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from collections import Counter
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from pairwatch.analytics.tradebatch import TradeBatch
from pairwatch.daemon.sources.csvdump_layout import (
    DumpInfo,
    DumpKind,
    TimeUnit,
    parse_dump_name,
    sniff_text,
)
from pairwatch.daemon.sources.csvdump_parse import BlockParser, ParsedBlock
from pairwatch.errors import PairwatchError

logger = logging.getLogger(__name__)

__all__ = ["DumpInfo", "DumpKind", "TimeUnit", "describe_dump", "read_dump"]

MIN_TS_MS = 1_262_304_000_000  # 2010-01-01T00:00:00Z
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
_HEAD_BYTES = 64 << 10
_MAX_LINE = 1 << 20  # far longer than any dump row; keeps memory bounded on junk
_BOM = b"\xef\xbb\xbf"


def describe_dump(path: Path, *, symbol: str | None = None) -> DumpInfo:
    """Tell a dump's symbol, kind, column count, header and time unit from its name and head."""
    with ExitStack() as stack:
        stream, member = _open(path, stack)
        try:
            head = stream.read(_HEAD_BYTES)
        except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise PairwatchError(f"{path}: cannot read: {exc}") from exc
    named = parse_dump_name(path.name)
    if named is None and member is not None:
        named = parse_dump_name(Path(member).name)
    if symbol is None:
        if named is None:
            raise PairwatchError(
                f"{path}: cannot tell the symbol from the file name; use a standard name "
                "such as BTCUSDT-aggTrades-2024-08-08.csv (or .zip), or give the symbol"
            )
        symbol = named[0]
    elif not symbol.strip():
        raise PairwatchError(f"{path}: the symbol given is empty")
    lines = head.decode("utf-8", errors="replace").split("\n")  # as pyarrow splits
    if len(head) == _HEAD_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut short
    sniffed = sniff_text(lines, kind=named[1] if named else None, source=str(path))
    layout = sniffed.layout
    return DumpInfo(symbol, layout.kind, layout.n_columns, sniffed.has_header, sniffed.time_unit)


def read_dump(
    path: Path,
    *,
    symbol: str | None = None,
    chunk_bytes: int = 16 << 20,
    rejects: Counter[str] | None = None,
) -> Iterator[TradeBatch]:
    """Yield a dump's trades as validated batches, in file order, ``chunk_bytes`` at a time.

    The symbol comes from the standard file name unless ``symbol`` is given (which
    wins); a non-standard name without ``symbol`` raises ``PairwatchError`` at once,
    before the first batch is asked for, as do a missing, unreadable or empty file and
    a layout that cannot be told. Dropped rows are counted per reason into ``rejects``
    when given, as each block is read. The arrays of a batch may be read-only.
    """
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    info = describe_dump(path, symbol=symbol)
    return _batches(path, info, chunk_bytes, rejects)


def _batches(
    path: Path, info: DumpInfo, chunk_bytes: int, rejects: Counter[str] | None
) -> Iterator[TradeBatch]:
    """Stream the validated batches of a described dump."""
    parser = BlockParser(info.layout, source=str(path))
    tally: Counter[str] = Counter()
    rows = 0
    with ExitStack() as stack:
        stream, _ = _open(path, stack)
        try:
            # Closed before the stream (LIFO), so its read-ahead is done with the stream first.
            blocks = stack.enter_context(
                closing(_line_blocks(stream, chunk_bytes, info.has_header, str(path)))
            )
            for block in blocks:
                parsed = parser.parse(block)
                rows += len(parsed.ts) + parsed.malformed
                dropped: Counter[str] = Counter()
                batch = _validated(parsed, info, dropped)
                if dropped:
                    tally.update(dropped)
                    if rejects is not None:
                        rejects.update(dropped)
                if len(batch):
                    yield batch
        except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise PairwatchError(f"{path}: cannot read: {exc}") from exc
    if tally:
        reasons = ", ".join(f"{reason}={n}" for reason, n in sorted(tally.items()))
        logger.warning("%s: dropped %d of %d rows (%s)", path, tally.total(), rows, reasons)


def _open(path: Path, stack: ExitStack) -> tuple[IO[bytes], str | None]:
    """Open a plain dump, or the single CSV member of a zipped one, for streaming."""
    try:
        if not zipfile.is_zipfile(path):
            return stack.enter_context(path.open("rb")), None
        archive = stack.enter_context(zipfile.ZipFile(path))
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) != 1:
            names = ", ".join(info.filename for info in members) or "nothing"
            raise PairwatchError(f"{path}: expected one CSV in the zip, found {names}")
        return stack.enter_context(archive.open(members[0])), members[0].filename
    except (OSError, zipfile.BadZipFile) as exc:
        raise PairwatchError(f"{path}: cannot open: {exc}") from exc


def _line_blocks(
    stream: IO[bytes], chunk_bytes: int, skip_first_line: bool, source: str
) -> Generator[pa.Buffer, None, None]:
    """Yield blocks of whole lines of about ``chunk_bytes`` each (a longer line whole).

    The next chunk is read on a helper thread while the caller parses this one: zlib
    and file reads release the GIL, so unzipping overlaps parsing. At most two chunks
    and one partial line are held at a time.
    """
    carry = b""
    first = True
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="csvdump-read") as reader:
        pending = reader.submit(stream.read, chunk_bytes)
        while True:
            data = pending.result()
            if not data:
                break
            pending = reader.submit(stream.read, chunk_bytes)
            buf = carry + data if carry else data
            if first:
                buf = buf.removeprefix(_BOM)
            cut = buf.rfind(b"\n") + 1
            if not cut and len(buf) > _MAX_LINE:
                raise PairwatchError(f"{source}: a line is longer than {_MAX_LINE} bytes")
            if first and skip_first_line:
                start = buf.find(b"\n") + 1
                if start == 0:  # the header line is not complete yet
                    carry = buf
                    continue
                buf, cut = buf[start:], cut - start
            first = False
            carry = buf[cut:]
            if cut:
                yield pa.py_buffer(buf).slice(0, cut)  # zero-copy view of the whole lines
    if carry and not (first and skip_first_line):
        yield pa.py_buffer(carry)


def _validated(parsed: ParsedBlock, info: DumpInfo, tally: Counter[str]) -> TradeBatch:
    """Return the block's rows that pass validation, counting the others by reason."""
    if parsed.malformed:
        tally["malformed_row"] += parsed.malformed
    null_rows = _null_rows(parsed)
    trade_id = _numpy_i8(parsed.trade_id)
    price = _numpy_f8(parsed.price)
    qty = _numpy_f8(parsed.qty)
    ts = _numpy_i8(parsed.ts)
    if info.time_unit is TimeUnit.US:
        ts = ts // 1000
    maker = parsed.buyer_is_maker.fill_null(False).to_numpy(zero_copy_only=False)
    if parsed.first_id is not None and parsed.last_id is not None:
        count = _numpy_i8(parsed.last_id) - _numpy_i8(parsed.first_id) + 1
    else:
        count = np.ones(len(ts), dtype=np.int64)
    checks: list[tuple[str, npt.NDArray[np.bool_] | None]] = [
        ("malformed_row", null_rows),
        ("bad_price", ~((price > 0.0) & (price < np.inf))),  # NaN fails both comparisons
        ("bad_qty", ~((qty > 0.0) & (qty < np.inf))),
        ("bad_time", (ts < MIN_TS_MS) | (ts >= MAX_TS_MS)),
        ("bad_count", count < 1),
    ]
    bad: npt.NDArray[np.bool_] | None = None
    for reason, mask in checks:
        if mask is None or not mask.any():
            continue
        fresh = int(np.count_nonzero(mask if bad is None else mask & ~bad))
        if fresh:
            tally[reason] += fresh
        bad = mask if bad is None else bad | mask
    batch = TradeBatch(info.symbol, trade_id, ts, price, qty, maker, count)
    return batch if bad is None else batch.take(~bad)


def _null_rows(parsed: ParsedBlock) -> npt.NDArray[np.bool_] | None:
    """Return which rows have an empty field, or None when none has."""
    columns = [parsed.trade_id, parsed.price, parsed.qty, parsed.ts, parsed.buyer_is_maker]
    if parsed.first_id is not None:
        columns += [parsed.first_id, parsed.last_id]
    null_rows: npt.NDArray[np.bool_] | None = None
    for column in columns:
        if column.null_count:
            nulls = column.is_null().to_numpy(zero_copy_only=False)
            null_rows = nulls if null_rows is None else null_rows | nulls
    return null_rows


def _numpy_i8(array: pa.Array) -> npt.NDArray[np.int64]:
    """Return an int64 column as numpy, zero-copy when it has no nulls."""
    if array.null_count:
        array = array.fill_null(0)
    result: npt.NDArray[np.int64] = array.to_numpy(zero_copy_only=False)
    return result


def _numpy_f8(array: pa.Array) -> npt.NDArray[np.float64]:
    """Return a float64 column as numpy, zero-copy when it has no nulls."""
    if array.null_count:
        array = array.fill_null(1.0)  # null rows are dropped as malformed anyway
    result: npt.NDArray[np.float64] = array.to_numpy(zero_copy_only=False)
    return result
