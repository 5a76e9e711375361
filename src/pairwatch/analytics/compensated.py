"""Compensated running sums for the numba kernels."""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt


@numba.njit(inline="always")
def two_sum(total: float, comp: float, value: float) -> tuple[float, float]:
    """Return ``total + value`` and ``comp`` plus the exact rounding error of that add.

    Knuth's TwoSum: the same error term as Neumaier's compare-and-branch, without the
    branch, which mispredicts on sums that hover around zero (centred sums, returns).
    """
    new = total + value
    back = new - total
    return new, comp + ((total - (new - back)) + (value - back))


@numba.njit(inline="always")
def moments(m, a, b, sign):  # type: ignore[no-untyped-def]
    """Return the sums Σa, Σb, Σa², Σb², Σab ``m`` with a point added (sign 1) or removed (−1).

    ``m`` is a 10-tuple of (sum, compensation) pairs; passing and returning it by value lets
    a kernel keep it in registers across a loop.
    """
    s0, c0 = two_sum(m[0], m[1], sign * a)
    s1, c1 = two_sum(m[2], m[3], sign * b)
    s2, c2 = two_sum(m[4], m[5], sign * (a * a))
    s3, c3 = two_sum(m[6], m[7], sign * (b * b))
    s4, c4 = two_sum(m[8], m[9], sign * (a * b))
    return (s0, c0, s1, c1, s2, c2, s3, c3, s4, c4)


@numba.njit(inline="always")
def add(st: npt.NDArray[np.float64], k: int, value: float) -> None:
    """Do ``st[k] += value`` keeping the rounding error in ``st[k + 1]``."""
    st[k], st[k + 1] = two_sum(st[k], st[k + 1], value)
