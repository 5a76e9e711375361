"""End-to-end fixtures: no daemon process outlives its test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.process import kill_leftovers


@pytest.fixture(autouse=True)
def _no_leftover_daemons() -> Iterator[None]:
    yield
    kill_leftovers()
