"""The page's pure parts: its HTML (statistics card, health strip, alert table), values
formatted for it, the alert filter and the choices a URL names."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlencode

import pandas as pd

from pairwatch.notifiers.formatting import utc
from pairwatch.series import SeriesKey
from pairwatch.web import data
from pairwatch.web.health import FeedHealth

FILTERED: Final = ("rule", "target", "timeframe", "kind", "severity", "message")
"""Alert table columns the filter box searches (case-insensitive substring)."""
TABLE_ROWS: Final = 200
"""Most alert rows shown (the newest)."""


def fmt_time(ms: int | None) -> str:
    return "–" if ms is None else utc(ms)


def fmt_value(value: float) -> str:
    return "–" if value != value else f"{value:.4g}"  # noqa: PLR0124 -- NaN test


def stats_html(key: SeriesKey, stats: data.Stats | None) -> str:
    """Return the statistics card's HTML (every value escaped)."""
    if stats is None:
        return "<p class='pw-empty'>No statistics for this series yet.</p>"
    v = stats.values
    rows = [
        ("β (OLS)", fmt_value(v["hedge_ratio"])),
        ("α", fmt_value(v["intercept"])),
        ("z-score", fmt_value(v["zscore"])),
        ("correlation", fmt_value(v["correlation"])),
        ("half-life (bars)", fmt_value(v["half_life"])),
        ("β (Kalman)", fmt_value(v["kalman_beta"])),
        ("ADF statistic", fmt_value(v["adf_stat"])),
        ("ADF p-value", fmt_value(v["adf_pvalue"])),
        ("cointegration p-value", fmt_value(v["coint_pvalue"])),
    ]
    cells = "".join(
        f"<tr><th>{html.escape(name)}</th><td class='pw-stat'>{html.escape(value)}</td></tr>"
        for name, value in rows
    )
    return (
        f"<h3>{html.escape(key.pair)} · {html.escape(key.timeframe)} · window {key.window}</h3>"
        f"<table class='pw-stats'>{cells}</table>"
        f"<p>metrics at {html.escape(fmt_time(stats.ts))}; ADF/cointegration at "
        f"{html.escape(fmt_time(stats.adf_at))}</p>"
        f"<p class='pw-verdict'><b>{html.escape(data.verdict(stats))}</b></p>"
    )


def health_html(health: FeedHealth | None) -> str:
    if health is None:
        return "<span class='pw-health'>feed health: not served by a running daemon</span>"
    state = "connected" if health.connected else "DISCONNECTED"
    color = "#2ca02c" if health.connected else "#d62728"
    return (
        f"<span class='pw-health' style='color:{color}'>● feed {state}</span> · "
        f"lag {fmt_value(health.lag_ms)} ms · {health.trades_per_s:.0f} trades/s · "
        f"{health.gaps} gaps {html.escape(health.detail)}"
    )


def url_choices(args: Mapping[str, Any] | None) -> dict[str, str]:
    """Return the page's choices from its URL query (``?pair=ETHUSDT/BTCUSDT&timeframe=1m
    &window=30&range=7 d``): a link opens the page on that series and range."""
    out: dict[str, str] = {}
    for name in ("pair", "timeframe", "window", "range"):
        values = (args or {}).get(name) or []
        if values:
            raw = values[0]
            out[name] = (
                raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            ).strip()
    return out


def filter_alerts(table: pd.DataFrame, text: str | None) -> pd.DataFrame:
    """Return the rows of ``table`` with ``text`` in any ``FILTERED`` column (any case)."""
    needle = (text or "").strip().lower()
    if not needle or table.empty:
        return table
    hit = pd.Series(False, index=table.index)
    for column in FILTERED:
        hit |= table[column].astype(str).str.lower().str.contains(needle, regex=False)
    return table[hit]


def alerts_html(table: pd.DataFrame) -> str:
    """Return the alert table's HTML: newest first, every cell escaped."""
    if table.empty:
        return "<p class='pw-empty'>No alerts.</p>"
    head = "".join(
        f"<th>{name}</th>"
        for name in ("time (UTC)", "rule", "target", "tf", "window", "kind", "severity", "value",
                     "threshold", "message")
    )  # fmt: skip
    body = []
    for row in table.head(TABLE_ROWS).itertuples(index=False):
        cells = (
            fmt_time(int(row.at)), row.rule, row.target, row.timeframe or "", row.window or "",
            row.kind, row.severity, fmt_value(float(row.value)), fmt_value(float(row.threshold)),
            row.message,
        )  # fmt: skip
        body.append(
            f"<tr class='pw-kind-{html.escape(str(row.kind))}'>"
            + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
            + "</tr>"
        )
    more = (
        f"<p>{len(table) - TABLE_ROWS:,} older alerts not shown.</p>"
        if len(table) > TABLE_ROWS
        else ""
    )
    return f"<table class='pw-alert-table'><tr>{head}</tr>{''.join(body)}</table>{more}"


def status_html(key: SeriesKey, rows: int, first: int | None, last: int | None) -> str:
    """Say what is drawn: the series, its bar count and time span (UTC)."""
    span = f", {fmt_time(first)} – {fmt_time(last)}" if rows else ""
    return (
        f"<span class='pw-shown' data-rows='{rows}'>{html.escape(key.pair)} · "
        f"{html.escape(key.timeframe)} · window {key.window}: {rows:,} bars"
        f"{html.escape(span)}</span>"
    )


def download_links(prefix: str, key: SeriesKey, start: int | None, end: int | None) -> str:
    """The export route's links (CSV, Parquet) for ``key`` over [start, end)."""
    query: dict[str, Any] = {
        "y": key.y, "x": key.x, "timeframe": key.timeframe, "window": key.window,
    }  # fmt: skip
    if start is not None:
        query["from"] = start
    if end is not None:
        query["to"] = end
    links = []
    for kind, label in (("csv", "CSV"), ("parquet", "Parquet")):
        href = f"{prefix}/export?{urlencode({**query, 'format': kind})}"
        name = f"{key.y}-{key.x}-{key.timeframe}-w{key.window}.{kind}"
        links.append(
            f"<a class='pw-download pw-{kind}' href='{html.escape(href)}' "
            f"download='{html.escape(name)}'>⬇ {label}</a>"
        )
    return "Export the range: " + " · ".join(links)


def epoch_ms(value: Any) -> int | None:
    """A picker's date-time (naive: UTC) as epoch ms; None stays None."""
    if value is None:
        return None
    moment = pd.Timestamp(value)
    if moment.tzinfo is None:
        moment = moment.tz_localize("UTC")
    return int(moment.timestamp() * 1000)
