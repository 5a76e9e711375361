"""Where the page server listens and whom its websocket lets in."""

from __future__ import annotations

import pytest
from bokeh.server.util import check_allowlist, create_hosts_allowlist
from pydantic import ValidationError

from pairwatch.config.web_settings import WebSettings
from pairwatch.web.server import WebServer, origins


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", ["127.0.0.1:5006", "localhost:5006"]),
        ("::1", ["localhost:5006", "127.0.0.1:5006"]),
        ("localhost", ["localhost:5006", "127.0.0.1:5006"]),
    ],
)
def test_a_loopback_page_admits_the_loopback_names(host: str, allowed: list[str]) -> None:
    got = origins(WebSettings(host=host), 5006)
    assert got == allowed
    bokeh = create_hosts_allowlist(got, 5006)  # as the server takes them: no error
    assert all(check_allowlist(origin, bokeh) for origin in allowed)
    assert not check_allowlist("localhost:5007", bokeh)


def test_a_remote_page_admits_its_address_and_the_configured_origins() -> None:
    web = WebSettings(
        host="10.0.0.5",
        password="pw",
        websocket_origins=["monitor.example.com", "monitor.example.com:443", "*.example.org"],
    )
    got = origins(web, 8443)
    assert got == [
        "10.0.0.5:8443", "monitor.example.com", "monitor.example.com:443", "*.example.org"
    ]  # fmt: skip
    bokeh = create_hosts_allowlist(got, 8443)
    assert check_allowlist("10.0.0.5:8443", bokeh)
    assert check_allowlist("monitor.example.com:443", bokeh)
    assert not check_allowlist("10.0.0.6:8443", bokeh)


def test_an_ipv6_page_is_opened_by_a_name() -> None:
    web = WebSettings(host="2001:db8::5", password="pw", websocket_origins=["monitor.lan"])
    assert origins(web, 8443) == ["monitor.lan"]


@pytest.mark.parametrize("origin", ["[::1]:5006", "::1", "http://monitor.lan", "a b", ""])
def test_an_origin_bokeh_cannot_take_is_refused_in_the_settings(origin: str) -> None:
    with pytest.raises(ValidationError, match="expected a host name or address"):
        WebSettings(websocket_origins=[origin])


def test_an_ipv6_url_has_its_address_in_brackets() -> None:
    assert WebServer("::1", 5006, "/pw").url == "http://[::1]:5006/pw/"
    assert WebServer("127.0.0.1", 5006, "").url == "http://127.0.0.1:5006/"
