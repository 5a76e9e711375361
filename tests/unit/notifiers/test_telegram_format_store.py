"""The store's lines of ``/status``, and byte sizes for people."""

from __future__ import annotations

import pytest

from pairwatch.notifiers.telegram_backend import StoreStatus
from pairwatch.notifiers.telegram_format import size, store_lines
from support.botapi import check_html

T0 = 1_700_000_040_000


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1_000, "1 kB"),
        (1_234, "1.23 kB"),
        (999_499, "999 kB"),
        (999_999, "1 MB"),  # rounded up into the next unit, never "1e+03 kB"
        (3_400_000, "3.4 MB"),
        (2_000_000_000, "2 GB"),
        (12_345_678_901_234, "12.3 TB"),
        (10**16, "10,000 TB"),
    ],
)
def test_sizes_have_three_digits_and_a_decimal_unit(n: int, text: str) -> None:
    assert size(n) == text


def test_a_healthy_store_is_one_line_with_its_size_and_cap() -> None:
    ok = StoreStatus(True, None, None, None, 0, size_bytes=1_234_567, max_size=2_000_000_000)
    assert store_lines(ok) == ["Store: OK · 1.23 MB of 2 GB max"]
    busy = StoreStatus(True, None, None, "OperationalError: database is locked", 120)
    assert store_lines(busy) == ["Store: OK · 120 rows waiting"]  # a past error is not shown


def test_a_failing_store_says_since_when_the_error_escaped_and_what_waits() -> None:
    failing = StoreStatus(
        healthy=False, failing_since=T0, failing_for_s=59.6,
        last_error="OperationalError: attempt to write a readonly database <&>",
        queued_rows=12_345, size_bytes=None, max_size=None,
    )  # fmt: skip
    lines = store_lines(failing)
    assert lines == [
        "⚠️ Store: <b>FAILING</b> for 1m (since 2023-11-14 22:14:00 UTC) · "
        "12,345 rows waiting in memory",
        "Last error: <code>OperationalError: attempt to write a readonly database "
        "&lt;&amp;&gt;</code>",
    ]
    assert check_html("\n".join(lines)) is None
