"""Keep the bot token out of the logs.

The token is part of every Bot API URL. httpx logs each request's URL (INFO),
python-telegram-bot logs its base URL (DEBUG) and puts the token in some errors
(``InvalidToken``); any other library (httpcore, asyncio, a user's own logger) may log
it too. ``TokenRedactor`` rewrites a record holding the token (message, arguments,
traceback, stack) in two places, so no handler ever sees it:

* as the record is made, whatever logger makes it (a wrapper of the log record factory):
  this covers root, every child that propagates, and handlers added later;
* in a filter on each handler of the root logger at install, for records made without the
  factory (``logging.makeLogRecord``, records re-emitted by a ``QueueListener``).

``uninstall`` undoes both; the factory is restored once no redactor is installed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

REDACTED = "<token>"


class TokenRedactor(logging.Filter):
    """Replace the bot token in log records (message, arguments, traceback) by ``<token>``."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._handlers: list[logging.Handler] = []
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
            record.exc_info = None  # a formatter that reads it itself would print the token
        if record.stack_info and self._has(record.stack_info):
            record.stack_info = self.redact(record.stack_info)
        return True

    def install(self) -> None:
        """Redact every record made from now on, and those reaching root's handlers.

        Idempotent: call again to cover handlers added to the root logger since.
        """
        _FACTORY.add(self)
        for handler in logging.root.handlers:
            if self not in handler.filters:
                handler.addFilter(self)
                self._handlers.append(handler)

    def uninstall(self) -> None:
        """Remove this redactor from the record factory and the handlers it was added to."""
        for handler in self._handlers:
            handler.removeFilter(self)
        self._handlers.clear()
        _FACTORY.remove(self)


class _Factories:
    """Wraps the log record factory while any redactor is installed.

    The first redactor installed puts a ``_Redacting`` factory over the current one; the
    last removed puts that one back, unless another factory was set over it meanwhile:
    then it stays in that chain and passes records through untouched (the redactors are
    looked up on each record), and the next install wraps whatever is current then.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.redactors: tuple[TokenRedactor, ...] = ()
        self._wrapper: _Redacting | None = None

    def add(self, redactor: TokenRedactor) -> None:
        with self._lock:
            if redactor not in self.redactors:
                self.redactors = (*self.redactors, redactor)
            if self._wrapper is None:
                self._wrapper = _Redacting(logging.getLogRecordFactory(), self)
                logging.setLogRecordFactory(self._wrapper)

    def remove(self, redactor: TokenRedactor) -> None:
        with self._lock:
            self.redactors = tuple(r for r in self.redactors if r is not redactor)
            wrapper = self._wrapper
            if self.redactors or wrapper is None:
                return
            if logging.getLogRecordFactory() is wrapper:
                logging.setLogRecordFactory(wrapper.inner)
            self._wrapper = None


class _Redacting:
    """A log record factory: the one it wraps, then every installed redactor."""

    def __init__(self, inner: Callable[..., logging.LogRecord], factories: _Factories) -> None:
        self.inner = inner
        self._factories = factories

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        for redactor in self._factories.redactors:
            redactor.filter(record)
        return record


_FACTORY = _Factories()


class HandledRateLimit(logging.Filter):
    """Demote AIORateLimiter's error for a 429 it re-raises: the outbox retries it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Rate limit hit after maximum"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info = record.exc_text = None
        return True
