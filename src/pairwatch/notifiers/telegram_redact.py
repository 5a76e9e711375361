"""Keep the bot token out of the logs.

The token is part of every Bot API URL. httpx logs each request's URL (INFO),
python-telegram-bot logs its base URL (DEBUG) and puts the token in some errors
(``InvalidToken``). ``TokenRedactor`` is a logging filter on the loggers of those
libraries and of the notifiers that rewrites any record holding the token (message,
arguments, traceback) before a handler sees it.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

REDACTED = "<token>"
LOGGED_LIBRARIES = (
    "telegram",
    "httpx",
    "httpcore",
    "h11",
    "h2",
    "hpack",
    "aiolimiter",
    "asyncio",
    "pairwatch.notifiers",
)
"""Loggers (and their children) the filter is added to."""


class TokenRedactor(logging.Filter):
    """Replace the bot token in log records (message, arguments, traceback) by ``<token>``."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._installed: set[logging.Logger] = set()
        self._secrets = tuple(sorted({token, quote(token, safe=""), quote(token)}, key=len))[::-1]

    def redact(self, text: str) -> str:
        """Return ``text`` without the token."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def describe(self, exc: BaseException) -> str:
        """Return ``Type: message`` of an exception, redacted."""
        return self.redact(f"{type(exc).__name__}: {exc}")

    def _has(self, text: str) -> bool:
        return any(secret in text for secret in self._secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; never drop it."""
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler
            message = str(record.msg)
        if self._has(message):
            record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and self._has(record.exc_text):
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info and self._has(record.stack_info):
            record.stack_info = self.redact(record.stack_info)
        return True

    def install(self) -> None:
        """Add this filter to the loggers of python-telegram-bot, httpx and the notifiers.

        Call again after creating objects that may have created loggers: it is idempotent.
        """
        for logger_ in _library_loggers():
            logger_.addFilter(self)
            self._installed.add(logger_)

    def uninstall(self) -> None:
        """Remove this filter from every logger it was added to."""
        for logger_ in self._installed:
            logger_.removeFilter(self)
        self._installed.clear()


def _library_loggers() -> list[logging.Logger]:
    names = set(LOGGED_LIBRARIES)
    names.update(
        name
        for name, item in logging.root.manager.loggerDict.items()
        if isinstance(item, logging.Logger)
        and any(name.startswith(f"{prefix}.") for prefix in LOGGED_LIBRARIES)
    )
    return [logging.getLogger(name) for name in sorted(names)]


class HandledRateLimit(logging.Filter):
    """Demote AIORateLimiter's error for a 429 it re-raises: the outbox retries it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Rate limit hit after maximum"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info = record.exc_text = None
        return True
