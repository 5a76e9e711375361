"""Read numeric query results into numpy arrays at C speed.

Python's ``sqlite3`` builds a Python object per value (~100 ns each, more beside a busy
thread): a million export rows of 43 columns took ~8 s. Here SQLite's own C API
(``libsqlite3``, the library Python's module is linked to) is called from a numba loop
that steps the statement and copies each value into a float64 matrix — ~30 ns per value,
without holding the GIL. NULL becomes NaN (SQLite never stores NaN, so NaN means NULL);
integers stay exact below 2**53, which covers epoch milliseconds and counts.

The functions are looked up through Python's own ``_sqlite3`` module, so they are the
SQLite it uses (never a second copy). ``open_reader`` falls back to Python's ``sqlite3``
(the same results, slower) when they cannot be found.
"""

from __future__ import annotations

import _sqlite3
import ctypes
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numba
import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

Matrix = npt.NDArray[np.float64]
Param = int | float | str

_ROW, _DONE, _NULL = 100, 101, 5
_OPEN_READONLY, _OPEN_URI = 0x01, 0x40
_TRANSIENT = ctypes.c_void_p(-1)


class Reader(Protocol):
    """A read-only connection returning numeric rows as float64 matrices."""

    def matrices(
        self, sql: str, params: Sequence[Param], columns: int, chunk: int
    ) -> Iterator[Matrix]: ...

    def close(self) -> None: ...


