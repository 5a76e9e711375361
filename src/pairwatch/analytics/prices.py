"""Price input for every kernel: one check (finite, > 0) and one log transform.

The kernels trust their input — numba does no bounds checks, and one NaN would poison the
running sums — so every public entry point passes its prices through ``checked_prices``;
and all of them take logs with ``log_prices``'s scalar log, so the live and the batch paths
agree to the bit.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt


@numba.njit(cache=True)
def log_prices(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Return ln of each value with the same scalar log the kernels use.

    numpy's vectorised log may differ from the C library's by one unit in the last place on
    some CPUs; using one log everywhere keeps the live and batch paths bit-identical.
    """
    out = np.empty_like(values)
    for i in range(values.shape[0]):
        out[i] = math.log(values[i])
    return out


def checked_prices(*columns: npt.ArrayLike) -> list[npt.NDArray[np.float64]]:
    """Return the columns as contiguous float64 arrays of one length, all finite and > 0.

    The kernels trust their input (numba does no bounds checks, and one NaN would poison
    the running sums), so every public entry point goes through here.
    """
    arrays = [np.ascontiguousarray(c, dtype=np.float64) for c in columns]
    if any(a.ndim != 1 or a.shape != arrays[0].shape for a in arrays):
        raise ValueError("price columns must be 1-D and of the same length")
    for a in arrays:
        if not _all_positive(a):
            raise ValueError("prices must be finite and greater than zero")
    return arrays


@numba.njit(cache=True)
def _all_positive(values: npt.NDArray[np.float64]) -> bool:
    """Return whether every value is finite and > 0 (one pass, no temporaries)."""
    ok = True
    for i in range(values.shape[0]):  # no early exit: the loop vectorises
        ok &= (values[i] > 0.0) & (values[i] < math.inf)  # also false for NaN
    return ok
