"""The bot token is kept out of every log record, whichever logger makes it.

Records are captured by handlers on the root logger (one added before the redactor is
installed, one after), formatted as a handler would, and searched for the token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from pairwatch.notifiers.telegram_redact import REDACTED, TokenRedactor
from support.secrets import TELEGRAM_OTHER_TOKEN, TELEGRAM_TOKEN, logged_on_purpose

TOKEN = TELEGRAM_TOKEN
OTHER = TELEGRAM_OTHER_TOKEN
URL = f"https://api.telegram.org/bot{TOKEN}/getMe"


class Lines(logging.Handler):
    """Keep every record and its formatted text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger at DEBUG, its level and handlers restored after the test."""
    logger = logging.getLogger()
    level, handlers = logger.level, list(logger.handlers)
    logger.setLevel(logging.DEBUG)
    try:
        yield logger
    finally:
        logger.setLevel(level)
        for handler in logger.handlers[:]:
            if handler not in handlers:
                logger.removeHandler(handler)


def log_everywhere(secret: str) -> int:
    """Log ``secret`` through several loggers at DEBUG; return how many records."""
    logging.getLogger().debug("root: POST https://x/bot%s/getMe", secret)
    logging.getLogger("httpx").debug("HTTP Request: POST %s", f"https://x/bot{secret}/getMe")
    logging.getLogger("httpcore.connection").debug("send_request url=%r", f"/bot{secret}/x")
    logging.getLogger("asyncio").debug("task failed: bot%s", quote(secret, safe=""))
    child = logging.getLogger("app.made.after.install")  # not a library the bot knows
    assert child.propagate
    child.debug(f"f-string with bot{secret} in the message itself")
    return 5


def test_records_of_any_logger_reach_root_handlers_without_the_token(
    root: logging.Logger,
) -> None:
    before = Lines()
    root.addHandler(before)
    redactor = TokenRedactor(TOKEN)
    redactor.install()
    after = Lines()
    root.addHandler(after)  # added once the redactor is installed
    try:
        count = log_everywhere(TOKEN)
    finally:
        redactor.uninstall()
    for handler in (before, after):
        assert len(handler.lines) == count
        assert all(TOKEN not in line for line in handler.lines)
        assert all(quote(TOKEN, safe="") not in line for line in handler.lines)
        assert all(REDACTED in line for line in handler.lines)
    assert before.lines == [
        "root DEBUG root: POST https://x/bot<token>/getMe",
        "httpx DEBUG HTTP Request: POST https://x/bot<token>/getMe",
        "httpcore.connection DEBUG send_request url='/bot<token>/x'",
        "asyncio DEBUG task failed: bot<token>",
        "app.made.after.install DEBUG f-string with bot<token> in the message itself",
    ]
    assert after.lines == before.lines


def test_tracebacks_and_stacks_are_redacted_and_other_records_left_alone(
    root: logging.Logger,
) -> None:
    redactor = TokenRedactor(TOKEN)
    redactor.install()
    lines = Lines()
    root.addHandler(lines)
    try:
        try:
            raise RuntimeError(f"GET {URL} failed")
        except RuntimeError:
            logging.getLogger("telegram.ext.Updater").exception("polling failed")
        logging.getLogger("x").warning("no secret here: %s", 42, stack_info=True)
    finally:
        redactor.uninstall()
    failed, plain = lines.records
    assert TOKEN not in lines.lines[0]
    assert "RuntimeError: GET https://api.telegram.org/bot<token>/getMe failed" in lines.lines[0]
    assert failed.exc_info is None  # a formatter reading it itself cannot print the token
    assert failed.exc_text is not None
    assert TOKEN not in failed.exc_text
    assert (plain.msg, plain.args) == ("no secret here: %s", (42,))  # untouched
    assert lines.lines[1].startswith("x WARNING no secret here: 42\nStack (most recent call")


def test_a_record_made_without_the_factory_is_redacted_by_root_s_handlers(
    root: logging.Logger,
) -> None:
    lines = Lines()
    root.addHandler(lines)
    redactor = TokenRedactor(TOKEN)
    redactor.install()
    try:
        record = logging.makeLogRecord({"name": "queue", "levelno": logging.INFO,
                                        "levelname": "INFO", "msg": "from a queue: %s",
                                        "args": (URL,)})  # fmt: skip
        root.handle(record)
    finally:
        redactor.uninstall()
    assert lines.lines == ["queue INFO from a queue: https://api.telegram.org/bot<token>/getMe"]


def test_uninstall_restores_the_factory_and_root_s_handlers(root: logging.Logger) -> None:
    factory = logging.getLogRecordFactory()
    lines = Lines()
    root.addHandler(lines)
    first, second = TokenRedactor(TOKEN), TokenRedactor(OTHER)
    first.install()
    second.install()
    first.install()  # again: idempotent
    assert lines.filters == [first, second]
    logging.getLogger("httpx").debug("both: %s %s", TOKEN, OTHER)
    first.uninstall()  # not in the order of installing
    assert lines.filters == [second]
    with logged_on_purpose():
        logging.getLogger("httpx").debug("second only: %s %s", TOKEN, OTHER)
    second.uninstall()
    assert lines.filters == []
    assert logging.getLogRecordFactory() is factory
    with logged_on_purpose():
        logging.getLogger("httpx").debug("none: %s", TOKEN)
    assert lines.lines == [
        "httpx DEBUG both: <token> <token>",
        f"httpx DEBUG second only: {TOKEN} <token>",
        f"httpx DEBUG none: {TOKEN}",
    ]


def test_a_factory_set_over_the_redactor_s_keeps_working_after_uninstall(
    root: logging.Logger,
) -> None:
    original = logging.getLogRecordFactory()
    redactor = TokenRedactor(TOKEN)
    redactor.install()
    inner = logging.getLogRecordFactory()

    def tagging(*args: object, **kwargs: object) -> logging.LogRecord:
        record = inner(*args, **kwargs)
        record.tag = "mine"
        return record

    logging.setLogRecordFactory(tagging)
    lines = Lines()
    root.addHandler(lines)
    try:
        logging.getLogger("httpx").debug("in: %s", TOKEN)
        redactor.uninstall()  # the redactor's factory stays in the chain, passing through
        with logged_on_purpose():
            logging.getLogger("httpx").debug("out: %s", TOKEN)
        redactor.install()  # back in the same chain, not wrapped twice
        logging.getLogger("httpx").debug("again: %s", TOKEN)
        redactor.uninstall()
    finally:
        logging.setLogRecordFactory(original)
    assert [getattr(r, "tag", None) for r in lines.records] == ["mine"] * 3
    assert lines.lines == [
        "httpx DEBUG in: <token>",
        f"httpx DEBUG out: {TOKEN}",
        "httpx DEBUG again: <token>",
    ]
