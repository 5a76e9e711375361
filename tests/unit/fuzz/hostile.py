"""Helpers of the hostile-input tests: peak memory of a call, and the corpus directory."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

CORPUS = Path(__file__).parents[2] / "data" / "hostile"
MB = 1 << 20


def peak_memory(call: Callable[[], T]) -> tuple[T | BaseException, int]:
    """Return what ``call`` returned (or raised) and the peak bytes Python allocated in it."""
    tracemalloc.start()
    try:
        result: T | BaseException = call()
    except BaseException as exc:  # the caller asserts on what was raised
        result = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, peak
