"""The secrets the test suite uses, and the guard that fails a run which logged any of them.

Tests take their tokens and passwords from here, so the guard (installed by
``tests/conftest.py`` for the whole session) knows every one of them. It looks at:

* every log record of any logger, as handled (``logging.Logger.callHandlers`` is wrapped,
  class-wide): the formatted message, the traceback, the stack and any ``extra`` field;
* the output pytest captured of each test (its stdout, stderr and log sections), which
  holds what subprocesses that inherit the test's stderr printed;
* lines of a daemon subprocess's stderr handed to ``check_output`` (``support.process``).

Why wrap ``callHandlers`` rather than add a handler to the root logger: a root handler is
bypassed by a logger with ``propagate = False`` and is removed by anything that resets the
root handlers (``pairwatch.logs.configure_logging`` does, and so does ``basicConfig(force=
True)``); pytest's ``LogCaptureHandler`` comes and goes per test phase. Every record that a
logger lets through goes through ``callHandlers``, whatever handlers exist. The record is
checked after the handlers ran, so it is checked as they saw it (a redacting filter on a
handler has had its say). Records a logger's level drops are never made, so nothing of
them can reach a log; the guard does not lower any level (that would change what tests
see in ``caplog``).

A secret only counts when it is long and odd enough not to turn up by chance; the short
ones a few tests use ("pw", "p", "nope") are not guarded.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

TELEGRAM_TOKEN = "123456789:AAH-test_secret-TOKEN_value_0123456789"
"""The bot token of the fake Bot API in integration tests."""
TELEGRAM_WRONG_TOKEN = "987654321:AAH-wrong_secret-TOKEN_value_9876543210"
"""A token the fake Bot API refuses."""
TELEGRAM_OTHER_TOKEN = "987654321:AAH-other_secret-TOKEN_value_9876543210"
"""A second bot's token (two redactors at once)."""
E2E_TELEGRAM_TOKEN = "123456:TEST-token-never-logged"
"""The bot token of end-to-end daemon runs."""
CREDENTIAL_TELEGRAM_TOKEN = "123:abc"
"""A token read from a systemd credential file."""
ENV_TELEGRAM_TOKEN = "123:secret"
"""A token in the environment that the web page's process must not get."""
WEBHOOK_SECRET = "s3cret"
"""The webhook's HMAC secret (also the MQTT and web passwords of some tests)."""
MQTT_PASSWORD = WEBHOOK_SECRET
CREDENTIAL_MQTT_PASSWORD = "hunter2"
WEB_PASSWORD = "correct horse"
"""The login password of the web page in browser tests."""
SETTINGS_WEB_PASSWORD = "hunter22"
SETTINGS_COOKIE_SECRET = "c00kie"

SECRETS: tuple[str, ...] = (
    TELEGRAM_TOKEN,
    TELEGRAM_WRONG_TOKEN,
    TELEGRAM_OTHER_TOKEN,
    E2E_TELEGRAM_TOKEN,
    CREDENTIAL_TELEGRAM_TOKEN,
    ENV_TELEGRAM_TOKEN,
    WEBHOOK_SECRET,
    CREDENTIAL_MQTT_PASSWORD,
    WEB_PASSWORD,
    SETTINGS_WEB_PASSWORD,
    SETTINGS_COOKIE_SECRET,
)
"""Every secret the suite uses: none may show in any log output of a test run."""

_FORMAT = logging.Formatter("%(levelname)s %(name)s: %(message)s")
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_MAX_SHOWN = 200


def forms(secret: str) -> tuple[str, ...]:
    """Return how ``secret`` may be written: as is and URL-encoded (in a URL's path)."""
    return tuple(dict.fromkeys((secret, quote(secret, safe=""), quote(secret))))


@dataclass(frozen=True)
class Leak:
    """A secret seen in log output: where, by whom, and the line around it."""

    test: str
    source: str
    """The logger's name, or where the output came from (``captured stderr``, …)."""
    secret: str
    excerpt: str

    def describe(self) -> str:
        """Return one line for the run's summary (the secret itself is masked)."""
        return f"{self.test}: {self.source}: secret {self.secret[:4]}… in {self.excerpt!r}"


