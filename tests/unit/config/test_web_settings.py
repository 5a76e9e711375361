"""Web settings: loopback by default, a password for anything else, a clean URL prefix."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pairwatch.config.web_settings import WebSettings, is_loopback
from support.secrets import SETTINGS_COOKIE_SECRET, SETTINGS_WEB_PASSWORD


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
    web = WebSettings(password=SETTINGS_WEB_PASSWORD, cookie_secret=SETTINGS_COOKIE_SECRET)
    assert SETTINGS_WEB_PASSWORD not in repr(web)
    assert SETTINGS_COOKIE_SECRET not in str(web.model_dump())


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


def test_the_default_host_is_loopback() -> None:
    from pairwatch.config.settings import Settings

    assert WebSettings().host == "127.0.0.1"
    assert Settings().web.host == "127.0.0.1"
    assert WebSettings().allow_remote_without_auth is False


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "0", " ", "192.168.1.5", "::ffff:127.0.0.1"])
def test_every_address_that_listens_beyond_this_machine_needs_a_password(host: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WebSettings(host=host)
    assert f"web.host {host!r} is reachable from other machines: set web.password" in str(
        caught.value
    )
    assert WebSettings(host=host, password="s3cret").host == host


def test_an_empty_host_which_would_mean_every_interface_is_refused_even_with_a_password() -> None:
    # An empty host makes Tornado listen on every interface: it is refused outright.
    for password in (None, "s3cret"):
        with pytest.raises(ValidationError, match="at least 1 character"):
            WebSettings(host="", password=password)


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_remote_host_from_the_environment_is_refused_naming_the_variable(host: str) -> None:
    from pairwatch.config.load import load_settings
    from pairwatch.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"PAIRWATCH_WEB__HOST": host})
    assert str(caught.value) == (
        f"PAIRWATCH_WEB__HOST: web: web.host {host!r} is reachable from other machines: "
        "set web.password, or web.allow_remote_without_auth = true if a proxy authenticates"
    )


def test_an_empty_host_from_the_environment_is_refused() -> None:
    from pairwatch.config.load import load_settings
    from pairwatch.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"PAIRWATCH_WEB__HOST": ""})
    assert str(caught.value) == (
        "PAIRWATCH_WEB__HOST: web.host: string should have at least 1 character (got '')"
    )


def test_a_remote_host_from_the_environment_binds_with_a_password_or_the_opt_out() -> None:
    from pairwatch.config.load import load_settings

    with_password = load_settings(
        environ={"PAIRWATCH_WEB__HOST": "0.0.0.0", "PAIRWATCH_WEB__PASSWORD": "s3cret"}
    )
    assert with_password.web.host == "0.0.0.0"
    opted_out = load_settings(
        environ={"PAIRWATCH_WEB__HOST": "::", "PAIRWATCH_WEB__ALLOW_REMOTE_WITHOUT_AUTH": "true"}
    )
    assert opted_out.web.host == "::"
    assert opted_out.web.password is None


def test_a_remote_host_in_the_config_file_is_refused_at_its_line(tmp_path: Path) -> None:
    from pairwatch.config.load import load_settings
    from pairwatch.errors import ConfigError

    config = tmp_path / "pairwatch.toml"
    config.write_text('[web]\nport = 8080\nhost = "0.0.0.0"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    assert str(caught.value).startswith(f"{config}:1: web: web.host '0.0.0.0' is reachable")