class _Lib:
    """The C functions used, with their signatures."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, i, i64, d = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_double
        self.open = _fn(lib.sqlite3_open_v2, i, ctypes.c_char_p, ctypes.POINTER(vp), i, vp)
        self.close = _fn(lib.sqlite3_close_v2, i, vp)
        self.busy = _fn(lib.sqlite3_busy_timeout, i, vp, i)
        self.errmsg = _fn(lib.sqlite3_errmsg, ctypes.c_char_p, vp)
        self.prepare = _fn(
            lib.sqlite3_prepare_v2, i, vp, ctypes.c_char_p, i, ctypes.POINTER(vp), vp
        )
        self.finalize = _fn(lib.sqlite3_finalize, i, vp)
        self.bind_int64 = _fn(lib.sqlite3_bind_int64, i, vp, i, i64)
        self.bind_double = _fn(lib.sqlite3_bind_double, i, vp, i, d)
        self.bind_text = _fn(lib.sqlite3_bind_text, i, vp, i, ctypes.c_char_p, i, vp)
        self.step = _fn(lib.sqlite3_step, i, vp)
        self.column_type = _fn(lib.sqlite3_column_type, i, vp, i)
        self.column_double = _fn(lib.sqlite3_column_double, d, vp, i)


def _fn(function: Any, restype: Any, *argtypes: Any) -> Any:
    function.restype = restype
    function.argtypes = list(argtypes)
    return function


@cache
def _library() -> tuple[_Lib, Any] | None:
    """Load libsqlite3 and compile the fill loop, once; None when either is unavailable."""
    try:
        # The very SQLite Python's module uses (through its handle, which resolves the
        # library it links to, or its own copy): two copies of SQLite in one process can
        # drop each other's file locks. Any other library, or another version: not used.
        handle = ctypes.CDLL(_sqlite3.__file__)
        version = handle.sqlite3_libversion
        version.restype = ctypes.c_char_p
        if version().decode() != sqlite3.sqlite_version:
            raise OSError(
                f"libsqlite3 {version().decode()} is not Python's {sqlite3.sqlite_version}"
            )
        lib = _Lib(handle)
        step, column_type, column_double = lib.step, lib.column_type, lib.column_double

        @numba.njit(nogil=True, cache=False)
        def fill(stmt: int, out: Matrix) -> tuple[int, int]:  # pragma: no cover -- numba
            """Step ``stmt`` into ``out``; return (rows filled, last step's result code)."""
            rows, columns = out.shape
            n = 0
            rc = _ROW
            while n < rows:
                rc = step(stmt)
                if rc != _ROW:
                    break
                for c in range(columns):
                    if column_type(stmt, c) == _NULL:
                        out[n, c] = np.nan
                    else:
                        out[n, c] = column_double(stmt, c)
                n += 1
            return n, rc

        fill(0, np.empty((0, 1)))  # compile now (a zero-row matrix never steps)
    except (OSError, AttributeError, numba.core.errors.NumbaError) as exc:
        logger.warning("fast SQLite reads unavailable (%s): using Python's sqlite3", exc)
        return None
    return lib, fill


class FastReader:
    """A read-only connection to ``path`` through libsqlite3 (use from one thread at a time)."""

    def __init__(self, path: Path, busy_timeout_ms: int = 5_000) -> None:
        loaded = _library()
        if loaded is None:
            raise OSError("libsqlite3 is not available")
        self._lib, self._fill = loaded
        self._lock = threading.Lock()
        handle = ctypes.c_void_p()
        uri = f"{Path(path).resolve().as_uri()}?mode=ro".encode()
        rc = self._lib.open(uri, ctypes.byref(handle), _OPEN_READONLY | _OPEN_URI, None)
        if rc != 0:
            message = self._lib.errmsg(handle).decode(errors="replace") if handle else str(rc)
            self._lib.close(handle)
            raise sqlite3.OperationalError(f"cannot open {path}: {message}")
        self._db: ctypes.c_void_p | None = handle
        self._lib.busy(handle, busy_timeout_ms)

    def matrices(
        self, sql: str, params: Sequence[Param], columns: int, chunk: int = 50_000
    ) -> Iterator[Matrix]:
        """Yield the rows of ``sql`` as float64 matrices of at most ``chunk`` rows."""
        with self._lock:
            stmt = self._prepare(sql, params)
        try:
            while True:
                out = np.empty((chunk, columns), dtype=np.float64)
                n, rc = self._fill(stmt.value, out)
                if rc not in (_ROW, _DONE):
                    raise sqlite3.OperationalError(self._error())
                if n:
                    yield out[:n]
                if n < chunk:
                    return
        finally:
            self._lib.finalize(stmt)

    def _prepare(self, sql: str, params: Sequence[Param]) -> ctypes.c_void_p:
        stmt = ctypes.c_void_p()
        if self._db is None:
            raise sqlite3.ProgrammingError("the reader is closed")
        if self._lib.prepare(self._db, sql.encode(), -1, ctypes.byref(stmt), None) != 0:
            raise sqlite3.OperationalError(self._error())
        for index, value in enumerate(params, start=1):
            if isinstance(value, bool | int):
                rc = self._lib.bind_int64(stmt, index, int(value))
            elif isinstance(value, float):
                rc = self._lib.bind_double(stmt, index, value)
            else:
                raw = str(value).encode()
                rc = self._lib.bind_text(stmt, index, raw, len(raw), _TRANSIENT)
            if rc != 0:
                self._lib.finalize(stmt)
                raise sqlite3.OperationalError(self._error())
        return stmt

    def _error(self) -> str:
        return str(self._lib.errmsg(self._db).decode(errors="replace"))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._lib.close(self._db)
                self._db = None


class PythonReader:
    """The same through Python's ``sqlite3`` (when libsqlite3 cannot be loaded)."""

    def __init__(self, conn: sqlite3.Connection, *, owned: bool = True) -> None:
        self._conn = conn
        self._owned = owned

    def matrices(
        self, sql: str, params: Sequence[Param], columns: int, chunk: int = 50_000
    ) -> Iterator[Matrix]:
        cursor = self._conn.execute(sql, list(params))
        while rows := cursor.fetchmany(chunk):
            yield np.array(rows, dtype=np.float64).reshape(len(rows), columns)

    def close(self) -> None:
        if self._owned:
            self._conn.close()


def align(ts: npt.NDArray[np.int64], rows: Matrix, columns: int) -> Matrix:
    """Return the value columns of ``rows`` (ts first, in order) at each of ``ts``: one row
    per ts, NaN where ``rows`` has none (a leg's bars joined to a series' snapshots)."""
    out = np.full((len(ts), columns), np.nan)
    if len(ts) and len(rows):
        at = rows[:, 0].astype(np.int64)
        index = np.minimum(np.searchsorted(at, ts), len(at) - 1)
        hit = at[index] == ts
        out[hit] = rows[index[hit], 1:]
    return out


def available() -> bool:
    """Return whether the fast reader can be used here."""
    return _library() is not None


def open_reader(path: Path) -> Reader:
    """Return a fast reader of ``path``, or one through Python's sqlite3 if it must be."""
    if _library() is not None:
        return FastReader(path)
    from pairwatch.daemon.store import open_store

    return PythonReader(open_store(path, readonly=True, check_same_thread=False))
