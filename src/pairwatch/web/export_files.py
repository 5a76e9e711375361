"""Export files: a series' record batches written as CSV or Parquet, whole or in pieces.

Files are written to ``<out>.part`` and renamed, so a failed export leaves no half file;
``iter_bytes`` yields a file piece by piece (the web page's streamed downloads).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

Format = Literal["csv", "parquet"]
FORMATS: Final[tuple[Format, ...]] = ("csv", "parquet")
PARQUET_COMPRESSION: Final = "zstd"
_AHEAD: Final = 2
"""Batches read ahead of the one being written, in ``write_stream(background=True)``."""


def write_csv(batches: Iterable[Any], out: Path) -> int:
    """Write the batches to ``out`` as CSV (via ``out.part``, renamed when complete)."""
    return write_file(batches, out, "csv")


def write_parquet(batches: Iterable[Any], out: Path) -> int:
    """Write the batches to ``out`` as Parquet (via ``out.part``, renamed when complete)."""
    return write_file(batches, out, "parquet")


def write_file(batches: Iterable[Any], out: Path, fmt: Format) -> int:
    """Write the batches to ``out``; return the rows written.

    The data go to ``out`` + ``.part`` first, which is renamed to ``out`` (replacing it)
    only once everything is written: a failed or interrupted export removes the part file
    and leaves ``out`` as it was. Batches are encoded in a worker thread while the caller's
    thread reads the next ones (pyarrow encodes without the GIL).
    """
    part = part_path(out)
    if part.is_symlink():
        raise FileExistsError(f"{part} is a symbolic link: not written through, remove it")
    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
        part.unlink()  # a part file left by an export that died
    # O_EXCL | O_NOFOLLOW: whatever appears at the part path meanwhile (a link planted
    # after the check above) makes the open fail instead of being written through.
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        with open(fd, "wb") as sink:
            rows = write_stream(batches, sink, fmt, background=True)
        os.replace(part, out)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)  # ours: created above
        raise
    return rows


def part_path(out: Path) -> Path:
    """Return where ``write_file`` writes before renaming to ``out``."""
    return out.with_name(out.name + ".part")


def write_stream(
    batches: Iterable[Any], sink: Any, fmt: Format, *, background: bool = False
) -> int:
    """Write the batches to a binary file-like ``sink``, batch by batch; return the rows.

    ``sink`` needs ``write`` (and ``tell`` for Parquet); it is left open. With
    ``background``, one worker thread encodes and writes each batch while this thread
    iterates ``batches`` (which may keep using a connection of this thread).
    """
    it = iter(batches)
    first = _first(it)
    rows = 0
    with _Encoder(sink, first.schema, fmt) as encoder:
        if not background:
            for batch in itertools.chain((first,), it):
                encoder.write(batch)
                rows += batch.num_rows
            return rows
        with ThreadPoolExecutor(1, thread_name_prefix="pairwatch-export") as pool:
            pending: deque[Future[None]] = deque()
            for batch in itertools.chain((first,), it):
                pending.append(pool.submit(encoder.write, batch))
                rows += batch.num_rows
                if len(pending) > _AHEAD:
                    pending.popleft().result()  # raises the worker's error
            for done in pending:
                done.result()
    return rows


def iter_bytes(batches: Iterable[Any], fmt: Format) -> Iterator[bytes]:
    """Yield the encoded file in pieces, one per batch and the end (for a streamed download)."""
    it = iter(batches)
    first = _first(it)
    sink = _Pieces()
    with _Encoder(sink, first.schema, fmt) as encoder:
        for batch in itertools.chain((first,), it):
            encoder.write(batch)
            if sink.size:
                yield sink.take()
    if sink.size:
        yield sink.take()


def file_format(fmt: str) -> Format:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return fmt


def _first(batches: Iterator[Any]) -> Any:
    first = next(batches, None)
    if first is None:
        raise ValueError("no record batch to write (export_rows yields at least one)")
    return first


class _Encoder:
    """Encode record batches of one schema as CSV or Parquet into a binary sink."""

    def __init__(self, sink: Any, schema: Any, fmt: str) -> None:
        self._csv = file_format(fmt) == "csv"
        if self._csv:
            # Our own header: pyarrow quotes every name; these never need it.
            sink.write((",".join(schema.names) + "\n").encode())
            options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
            self._writer = pa_csv.CSVWriter(sink, _csv_schema(schema), write_options=options)
        else:
            # No dictionaries: measured slower and larger on metric columns, nearly all distinct.
            self._writer = pq.ParquetWriter(
                sink, schema, compression=PARQUET_COMPRESSION, use_dictionary=False
            )

    def write(self, batch: Any) -> None:
        """Encode one batch."""
        self._writer.write_batch(_csv_batch(batch) if self._csv else batch)

    def __enter__(self) -> _Encoder:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self._writer.close()
        else:  # the first error is the one to see
            with contextlib.suppress(Exception):
                self._writer.close()


def _csv_schema(schema: Any) -> Any:
    """Return the CSV form of an export schema: ``time`` as ISO 8601 text."""
    return schema.set(schema.get_field_index("time"), pa.field("time", pa.string()))


def _csv_batch(batch: Any) -> Any:
    """Return the batch with ``time`` as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` text."""
    index = batch.schema.get_field_index("time")
    naive = batch.column(index).cast(pa.timestamp("ms"))  # format without a time-zone lookup
    text = pc.strftime(naive, format="%Y-%m-%dT%H:%M:%SZ")  # %S carries the milliseconds
    return batch.set_column(index, "time", text)


class _Pieces:
    """A write-only binary sink that keeps what was written until ``take``."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._written = 0
        self.size = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self._pieces.append(bytes(data))
        self._written += len(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        """Nothing is buffered."""

    def take(self) -> bytes:
        """Return and forget what was written since the last ``take``."""
        data = b"".join(self._pieces)
        self._pieces.clear()
        self.size = 0
        return data
