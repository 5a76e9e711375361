"""Duplicate and gap detection by exchange id."""

from __future__ import annotations

from pairwatch.daemon.sources.sequencer import DUPLICATE, Sequencer


def test_in_order_ids_pass_and_repeats_are_duplicates() -> None:
    seq = Sequencer()
    assert [seq.check("A", i, i * 10) for i in (5, 6, 7)] == [0, 0, 0]
    assert seq.check("A", 7, 70) == DUPLICATE
    assert seq.check("A", 3, 30) == DUPLICATE
    assert seq.states() == [("A", 7, 70)]


def test_a_jump_reports_how_many_ids_were_missed() -> None:
    seq = Sequencer()
    seq.check("A", 100, 1)
    assert seq.check("A", 105, 2) == 4
    assert seq.check("B", 1, 3) == 0  # symbols are independent


def test_state_seeded_after_restart_detects_the_downtime_gap() -> None:
    seq = Sequencer({"A": (100, 1_000)})
    assert seq.check("A", 100, 1_000) == DUPLICATE
    assert seq.check("A", 150, 2_000) == 49
