"""Telegram texts in HTML parse mode: pure functions of events and daemon views.

Everything that comes from users, rules or the market is escaped here (with
``telegram_html``); the transport (``telegram.py``) only sends what these functions return.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pairwatch.daemon.alert_rows import event_from_payload
from pairwatch.events import AlertEvent, PairSnapshot
from pairwatch.notifiers.formatting import utc
from pairwatch.notifiers.telegram_backend import (
    AlertInfo,
    BotStatus,
    PairInfo,
    RuleInfo,
    StoreStatus,
)
from pairwatch.notifiers.telegram_html import MAX_CAPTION, escape, split_html


@dataclass(frozen=True, slots=True)
class Command:
    """A bot command: its name, argument synopsis and one-line description."""

    name: str
    args: str
    summary: str


COMMANDS: tuple[Command, ...] = (
    Command("help", "", "the commands"),
    Command("status", "", "feeds, lag, rates, reconnects, gaps, store, queues, uptime"),
    Command("pairs", "", "the pairs watched"),
    Command("z", "<y> <x> [tf]", "latest snapshot of every metric"),
    Command("chart", "<y> <x> [tf] [window]", "price, spread and z-score chart"),
    Command("alerts", "", "alerts firing and pending"),
    Command("rules", "", "the alert rules"),
    Command("mute", "<rule|all> <duration>", "silence a rule's alerts, e.g. 30m"),
    Command("unmute", "<rule|all>", "end a rule's silences"),
)
"""Every command the bot answers, in ``/help`` order."""


# --- numbers and times ---------------------------------------------------------------------


def number(value: float | None, metric: str = "") -> str:
    """Return a metric value for people: signed z-scores, short p-values, ``n/a`` for NaN."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if "zscore" in metric:
        return f"{value:+.2f}"
    if "pvalue" in metric:
        return f"{value:.3g}" if value >= 1e-4 else f"{value:.1e}"
    if abs(value) >= 1000:
        return f"{value:,.2f}"
    return f"{value:.4g}"


