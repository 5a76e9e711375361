"""The HTTP stack under python-telegram-bot finds what it looks for on every request."""

from __future__ import annotations

import sys


async def test_httpcore_detects_asyncio_through_an_installed_sniffio() -> None:
    # httpcore runs ``import sniffio`` on every request: without the package each request
    # paid a failed import (a search of sys.path), ~25 % of a Telegram send's loop time.
    from httpcore._synchronization import current_async_library

    assert current_async_library() == "asyncio"
    assert "sniffio" in sys.modules
