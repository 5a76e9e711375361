"""Read recorded Binance combined-stream frames from files (pure, no network).

Three line formats are recognised line by line, so one reader handles them all; a file
is gzip-compressed when its first two bytes are the gzip magic, whatever its name:

* hftbacktest collector: ``<local receive ns> <json>``;
* cryptofeed raw-data recorder: ``<local receive unix seconds as a float>: <json>``; its
  header line (``<url> <-> <secs>``) and REST snapshot lines (``<url> -> <secs>: <json>``)
  are skipped;
* plain JSON lines (``.jsonl``, optionally gzip-compressed): one frame per line, no
  receive time.

Only combined-stream frames (a JSON object with ``stream`` and ``data``) are yielded;
other JSON (REST depth snapshots) and blank lines are skipped. ``raw`` is the frame's JSON
text exactly as recorded. A line that is neither is an error naming the file and line.
"""

from __future__ import annotations

import gzip
import heapq
import io
import logging
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec

from pairwatch.errors import PairwatchError

logger = logging.getLogger(__name__)

TRADE_KINDS = ("trade", "aggTrade")
_GZIP_MAGIC = b"\x1f\x8b"


class FrameFileError(PairwatchError):
    """A recorded frame file has a line that cannot be read."""


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    """One recorded combined-stream frame and the fields needed to order and account for it."""

    recv_ns: int | None
    """Local receive time recorded next to the frame (ns since the epoch), if any."""
    stream: str
    """The frame's ``stream`` value, e.g. ``btcusdt@trade``."""
    raw: str
    """The whole combined frame's JSON text, as recorded."""
    event_ms: int | None = None
    """``data.E`` (event time), else ``data.T``, else None."""
    trade_ms: int | None = None
    """``data.T`` when present."""
    trade_id: int | None = None
    """``data.t`` for trade frames, ``data.a`` for aggTrade frames, else None."""

    @property
    def kind(self) -> str:
        """Return the stream kind after the ``@``, e.g. ``trade`` or ``depth@100ms``."""
        return self.stream.partition("@")[2]

    @property
    def is_trade(self) -> bool:
        """Return whether this is a ``trade`` or ``aggTrade`` frame."""
        return self.kind in TRADE_KINDS


class _Data(msgspec.Struct):
    # Any: depth frames reuse the letters with other types (``a`` is the asks list).
    E: Any = None
    T: Any = None
    t: Any = None
    a: Any = None


class _Envelope(msgspec.Struct):
    stream: Any = None
    data: _Data | None = None


_decoder = msgspec.json.Decoder(_Envelope)


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seconds_to_ns(text: str) -> int:
    """Convert decimal seconds text to integer ns without float rounding."""
    whole, _, frac = text.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"not a decimal number of seconds: {text!r}")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


def _split_line(line: str) -> tuple[int | None, str] | None:
    """Return (recv_ns, json_text) of a frame line, or None for a line to skip."""
    if line.startswith("{"):
        return None, line
    head, sep, rest = line.partition(" ")
    if not sep:
        return None
    if head.isdigit() and rest.startswith("{"):
        return int(head), rest
    if head.endswith(":") and rest.startswith("{"):
        return _seconds_to_ns(head[:-1]), rest
    if "://" in head:
        return None  # cryptofeed connection header or REST snapshot line
    raise ValueError("unrecognised line format")


def _open_text(path: Path) -> io.TextIOBase:
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == _GZIP_MAGIC:
        stream: IO[bytes] = gzip.open(path, "rb")  # type: ignore[assignment]  # noqa: SIM115
    else:
        stream = path.open("rb")
    # Bytes that are not UTF-8 become U+FFFD, so such a line fails as malformed JSON.
    return io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="\n")


def parse_frame(text: str, recv_ns: int | None = None) -> RecordedFrame | None:
    """Parse one combined frame's JSON; return None when it is not a combined frame."""
    envelope = _decoder.decode(text)
    if not isinstance(envelope.stream, str) or envelope.data is None:
        return None
    data = envelope.data
    event_ms, trade_ms = _as_int(data.E), _as_int(data.T)
    kind = envelope.stream.partition("@")[2]
    trade_id = (
        _as_int(data.t) if kind == "trade" else _as_int(data.a) if kind == "aggTrade" else None
    )
    return RecordedFrame(
        recv_ns=recv_ns,
        stream=envelope.stream,
        raw=text,
        event_ms=event_ms if event_ms is not None else trade_ms,
        trade_ms=trade_ms,
        trade_id=trade_id,
    )


def iter_frames(
    path: str | Path, *, rejects: Counter[str] | None = None
) -> Iterator[RecordedFrame]:
    """Yield the combined-stream frames of a recorded file in file order.

    Without ``rejects``, a line that cannot be read raises ``FrameFileError`` naming the
    file and line. With it (replay), such lines are counted as ``malformed_line`` and
    skipped, and a file cut short (a recorder that died mid-write, a truncated gzip) ends
    with the frames read so far, counted once as ``truncated_file``.
    """
    path = Path(path)
    lineno = 0
    try:
        with _open_text(path) as lines:
            for lineno, line in enumerate(lines, start=1):
                text = line.rstrip("\r\n")
                if not text.strip():
                    continue
                try:
                    split = _split_line(text)
                    if split is None:
                        continue
                    frame = parse_frame(split[1], split[0])
                except (ValueError, msgspec.DecodeError, RecursionError) as exc:
                    # ValueError covers a non-UTF-8 line (UnicodeDecodeError).
                    if rejects is None:
                        raise FrameFileError(f"{path}:{lineno}: {exc}") from exc
                    if not rejects["malformed_line"]:
                        logger.warning(
                            "%s:%d: skipping a line that cannot be read: %s", path, lineno, exc
                        )
                    rejects["malformed_line"] += 1
                    continue
                if frame is not None:
                    yield frame
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        if rejects is None:
            raise FrameFileError(f"{path}:{lineno + 1}: file is cut short: {exc}") from exc
        logger.warning("%s: file is cut short after line %d (%s)", path, lineno, exc)
        rejects["truncated_file"] += 1


def iter_trade_frames(
    path: str | Path, streams: Iterable[str] | None = None
) -> Iterator[RecordedFrame]:
    """Yield only trade/aggTrade frames, optionally only of the given stream names."""
    wanted = None if streams is None else frozenset(streams)
    for frame in iter_frames(path):
        if frame.is_trade and (wanted is None or frame.stream in wanted):
            yield frame


def event_order_key(frame: RecordedFrame) -> tuple[int, int]:
    """Return the merge key: event time ``E``, then trade time ``T`` (missing sorts first)."""
    return (
        frame.event_ms if frame.event_ms is not None else -1,
        frame.trade_ms if frame.trade_ms is not None else -1,
    )


def merge_frames(*sources: Iterable[RecordedFrame]) -> Iterator[RecordedFrame]:
    """Merge per-file frame iterators by event time (stable: ties keep source order)."""
    return heapq.merge(*sources, key=event_order_key)
