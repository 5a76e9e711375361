"""Logging set-up: one line per event, journald-friendly, no colour."""

from __future__ import annotations

import logging
import os
import sys


def configure_logging(level: str = "INFO") -> None:
    """Log to stderr; leave timestamps to journald when running under it."""
    under_journald = "JOURNAL_STREAM" in os.environ and not sys.stderr.isatty()
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not under_journald:
        fmt = "%(asctime)s " + fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries are chatty at DEBUG and some log URLs or payloads: keep them at INFO.
    for name in ("websockets", "apscheduler", "numba", "asyncio", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))
