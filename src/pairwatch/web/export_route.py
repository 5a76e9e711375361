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
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import tornado.http1connection
import tornado.iostream
import tornado.web

from pairwatch.series import SeriesKey

logger = logging.getLogger(__name__)

CONTENT_TYPES: Final = {
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
EXPORT_THREADS: Final = 4
"""Downloads made at once; more wait their turn (page reads keep their own threads)."""
_EXPORTS = ThreadPoolExecutor(max_workers=EXPORT_THREADS, thread_name_prefix="pairwatch-export")
_running = 0
_idle = threading.Condition()


def _counted(produce: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        global _running  # noqa: PLW0603 -- one counter for the process's exports
        with _idle:
            _running += 1
        try:
            produce()
        finally:
            with _idle:
                _running -= 1
                _idle.notify_all()

    return run


def wait_idle(timeout: float) -> bool:
    """Wait until no export is being made; return whether that happened in ``timeout``."""
    with _idle:
        return _idle.wait_for(lambda: _running == 0, timeout)


MAX_MS: Final = 2**53
"""Largest from/to accepted (and window): exact in a float64, and fits SQLite's int64."""
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
        if self.protected and not self._logged_in():
            self._fail(401, "log in on the page first")
            return
        try:
            key, start, end_ms, kind = self._query()
        except ValueError as exc:
            self._fail(400, str(exc))
            return
        from pairwatch.web import export

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(QUEUED_CHUNKS)
        gone = self._gone

        def end() -> None:  # on the loop: the end marker always arrives, even on a full queue
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                loop.call_later(0.05, end)

        def produce() -> None:
            def put(item: bytes | BaseException) -> bool:
                """Queue ``item``; False once the client or the server is gone."""
                coro = queue.put(item)
                try:
                    future = asyncio.run_coroutine_threadsafe(coro, loop)
                except RuntimeError:  # the server's loop is closed
                    coro.close()
                    return False
                # A slow client: look again, now and then, whether it left or the server
                # stopped (then this thread must end, or the process could not exit).
                while not gone.is_set() and not loop.is_closed():
                    try:
                        future.result(timeout=0.2)
                        return True
                    except TimeoutError:
                        continue
                future.cancel()
                return False

            chunks: Generator[bytes, None, None] = export.export_chunks(
                self.db_path, key, start, end_ms, kind
            )
            try:
                for chunk in chunks:
                    if not put(chunk):
                        return
            except BaseException as exc:  # handed to the loop, which answers or logs it
                put(exc)
            finally:
                chunks.close()  # its read-only connection, now, in this thread
                with contextlib.suppress(RuntimeError):  # the server's loop is closed
                    loop.call_soon_threadsafe(end)

        producer = loop.run_in_executor(_EXPORTS, _counted(produce))
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
            pass
        except export.ExportError as exc:
            if not started:
                self._fail(404, str(exc))
            else:
                self._abort(exc)
        except Exception as exc:
            if not started:
                raise  # Tornado answers 500
            self._abort(exc)
        finally:
            gone.set()  # a producer waiting on a full queue stops
            await producer

    def _abort(self, exc: BaseException) -> None:
        """Fail a download already under way: close the connection without the final
        chunk, so the browser reports it failed rather than keeping a short file."""
        logger.warning("export %s failed after it started: %s", self.request.uri, exc)
        connection = self.request.connection
        if isinstance(connection, tornado.http1connection.HTTP1Connection):
            connection.close()
        self._finished = True  # nothing more can be sent

    def _logged_in(self) -> bool:
        import panel as pn

        # The page's own login cookie, for as long as the page itself accepts it.
        return bool(self.get_secure_cookie("user", max_age_days=pn.config.oauth_expiry))

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
            if any(v is not None and not 0 <= v <= MAX_MS for v in (start, end)):
                raise ValueError
            if not 0 <= window <= MAX_MS:
                raise ValueError
        except ValueError:
            raise ValueError(
                "window, from and to must be integers (from/to in epoch ms, 0 … 2^53)"
            ) from None
        key = SeriesKey(str(args["y"]), str(args["x"]), str(args["timeframe"]), window)
        return key, start, end, kind

    def _fail(self, status: int, text: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text + "\n")


_ARGS: Final = ("y", "x", "timeframe", "window", "from", "to", "format")