@dataclass(eq=False)  # registered as a pytest plugin: hashable by identity
class SecretGuard:
    """A pytest plugin: collect every leak of ``secrets`` and fail the run if there was one."""

    secrets: Iterable[str] = SECRETS
    leaks: list[Leak] = field(default_factory=list)
    _forms: dict[str, str] = field(default_factory=dict)
    _test: str = "(outside a test)"
    _paused: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _original: Callable[[logging.Logger, logging.LogRecord], None] | None = None
    _previous: SecretGuard | None = None
    """The guard active before this one (a pytest run inside a test: ``pytester``)."""

    def __post_init__(self) -> None:
        self._forms = {form: secret for secret in self.secrets for form in forms(secret)}

    # --- what is checked -----------------------------------------------------------------

    def check(self, text: str, source: str) -> None:
        """Record a leak for each secret in ``text``."""
        if self._paused:
            return
        for form, secret in self._forms.items():
            at = text.find(form)
            if at >= 0:
                start = max(0, text.rfind("\n", 0, at) + 1, at - _MAX_SHOWN)
                end = text.find("\n", at)
                excerpt = text[start : end if end >= 0 else None][:_MAX_SHOWN]
                excerpt = excerpt.replace(form, "<secret>")  # the summary must not repeat it
                with self._lock:
                    self.leaks.append(Leak(self._test, source, secret, excerpt))

    def check_record(self, record: logging.LogRecord) -> None:
        """Check a record as a handler would write it, with its traceback and extras."""
        try:
            text = _FORMAT.format(record)
        except Exception:  # a broken format string: check what it was made of
            text = f"{record.msg!s} {record.args!r}"
            if record.exc_info:
                text += "\n" + _FORMAT.formatException(record.exc_info)
        extras = [f"{k}={v!r}" for k, v in record.__dict__.items() if k not in _STANDARD]
        self.check("\n".join([text, *extras]), f"logger {record.name!r}")

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Do not count what is logged inside (a test that logs a secret on purpose)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    # --- the logging hook ----------------------------------------------------------------

    def install(self) -> None:
        """Check every record any logger hands to its handlers from now on."""
        if self._original is not None:
            return
        original = logging.Logger.callHandlers
        guard = self

        def call_handlers(logger: logging.Logger, record: logging.LogRecord) -> None:
            try:
                original(logger, record)
            finally:
                guard.check_record(record)

        self._original = original
        logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign]

    def uninstall(self) -> None:
        """Restore ``callHandlers``."""
        if self._original is not None:
            logging.Logger.callHandlers = self._original  # type: ignore[method-assign]
            self._original = None

    # --- pytest hooks --------------------------------------------------------------------

    def pytest_sessionstart(self, session: Any) -> None:
        global _ACTIVE
        self._previous, _ACTIVE = _ACTIVE, self
        self.install()

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self._test = nodeid

    def pytest_runtest_logreport(self, report: Any) -> None:
        for title, content in report.sections:
            if not title.startswith("Captured log"):  # its records were checked as logged
                self.check(content, f"{title.lower()} ({report.when})")

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        self._test = "(outside a test)"

    def pytest_sessionfinish(self, session: Any, exitstatus: int) -> None:
        global _ACTIVE  # noqa: PLW0603
        self.uninstall()
        if _ACTIVE is self:
            _ACTIVE = self._previous
        if self.leaks and session.exitstatus in (0, 5):  # passed, or nothing collected
            session.exitstatus = 1  # pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.leaks:
            return
        terminalreporter.section("secrets in log output", sep="=", red=True, bold=True)
        terminalreporter.line(
            f"{len(self.leaks)} log line(s) held a secret of tests/support/secrets.py; "
            "the run fails:",
            red=True,
        )
        for leak in self.leaks:
            terminalreporter.line("  " + leak.describe(), red=True)


_ACTIVE: SecretGuard | None = None


def check_output(text: str, source: str) -> None:
    """Check output of a subprocess (a daemon's stderr line) with the session's guard."""
    if _ACTIVE is not None:
        _ACTIVE.check(text, source)


@contextlib.contextmanager
def logged_on_purpose() -> Iterator[None]:
    """Let a test log a secret on purpose (e.g. to show a filter is gone) inside."""
    if _ACTIVE is None:
        yield
        return
    with _ACTIVE.paused():
        yield
