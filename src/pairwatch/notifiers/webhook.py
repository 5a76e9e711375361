"""The webhook notifier: every notification as a JSON POST, optionally HMAC-signed.

The body is the outbox payload (``{"type": "alert", "event": {…, "key": …}}`` or a notice)
with ``"key"`` at the top level too; headers carry the idempotency key
(``X-Pairwatch-Key``) and, with a secret, ``X-Pairwatch-Signature: sha256=<hex>`` — the
HMAC-SHA256 of the exact body bytes. A 2xx answer is a delivery; 429 and 5xx answers,
timeouts and connection errors are retried by the outbox (429's ``Retry-After`` is
honoured); any other answer (a 4xx: the receiver refuses it) gives the notification up.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from typing import Any

import httpx

from pairwatch import __version__
from pairwatch.config.notifier_settings import WebhookSettings
from pairwatch.daemon.alert_rows import OutboxItem
from pairwatch.notifiers.outbox import DeliveryError

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Pairwatch-Signature"
KEY_HEADER = "X-Pairwatch-Key"


def body_of(item: OutboxItem) -> bytes:
    """Return the JSON body POSTed for ``item`` (compact, keys in a stable order)."""
    data: dict[str, Any] = {"key": item.key, **item.payload}
    return json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def signature(secret: str, body: bytes) -> str:
    """Return the ``X-Pairwatch-Signature`` value of ``body``: ``sha256=<hex HMAC>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookNotifier:
    """POST notifications to ``settings.url`` (or a route's ``url``)."""

    name = "webhook"

    def __init__(self, settings: WebhookSettings, client: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._secret = settings.secret.get_secret_value() if settings.secret else None
        self._client = client or httpx.AsyncClient(
            timeout=settings.timeout.total_seconds(),
            headers={"User-Agent": f"pairwatch/{__version__}"},
            follow_redirects=False,
        )

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def deliver(self, item: OutboxItem) -> None:
        """POST one notification; raise ``DeliveryError`` unless the answer is 2xx."""
        url = item.route.get("url") or self._settings.url
        if not url:
            raise DeliveryError("no webhook URL configured", permanent=True)
        body = body_of(item)
        headers = {"Content-Type": "application/json", KEY_HEADER: item.key}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        try:
            # The whole request within the timeout (a receiver trickling bytes cannot hold
            # the worker), and the answer's body is never read: only its status matters.
            async with asyncio.timeout(self._settings.timeout.total_seconds()):
                async with self._client.stream("POST", url, content=body, headers=headers) as r:
                    status, retry = r.status_code, r.headers.get("Retry-After")
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise DeliveryError(f"bad webhook URL: {exc}", permanent=True) from None
        except TimeoutError:
            raise DeliveryError("timed out") from None
        except httpx.HTTPError as exc:  # refused connections, broken answers
            raise DeliveryError(f"{type(exc).__name__}: {exc or 'no detail'}") from None
        if 200 <= status < 300:
            return
        reason = f"HTTP {status} from {_host(url)}"
        if status == 429 or status >= 500:
            raise DeliveryError(reason, retry_after=_retry_after(retry))
        raise DeliveryError(reason, permanent=True)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # an HTTP date: use the outbox's own backoff


def _host(url: str) -> str:
    return httpx.URL(url).host or url