def duration(seconds: float) -> str:
    """Return a duration as ``45s``, ``12m``, ``3h05m`` or ``2d4h``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m" if s % 60 == 0 or s >= 600 else f"{s // 60}m{s % 60:02d}s"
    if s < 86_400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86_400}d{s % 86_400 // 3600}h"


def _where(target: str, timeframe: str | None, window: int | None) -> str:
    parts = [f"<b>{escape(target)}</b>"]
    if timeframe:
        parts.append(escape(timeframe))
    if window is not None:
        parts.append(f"window {window}")
    return " · ".join(parts)


# --- notifications -------------------------------------------------------------------------

_SEVERITY = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
_KINDS = {
    "firing": "FIRING",
    "repeat": "STILL FIRING",
    "resolved": "RESOLVED",
    "pending": "PENDING",
    "no_data": "NO DATA",
    "data": "DATA BACK",
    "inactive": "INACTIVE",
}
_MARKS = {"resolved": "✅", "data": "✅", "pending": "⏳", "no_data": "❔", "inactive": "⚪"}
_CONTEXT = (
    ("hedge_ratio", "β"),
    ("kalman_beta", "Kalman β"),
    ("correlation", "ρ"),
    ("half_life", "half-life"),
    ("adf_pvalue", "ADF p"),
    ("coint_pvalue", "coint p"),
)


def alert_html(event: AlertEvent, *, since: int | None = None) -> str:
    """Return an alert event as an HTML message.

    ``since`` (epoch ms), when known, is when the firing began: a resolved alert then
    says how long it fired.
    """
    mark = _MARKS.get(event.kind) or _SEVERITY.get(event.severity, "⚠️")
    state = _KINDS.get(event.kind, event.kind.upper())
    head = f"{mark} <b>{escape(state)}</b> · <b>{escape(event.rule)}</b> · {escape(event.severity)}"
    if since is not None and event.kind in ("resolved", "repeat", "data"):
        head += f" · after {duration((event.at - since) / 1000)}"
    lines = [head, _where(event.target, event.timeframe, event.window)]
    value = f"{escape(event.metric)} <b>{number(event.value, event.metric)}</b>"
    if math.isfinite(event.threshold):
        value += f" · threshold {number(event.threshold, event.metric)}"
    lines.append(value)
    context = [
        f"{label} {number(event.values[name], name)}"
        for name, label in _CONTEXT
        if name != event.metric and name in event.values and math.isfinite(event.values[name])
    ]
    if context:
        lines.append(" · ".join(context))
    if event.message.strip():
        lines.append(f"<i>{escape(event.message.strip())}</i>")
    footer = utc(event.at)
    if event.labels:
        footer += " · " + " ".join(f"{escape(k)}={escape(v)}" for k, v in event.labels.items())
    lines.append(footer)
    return "\n".join(lines)


def notice_html(title: str, text: str, severity: str = "warning") -> str:
    """Return a daemon notice (e.g. a failed rules reload) as an HTML message."""
    mark = _SEVERITY.get(severity, "⚠️")
    body = text.strip()
    if "\n" in body:
        return f"{mark} <b>{escape(title)}</b>\n<pre>{escape(body)}</pre>"
    return f"{mark} <b>{escape(title)}</b>\n{escape(body)}"


@dataclass(frozen=True, slots=True)
class Message:
    """An outbox payload as Telegram messages: the HTML parts and the severity."""

    parts: tuple[str, ...]
    severity: str


def payload_message(payload: Mapping[str, object]) -> Message:
    """Return an outbox payload (alert or notice) as its messages.

    Raises ``ValueError`` for a payload of an unknown type.
    """
    if payload.get("type") == "notice":
        severity = str(payload.get("severity") or "warning")
        text = notice_html(str(payload.get("title", "")), str(payload.get("text", "")), severity)
    elif payload.get("type") == "alert":
        event = event_from_payload(payload)
        raw = payload.get("event")
        since = raw.get("since") if isinstance(raw, Mapping) else None
        text = alert_html(event, since=since if isinstance(since, int) else None)
        severity = event.severity
    else:
        raise ValueError(f"unknown payload type {payload.get('type')!r}")
    return Message(tuple(split_html(text)), severity)


# --- command replies -----------------------------------------------------------------------


def help_html() -> str:
    """Return the ``/help`` text."""
    lines = ["<b>pairwatch</b> commands:"]
    lines += [
        f"/{c.name}{' ' + escape(c.args) if c.args else ''} — {escape(c.summary)}" for c in COMMANDS
    ]
    lines.append(
        "Durations: 30s, 15m, 2h, 1d. Pairs: <code>ETHUSDT BTCUSDT</code> or "
        "<code>ETHUSDT/BTCUSDT</code>."
    )
    return "\n".join(lines)


def usage_html(name: str, problem: str = "") -> str:
    """Return the usage line of command ``name``, after what was wrong with its arguments."""
    command = next((c for c in COMMANDS if c.name == name), None)
    synopsis = f"/{name} {command.args}".rstrip() if command else f"/{name}"
    text = f"Usage: <code>{escape(synopsis)}</code>"
    if command is not None:
        text += f" — {escape(command.summary)}"
    return f"{escape(problem)}\n{text}" if problem else text


def unknown_command_html(name: str) -> str:
    """Return the reply to a command the bot does not know."""
    return f"Unknown command /{escape(name)}. /help lists the commands."


def status_html(status: BotStatus) -> str:
    """Return the ``/status`` text."""
    p50, p99, worst = status.lag_ms
    lines = [
        f"<b>pairwatch {escape(status.version)}</b> · up {duration(status.uptime_s)}"
        f" · {escape(status.source)}",
        f"Feed: {status.connections_open} open · {status.reconnects} reconnects · "
        f"{status.gaps} gaps ({status.missed_ids} ids missed)",
        f"Trades {status.trades_per_s:.1f}/s · bars closed {status.bars_closed:,}",
        f"Lag p50 {_ms(p50)} · p99 {_ms(p99)} · max {_ms(worst)}",
    ]
    if status.store is not None:
        lines += store_lines(status.store)
    if status.feeds:
        width = max(len(f.symbol) for f in status.feeds)
        rows = [
            f"{escape(f.symbol.ljust(width))}  {number(f.price):>12}  "
            f"{f.trades_per_s:6.1f}/s  "
            + ("never" if f.last_trade_age_s is None else f"{duration(f.last_trade_age_s)} ago")
            for f in status.feeds
        ]
        lines.append("<pre>" + "\n".join(rows) + "</pre>")
    for title, counts in (
        ("Queues", status.queues),
        ("Outbox", status.outbox),
        ("Rejected", status.rejected),
    ):
        if counts:
            lines.append(f"{title}: " + " · ".join(f"{escape(k)} {v:,}" for k, v in counts.items()))
    return "\n".join(lines)


def store_lines(store: StoreStatus) -> list[str]:
    """Return the ``/status`` lines of the store: OK and its size, or failing and since when."""
    if store.healthy:
        line = "Store: OK"
        if store.size_bytes is not None:
            line += f" · {size(store.size_bytes)}"
            if store.max_size is not None:
                line += f" of {size(store.max_size)} max"
        if store.queued_rows:
            line += f" · {store.queued_rows:,} rows waiting"
        return [line]
    if store.failing_since is None:
        head = "⚠️ Store: <b>STOPPED</b>: nothing is written any more"
    else:
        head = "⚠️ Store: <b>FAILING</b>"
        if store.failing_for_s is not None:
            head += f" for {duration(store.failing_for_s)}"
        head += f" (since {utc(store.failing_since)})"
    head += f" · {store.queued_rows:,} rows waiting in memory"
    lines = [head]
    if store.last_error:
        lines.append(f"Last error: <code>{escape(store.last_error)}</code>")
    if store.size_bytes is not None:
        cap = "" if store.max_size is None else f" (max {size(store.max_size)})"
        lines.append(f"Database file {size(store.size_bytes)}{cap}")
    return lines


def size(n: int) -> str:
    """Return a byte count in decimal units, three digits: ``512 B``, ``3.4 MB``, ``2 GB``."""
    if n < 1000:
        return f"{n} B"
    value = n / 1000
    for unit in ("kB", "MB", "GB"):
        if float(f"{value:.3g}") < 1000:
            return f"{value:.3g} {unit}"
        value /= 1000
    return f"{value:,.3g} TB" if value < 1000 else f"{value:,.0f} TB"


def _ms(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:,.0f} ms"


def pairs_html(pairs: Sequence[PairInfo]) -> str:
    """Return the ``/pairs`` text."""
    if not pairs:
        return "No pairs are configured."
    lines = [f"<b>Pairs</b> ({len(pairs)})"]
    for p in pairs:
        tfs = ", ".join(escape(tf) for tf in p.timeframes)
        windows = ", ".join(str(w) for w in p.windows)
        lines.append(f"• <code>{escape(p.y)} {escape(p.x)}</code> · {tfs} · windows {windows}")
    return "\n".join(lines)


def snapshots_html(snapshots: Sequence[PairSnapshot]) -> str:
    """Return the ``/z`` text: every metric of the latest snapshot of each window."""
    if not snapshots:
        return "No snapshot yet: the pair's analytics are still warming up."
    first = snapshots[0]
    lines = [f"<b>{escape(first.pair)}</b> · {escape(first.timeframe)}"]
    for snap in snapshots:
        head = f"<b>window {snap.window}</b> · bar {utc(snap.ts)}"
        if snap.thin:
            lines.append(f"{head}\nthin bar (too few trades): no metrics")
            continue
        width = max((len(name) for name in snap.metrics), default=0)
        rows = [
            f"{escape(name.ljust(width))}  {number(value, name)}"
            for name, value in snap.metrics.items()
        ]
        lines.append(head + "\n<pre>" + "\n".join(rows) + "</pre>")
        if snap.adf_at is not None:
            lines.append(f"ADF/coint computed {utc(snap.adf_at)}")
    return "\n".join(lines)


def chart_caption(y: str, x: str, timeframe: str | None, window: int | None) -> str:
    """Return the caption of a ``/chart`` photo."""
    return _where(f"{y}/{x}", timeframe, window)[:MAX_CAPTION]


def alerts_html(alerts: Sequence[AlertInfo], now: int) -> str:
    """Return the ``/alerts`` text: firing alerts first, then pending ones."""
    if not alerts:
        return "No alerts firing or pending."
    firing = [a for a in alerts if a.phase == "firing"]
    pending = [a for a in alerts if a.phase != "firing"]
    lines = [f"<b>Alerts</b>: {len(firing)} firing, {len(pending)} pending"]
    for a in (*firing, *pending):
        mark = _SEVERITY.get(a.severity, "⚠️") if a.phase == "firing" else _MARKS["pending"]
        line = f"{mark} <b>{escape(a.rule)}</b> {_where(a.target, a.timeframe, a.window)}"
        line += f" · {escape(a.phase)}"
        if a.since is not None:
            line += f" {duration((now - a.since) / 1000)}"
        line += f" · {escape(a.metric)} {number(a.value, a.metric)}"
        if math.isfinite(a.threshold):
            line += f" (threshold {number(a.threshold, a.metric)})"
        if a.muted:
            line += " · 🔇 muted"
        lines.append(line)
    return "\n".join(lines)


def rules_html(rules: Sequence[RuleInfo], now: int) -> str:
    """Return the ``/rules`` text."""
    if not rules:
        return "No rules are loaded."
    lines = [f"<b>Rules</b> ({len(rules)})"]
    for r in rules:
        where = escape(r.targets)
        if r.timeframe:
            where += f" {escape(r.timeframe)}"
        if r.window is not None:
            where += f" w{r.window}"
        line = f"• <b>{escape(r.name)}</b> · {escape(r.severity)} · {where}"
        line += f" · <code>{escape(r.when)}</code>"
        if r.firing:
            line += f" · {r.firing} firing"
        if r.muted_until is not None and r.muted_until > now:
            line += f" · 🔇 muted {duration((r.muted_until - now) / 1000)}"
        lines.append(line)
    return "\n".join(lines)
