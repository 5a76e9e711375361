"""Notification texts: pure functions of an outbox payload (no transport here)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def utc(ms: int) -> str:
    """Return epoch milliseconds as ``YYYY-MM-DD HH:MM:SS UTC``."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def plain_text(payload: Mapping[str, Any]) -> str:
    """Return a one-line text of an alert or notice payload (the log notifier's line)."""
    if payload.get("type") == "notice":
        return f"[{payload.get('severity', 'warning')}] {payload['title']}: {payload['text']}"
    event = payload["event"]
    where = event["target"]
    if event.get("timeframe"):
        where += f" {event['timeframe']}"
    if event.get("window") is not None:
        where += f" w{event['window']}"
    value = event.get("value")
    shown = "no data" if value is None or not math.isfinite(value) else f"{value:.6g}"
    return (
        f"[{event['severity']}] {event['kind']} {event['rule']} {where}: {event['message']} "
        f"({event['metric']} = {shown} vs {event.get('threshold')}, at {utc(event['at'])}, "
        f"key {event['key']})"
    )
