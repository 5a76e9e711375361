"""Web settings: loopback by default, a password for anything else, a clean URL prefix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pairwatch.config.web_settings import WebSettings, is_loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_remote_address_needs_a_password_or_an_explicit_opt_out() -> None:
    with pytest.raises(ValidationError, match=r"web.host '0.0.0.0' is reachable .* web.password"):
        WebSettings(host="0.0.0.0")
    assert WebSettings(host="0.0.0.0", password="s3cret").password is not None
    assert WebSettings(host="0.0.0.0", allow_remote_without_auth=True).host == "0.0.0.0"
    assert WebSettings(host="0.0.0.0", enabled=False).enabled is False


@pytest.mark.parametrize(
    ("given", "prefix"),
    [("", ""), ("/pairwatch", "/pairwatch"), ("pairwatch/", "/pairwatch"), ("/a/b-c", "/a/b-c")],
)
def test_the_prefix_is_normalised(given: str, prefix: str) -> None:
    assert WebSettings(prefix=given).prefix == prefix


@pytest.mark.parametrize("bad", ["/a b", "/a?x=1", "/a//b"])
def test_a_prefix_that_is_not_a_path_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="expected a URL path"):
        WebSettings(prefix=bad)


def test_secrets_never_show() -> None:
    web = WebSettings(password="hunter22", cookie_secret="c00kie")
    assert "hunter22" not in repr(web)
    assert "c00kie" not in str(web.model_dump())


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_password_is_refused_not_taken_as_no_login(blank: str) -> None:
    # An empty PAIRWATCH_WEB__PASSWORD or credential file must not turn the login off.
    with pytest.raises(ValidationError, match="must not be empty"):
        WebSettings(host="0.0.0.0", password=blank)
    with pytest.raises(ValidationError, match="must not be empty"):
        WebSettings(cookie_secret=blank)


def test_the_demo_moves_to_a_free_port_when_its_own_is_taken(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import socket

    from pairwatch.config.settings import Settings
    from pairwatch.daemon.demo import with_free_web_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings.model_validate({"web": {"port": port}})
        moved = with_free_web_port(settings)
    assert moved.web.port == 0  # the server then picks a free one and logs it
    assert f"port {port} is taken" in capsys.readouterr().out
    free = Settings.model_validate({"web": {"port": port}})
    assert with_free_web_port(free).web.port == port  # released: kept as configured
