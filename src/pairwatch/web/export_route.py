"""``GET /export``: a series' rows over a range as CSV or Parquet, streamed to the browser.

The file is made chunk by chunk in a worker thread (the same export as ``pairwatch
export``) and written to the response as it comes, so a huge range never sits in memory
and never holds the loop. Behind the page's login when it has one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import tornado.web

from pairwatch.web.data import SeriesKey

logger = logging.getLogger(__name__)

CONTENT_TYPES: Final = {
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
QUEUED_CHUNKS: Final = 4
"""Chunks made ahead of the network: bounds memory when the client reads slowly."""


class ExportHandler(tornado.web.RequestHandler):
    """Stream one export; 400 on a bad query, 401 without the page's login."""

    def initialize(self, db_path: Path, protected: bool) -> None:
        self.db_path = db_path
        self.protected = protected
        self._gone = threading.Event()

    def on_connection_close(self) -> None:
        self._gone.set()

    async def get(self) -> None:
        if self.protected and not self.get_secure_cookie("user"):
            self._fail(401, "log in on the page first")
            return
        try:
            key, start, end, kind = self._query()
        except ValueError as exc:
            self._fail(400, str(exc))
            return
        from pairwatch.web import export

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(QUEUED_CHUNKS)
        gone = self._gone

        def produce() -> None:
            def put(item: bytes | BaseException | None) -> None:
                asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

            try:
                chunks: Iterator[bytes] = export.export_chunks(self.db_path, key, start, end, kind)
                for chunk in chunks:
                    if gone.is_set():
                        return
                    put(chunk)
                put(None)
            except BaseException as exc:  # handed to the loop, which answers or logs it
                if not gone.is_set():
                    put(exc)

        producer = loop.run_in_executor(None, produce)
        name = f"{key.y}-{key.x}-{key.timeframe}-w{key.window}.{kind}"
        started = False
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if not started:
                    self.set_header("Content-Type", CONTENT_TYPES[kind])
                    self.set_header("Content-Disposition", f'attachment; filename="{name}"')
                    self.set_header("Cache-Control", "no-store")
                    started = True
                self.write(item)
                await self.flush()
        except tornado.iostream.StreamClosedError:
            gone.set()
        except export.ExportError as exc:
            if started:
                raise
            self._fail(404, str(exc))
        finally:
            gone.set()
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:  # let a producer blocked on a full queue finish
                    queue.get_nowait()
            await producer

    def _query(self) -> tuple[SeriesKey, int | None, int | None, str]:
        args = {name: self.get_query_argument(name, None) for name in _ARGS}
        missing = [name for name in ("y", "x", "timeframe", "window") if not args[name]]
        if missing:
            raise ValueError(f"missing query argument(s): {', '.join(missing)}")
        kind = args["format"] or "csv"
        if kind not in CONTENT_TYPES:
            raise ValueError(f"format must be csv or parquet, not {kind!r}")
        try:
            window = int(args["window"] or "")
            start = None if args["from"] is None else int(args["from"])
            end = None if args["to"] is None else int(args["to"])
        except ValueError:
            raise ValueError("window, from and to must be integers (from/to in epoch ms)") from None
        key = SeriesKey(str(args["y"]), str(args["x"]), str(args["timeframe"]), window)
        return key, start, end, kind

    def _fail(self, status: int, text: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text + "\n")

    def data_received(self, chunk: bytes) -> Any:  # pragma: no cover -- GET only
        return None


_ARGS: Final = ("y", "x", "timeframe", "window", "from", "to", "format")
