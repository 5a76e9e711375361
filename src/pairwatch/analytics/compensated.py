"""Neumaier-compensated running sums for the numba kernels."""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt


@numba.njit(inline="always")
def add(st: npt.NDArray[np.float64], k: int, value: float) -> None:
    """Do ``st[k] += value`` keeping the rounding error in ``st[k + 1]`` (Neumaier)."""
    s = st[k]
    t = s + value
    if abs(s) >= abs(value):
        st[k + 1] += (s - t) + value
    else:
        st[k + 1] += (value - t) + s
    st[k] = t
