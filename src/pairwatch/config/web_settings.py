"""Settings of the web page (Panel) and its extra routes (/healthz, /metrics)."""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from pairwatch.config.durations import PositiveDuration

_SECTION = ConfigDict(extra="forbid", frozen=True, validate_default=True)
_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)*")
_ORIGIN = re.compile(r"[A-Za-z0-9*][A-Za-z0-9.*-]*(:[0-9]{1,5})?")
"""What Bokeh's websocket origin check takes: ``host[:port]``, ``*`` wildcards."""

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Return whether ``host`` (a name or address) only listens on this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebSettings(BaseModel):
    """The web page: charts, statistics and exports, served by the daemon itself."""

    model_config = _SECTION

    enabled: bool = Field(default=True, description="Serve the web page and its routes.")
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description=(
            "Address to listen on. Anything but loopback needs web.password, or "
            "web.allow_remote_without_auth = true."
        ),
    )
    port: int = Field(
        default=5006, ge=0, le=65535, description="TCP port; 0 picks a free one (logged)."
    )
    prefix: str = Field(
        default="",
        description="URL prefix when served behind a reverse proxy, e.g. '/pairwatch'.",
    )
    password: SecretStr | None = Field(
        default=None,
        description=(
            "Password of the login page (any user name; secret: PAIRWATCH_WEB__PASSWORD or "
            "the credential web_password). Unset: no login."
        ),
    )
    cookie_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Signs the login cookie (secret: PAIRWATCH_WEB__COOKIE_SECRET or the credential "
            "web_cookie_secret). Unset: a random one per start (logins end at a restart)."
        ),
    )
    allow_remote_without_auth: bool = Field(
        default=False,
        description="Allow a non-loopback web.host without a password (e.g. behind an "
        "authenticating proxy).",
    )
    websocket_origins: tuple[str, ...] = Field(
        default=(),
        description=(
            "Extra host[:port] origins allowed to open the page's websocket (the public name "
            "of a reverse proxy); the listening address is always allowed, except an IPv6 "
            "one (open such a page by a name listed here)."
        ),
    )
    live_interval: PositiveDuration | None = Field(
        default=None,
        description="How often live mode looks for new bars; unset: the shown timeframe.",
    )

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        prefix = value.strip().rstrip("/")
        if prefix and not prefix.startswith("/"):
            prefix = "/" + prefix
        if not _PREFIX.fullmatch(prefix):
            raise ValueError(f"expected a URL path such as '/pairwatch', got {value!r}")
        return prefix

    @field_validator("websocket_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"expected a host name or address with an optional port, such as "
                    f"'monitor.example.com' or '10.0.0.5:443', got {origin!r} (the page's "
                    f"server cannot name an IPv6 address here: use a host name)"
                )
        return value

    @field_validator("password", "cookie_secret")
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty (unset it instead)")
        return value

    @model_validator(mode="after")
    def _remote_needs_auth(self) -> WebSettings:
        if (
            self.enabled
            and not is_loopback(self.host)
            and self.password is None
            and not self.allow_remote_without_auth
        ):
            raise ValueError(
                f"web.host {self.host!r} is reachable from other machines: set web.password, "
                "or web.allow_remote_without_auth = true if a proxy authenticates"
            )
        return self


WEB_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "web_password": ("web", "password"),
    "web_cookie_secret": ("web", "cookie_secret"),
}
"""Credential files (systemd ``LoadCredential=``) of the web page's secrets."""
