"""The simulator's age-based disconnect option validates itself."""

from __future__ import annotations

import pytest

from pairwatch.daemon.sources.simulator_faults import FaultOptions


def test_drop_after_s_is_off_by_default_and_must_be_positive() -> None:
    assert FaultOptions().drop_after_s is None
    assert FaultOptions(drop_after_s=0.5).drop_after_s == 0.5
    with pytest.raises(ValueError, match="drop_after_s must be > 0"):
        FaultOptions(drop_after_s=0.0)
