"""The session's secret guard fails a pytest run whose log output held a secret.

Runs pytest inside the test (``pytester``) with a guard of its own. In process, that guard
watches a secret the outer run does not know, so the outer guard stays quiet; one run in a
subprocess uses the suite's real list and conftest wiring and shows the exit status.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from support.secrets import SECRETS, TELEGRAM_TOKEN, SecretGuard, forms

pytest_plugins = ["pytester"]

INNER = "inner-only:SECRET_value-42"
"""A secret only the inner runs guard (so the outer run's guard never sees it)."""
TESTS = Path(__file__).resolve().parents[2]

CONFTEST = f"""
from support.secrets import SecretGuard

def pytest_configure(config):
    config.pluginmanager.register(SecretGuard(secrets=({INNER!r},)), "inner-secret-guard")
"""


def run(pytester: pytest.Pytester, body: str) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=f"import logging\nSECRET = {INNER!r}\n\n{body}")
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:asyncio")


def test_a_run_that_logs_no_secret_passes(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_quiet(caplog):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("httpx").info("HTTP Request: POST http://x/bot<token>/getMe")
    logging.getLogger("x").warning("masked: %s", SECRET[:3] + "...")
""",
    )
    assert result.ret == 0
    result.assert_outcomes(passed=1)
    assert "secrets in log output" not in result.stdout.str()


def test_a_run_that_logs_a_secret_fails_naming_the_test_and_the_logger(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
def test_leaks():
    logging.getLogger("httpx").warning("HTTP Request: POST http://x/bot%s/getMe", SECRET)

def test_clean():
    logging.getLogger("httpx").warning("nothing here")
""",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2)  # every test passed; the run fails all the same
    result.stdout.fnmatch_lines(
        [
            "*= secrets in log output =*",
            "1 log line(s) held a secret of tests/support/secrets.py; the run fails:",
            "  test_inner.py::test_leaks: logger 'httpx': secret inne… in "
            "'WARNING httpx: HTTP Request: POST http://x/bot<secret>/getMe'",
        ]
    )
    assert INNER not in result.stdout.str()  # the summary does not repeat it


@pytest.mark.parametrize(
    ("name", "body", "source"),
    [
        (
            "a traceback",
            """
    try:
        raise RuntimeError("bad " + SECRET)
    except RuntimeError:
        logging.getLogger("app").exception("failed")
""",
            "logger 'app'",
        ),
        (
            "an extra field",
            '    logging.getLogger("app").warning("fine", extra={"token": SECRET})\n',
            "logger 'app'",
        ),
        (
            "a URL-encoded copy",
            """
    from urllib.parse import quote
    logging.getLogger("app").warning("GET /bot%s", quote(SECRET, safe=""))
""",
            "logger 'app'",
        ),
        (
            "a logger that does not propagate to root",
            """
    quiet = logging.getLogger("private")
    quiet.propagate = False
    quiet.addHandler(logging.NullHandler())
    try:
        quiet.warning("token %s", SECRET)
    finally:
        quiet.propagate = True
""",
            "logger 'private'",
        ),
        (
            "root's handlers replaced (as pairwatch.logs.configure_logging does)",
            """
    saved = logging.root.handlers[:]
    logging.root.handlers[:] = [logging.NullHandler()]
    try:
        logging.getLogger("app").warning("token %s", SECRET)
    finally:
        logging.root.handlers[:] = saved
""",
            "logger 'app'",
        ),
        (
            "a level lowered by caplog, at DEBUG",
            """
    import pytest
    request.getfixturevalue("caplog").set_level(logging.DEBUG, logger="lib")
    logging.getLogger("lib").debug("token %s", SECRET)
""",
            "logger 'lib'",
        ),
        (
            "a daemon subprocess's stderr line",
            """
    from support.secrets import check_output
    check_output("INFO pairwatch: token " + SECRET + "\\n", "pairwatch run stderr")
""",
            "pairwatch run stderr",
        ),
        (
            "the stderr of a child process that inherits the test's",
            """
    import subprocess, sys
    code = "import sys; sys.stderr.write('child: ' + sys.argv[1] + '\\\\n')"
    subprocess.run([sys.executable, "-c", code, SECRET], check=True)
""",
            "captured stderr call (call)",
        ),
    ],
)
def test_the_guard_sees_a_secret_in(
    pytester: pytest.Pytester, name: str, body: str, source: str
) -> None:
    result = run(pytester, f"def test_leaks(request):\n{body}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, name
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"  test_inner.py::test_leaks: {source}: secret inne… in *"])


def test_a_secret_logged_on_purpose_is_not_counted(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
from support.secrets import logged_on_purpose

def test_shows_a_filter_is_gone():
    with logged_on_purpose():
        logging.getLogger("httpx").warning("after uninstall: %s", SECRET)
""",
    )
    assert result.ret == 0
    assert "secrets in log output" not in result.stdout.str()


def test_a_failing_run_keeps_its_status_and_still_lists_the_leak(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
def test_fails():
    logging.getLogger("app").error("token %s", SECRET)
    assert False
""",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["  test_inner.py::test_fails: logger 'app': secret inne… in *"])


def test_the_inner_guard_restores_logging_and_hands_back_to_the_session_s(
    pytester: pytest.Pytester,
) -> None:
    import logging

    from support import secrets

    before = logging.Logger.callHandlers
    outer = secrets._ACTIVE
    run(pytester, "def test_nothing():\n    pass\n")
    assert logging.Logger.callHandlers is before
    assert secrets._ACTIVE is outer


def test_the_suite_guards_every_secret_in_each_written_form() -> None:
    guard = SecretGuard()
    for secret in SECRETS:
        for form in forms(secret):
            guard.check(f"... {form} ...", "test")
    assert {leak.secret for leak in guard.leaks} == set(SECRETS)
    assert forms(TELEGRAM_TOKEN) == (TELEGRAM_TOKEN, TELEGRAM_TOKEN.replace(":", "%3A"))


@pytest.mark.slow
def test_a_real_pytest_process_with_the_suite_s_conftest_exits_1_on_a_logged_token(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest((TESTS / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(
        test_token=f"""
import logging

def test_logs_the_token():
    logging.getLogger("telegram.ext.Updater").warning("polling bot%s failed", {TELEGRAM_TOKEN!r})

def test_logs_nothing():
    logging.getLogger("telegram.ext.Updater").warning("polling bot<token> failed")
"""
    )
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:asyncio", "-q"]
    result = pytester.run(*command)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "  test_token.py::test_logs_the_token: logger 'telegram.ext.Updater': "
            "secret 1234… in 'WARNING telegram.ext.Updater: polling bot<secret> failed'",
            "*2 passed*",
        ]
    )
    assert TELEGRAM_TOKEN not in result.stdout.str()
    pytester.makepyfile(test_token="def test_quiet():\n    pass\n")
    assert pytester.run(*command).ret == 0
