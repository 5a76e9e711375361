"""Pair metrics computed from the window's prices: where a new metric is added.

A window metric is a numba function ``f(x, y, beta, alpha) -> float`` of one pair's window:
the W transformed prices of each leg, oldest first, and the bar's OLS fit. Registering it in
``WINDOW_METRICS`` (one line) is all it takes: the live engine (``PairBank``) and the batch
path (``window_metric_columns``) both run it, every snapshot carries it, and the store adds
its column to the ``analytics`` table at the next start. It is NaN while the window fills.

A window metric costs O(W) per bar, unlike the O(1) core metrics; keep it to simple loops.
Define it in this module: numba's cache tracks this file, so a metric defined elsewhere
could be served stale from the cache after an edit.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
from numba import literal_unroll
from numba.core.errors import NumbaExperimentalFeatureWarning

FloatArray = npt.NDArray[np.float64]


@numba.njit(cache=True)
def max_abs_zscore(x: FloatArray, y: FloatArray, beta: float, alpha: float) -> float:
    """Return the largest |z| of the window's residuals under the bar's fit (how far it got)."""
    n = x.shape[0]
    mean = 0.0
    for i in range(n):
        mean += y[i] - alpha - beta * x[i]
    mean /= n
    squares = 0.0
    largest = 0.0
    for i in range(n):
        d = y[i] - alpha - beta * x[i] - mean
        squares += d * d
        largest = max(largest, abs(d))
    if not squares > 0.0:
        return math.nan
    return largest / math.sqrt(squares / (n - 1))


WINDOW_METRICS: dict[str, Callable[..., Any]] = {
    "max_abs_zscore": max_abs_zscore,
}
"""Metric name → numba function of (x, y, beta, alpha); the column is named after the key."""


_FUNCTIONS = tuple(WINDOW_METRICS.values())


@numba.njit(cache=True)
def _live(rows, bx, by, si, pos_index, count_index, out, beta_col, alpha_col, first_col):  # type: ignore[no-untyped-def]
    """Apply every registered metric to the ring-buffer windows of the banked pairs ``rows``."""
    window = bx.shape[1]
    xs = np.empty(window)
    ys = np.empty(window)
    for j in range(rows.shape[0]):
        p = rows[j]
        beta = out[j, beta_col]
        full = si[p, count_index] == window and not math.isnan(beta)
        if full:
            # The oldest value sits where the next one will go: copy the two runs in order.
            start = si[p, pos_index]
            head = window - start
            xs[:head] = bx[p, start:]
            xs[head:] = bx[p, :start]
            ys[:head] = by[p, start:]
            ys[head:] = by[p, :start]
        col = first_col
        for fn in literal_unroll(_FUNCTIONS):
            out[j, col] = fn(xs, ys, beta, out[j, alpha_col]) if full else math.nan
            col += 1


@numba.njit(cache=True)
def _batch(x, y, beta, alpha, window, out):  # type: ignore[no-untyped-def]
    """Apply every registered metric to every full window of aligned series."""
    for i in range(x.shape[0]):
        full = i + 1 >= window and not math.isnan(beta[i])
        lo = max(i + 1 - window, 0)
        col = 0
        for fn in literal_unroll(_FUNCTIONS):
            out[i, col] = fn(x[lo : i + 1], y[lo : i + 1], beta[i], alpha[i]) if full else math.nan
            col += 1  # noqa: SIM113 -- literal_unroll does not take enumerate


def apply_live(
    rows: npt.NDArray[np.int64],
    bx: FloatArray,
    by: FloatArray,
    si: npt.NDArray[np.int64],
    positions: tuple[int, int],
    out: FloatArray,
    first_column: int,
    beta_column: int,
    alpha_column: int,
) -> None:
    """Fill ``out[:, first_column:]`` with every registered metric of the banked pairs."""
    if _FUNCTIONS:
        pos_index, count_index = positions
        with _compiling():
            _live(rows, bx, by, si, pos_index, count_index, out, beta_column, alpha_column,
                  first_column)  # fmt: skip


def window_metric_columns(
    x: FloatArray, y: FloatArray, beta: FloatArray, alpha: FloatArray, window: int
) -> dict[str, FloatArray]:
    """Return every registered metric per bar of transformed, aligned series (batch path)."""
    out = np.empty((x.shape[0], len(_FUNCTIONS)))
    if _FUNCTIONS:
        xa, ya, ba, aa = (np.ascontiguousarray(a, dtype=np.float64) for a in (x, y, beta, alpha))
        with _compiling():
            _batch(xa, ya, ba, aa, window, out)
    return {name: out[:, k] for k, name in enumerate(WINDOW_METRICS)}


@contextlib.contextmanager
def _compiling() -> Iterator[None]:
    # A tuple of numba functions is an "experimental" feature to numba; it is the one way
    # to call registered metrics from a cached kernel (a function argument never caches).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)
        yield
