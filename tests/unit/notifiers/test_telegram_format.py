"""Telegram texts: escaping, safe splitting, alert and notice messages, command replies.

Every text is also checked the way Telegram parses HTML (``support.botapi.check_html``).
"""

from __future__ import annotations

import html
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairwatch.daemon.alert_rows import alert_event_payload, notice_payload
from pairwatch.events import AlertEvent, PairSnapshot
from pairwatch.notifiers.telegram_backend import (
    AlertInfo,
    BotStatus,
    FeedStatus,
    PairInfo,
    RuleInfo,
)
from pairwatch.notifiers.telegram_format import (
    COMMANDS,
    alert_html,
    alerts_html,
    duration,
    help_html,
    notice_html,
    number,
    pairs_html,
    payload_message,
    rules_html,
    snapshots_html,
    status_html,
    usage_html,
)
from pairwatch.notifiers.telegram_html import (
    escape,
    plain_text,
    split_html,
)
from support.botapi import check_html

T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC


def event(**changes: object) -> AlertEvent:
    fields: dict[str, object] = {
        "rule": "ethbtc-z", "target": "ETHUSDT/BTCUSDT", "timeframe": "1m", "window": 30,
        "kind": "firing", "at": T0, "severity": "warning", "metric": "zscore", "value": 2.4127,
        "threshold": 2.0, "message": "ETH/BTC z = +2.41 ≥ 2.0 for 3 bars",
        "values": {"zscore": 2.4127, "hedge_ratio": 0.05312, "correlation": 0.8712,
                   "adf_pvalue": 0.0123, "coint_pvalue": 0.0345, "spread": 0.001},
        "labels": {"desk": "crypto"}, "notify": True,
    }  # fmt: skip
    fields.update(changes)
    return AlertEvent(**fields)  # type: ignore[arg-type]


def plain(fragment: str) -> str:
    """Return the text Telegram shows for an HTML fragment."""
    return html.unescape(re.sub(r"<[^<>]*>", "", fragment))


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# --- escaping and splitting -------------------------------------------------------------


def test_escape_makes_user_text_inert() -> None:
    assert escape("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    assert escape('<a href="x">') == '&lt;a href="x"&gt;'
    assert check_html(escape("<b>not bold</b> & <script>")) is None


def test_a_short_text_is_one_message() -> None:
    assert split_html("<b>hi</b> there") == ["<b>hi</b> there"]


def test_long_lines_are_cut_at_line_breaks_within_the_limit() -> None:
    lines = [f"line {n:04d} " + "x" * 80 for n in range(200)]
    parts = split_html("\n".join(lines), limit=1000)
    assert len(parts) > 10
    assert all(len(p) <= 1000 for p in parts)
    assert "\n".join(parts).split("\n") == lines  # cut only between lines, nothing lost


def test_open_tags_are_closed_and_reopened_across_a_cut() -> None:
    body = "\n".join(f"row {n} &amp; more" for n in range(300))
    parts = split_html(f"<b>head</b>\n<pre>{body}</pre>\ntail", limit=600)
    assert len(parts) > 3
    for part in parts:
        assert check_html(part) is None, part
        assert len(part) <= 600
    assert all(p.startswith("<pre>") for p in parts[1:-1])
    assert all(p.endswith("</pre>") for p in parts[:-1])
    assert plain("".join(parts)).replace("\n", "") == plain(f"head{body}tail").replace("\n", "")


def test_a_word_longer_than_a_message_is_cut_between_entities_never_inside() -> None:
    text = "&amp;&lt;" * 1000 + "é" * 3000  # no space, no line break
    parts = split_html(text, limit=1000)
    assert all(check_html(p) is None for p in parts)
    assert all(len(p) <= 1000 for p in parts)
    assert "".join(plain(p) for p in parts) == plain(text)


def test_lengths_count_utf16_units_like_telegram() -> None:
    text = " ".join(["🚀🚀🚀🚀"] * 600)  # each rocket is two UTF-16 units
    parts = split_html(text)
    assert len(parts) > 1
    assert all(utf16(p) <= 4096 for p in parts)
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")


def test_a_limit_too_small_to_split_safely_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        split_html("x", limit=100)


_WORD = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
    min_size=1, max_size=90,
)  # fmt: skip


@st.composite
def html_texts(draw: st.DrawFn, depth: int = 0) -> str:
    pieces = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["word", "word", "space", "line", "tag"] if depth < 3
                                    else ["word", "space", "line"]))  # fmt: skip
        if kind == "word":
            pieces.append(escape(draw(_WORD)))
        elif kind == "space":
            pieces.append(" ")
        elif kind == "line":
            pieces.append("\n")
        else:
            tag = draw(
                st.sampled_from(["b", "i", "code", "pre", 'a href="https://x.org/?a=1&amp;b=2"'])
            )
            name = tag.split()[0]
            pieces.append(f"<{tag}>{draw(html_texts(depth + 1))}</{name}>")
    return "".join(pieces)


@settings(max_examples=150, deadline=None)
@given(st.lists(html_texts(), min_size=1, max_size=30), st.sampled_from([256, 300, 700, 4096]))
def test_every_part_is_valid_html_within_the_limit_and_nothing_is_lost(
    blocks: list[str], limit: int
) -> None:
    text = "\n".join(blocks)
    if not plain(text).strip():
        return
    parts = split_html(text, limit)
    for part in parts:
        assert utf16(part) <= limit, part
        assert check_html(part) is None, part
    squeeze = re.compile(r"\s+")
    assert squeeze.sub("", "".join(plain(p) for p in parts)) == squeeze.sub("", plain(text))


_SCRAPS = st.lists(
    st.sampled_from(["<b>", "</b>", "<i>", "</i>", '<a href="y">', "</a>", "<", ">", "&",
                     "&amp;", "&#8805;", " ", "\n", "\t", "x", "é", "🚀", "word"]),
    max_size=60,
).map("".join)  # fmt: skip
"""Texts with stray ``<`` and ``&``, unclosed and unopened tags, blanks only."""


@settings(max_examples=300, deadline=None)
@given(st.one_of(html_texts(), _SCRAPS), st.integers(0, 2))
def test_a_text_within_a_third_of_the_limit_comes_back_as_the_full_split_has_it(
    text: str, slack: int
) -> None:
    from pairwatch.notifiers.telegram_html import _split

    limit = max(3 * utf16(text) + slack, 256)
    assert split_html(text, limit) == _split(text, limit)


# --- the plain-text fallback ------------------------------------------------------------


def test_plain_text_drops_the_tags_and_unescapes_the_entities() -> None:
    text = (
        '🟠 <b>FIRING</b> · <a href="https://x.org/?a=1&amp;b=2">log</a>\n'
        "<pre>a &lt; b &amp;&amp; c</pre> <i>&lt;rising&gt;</i> &#8805; 2"
    )
    assert plain_text(text) == "🟠 FIRING · log\na < b && c <rising> ≥ 2"


def test_plain_text_keeps_what_only_looks_like_markup() -> None:
    assert plain_text("x < 5 and y > 3, <3 & <> done") == "x < 5 and y > 3, <3 & <> done"


@settings(max_examples=100, deadline=None)
@given(html_texts())
def test_plain_text_is_the_text_telegram_would_show(text: str) -> None:
    assert plain_text(text) == plain(text)
    assert utf16(plain_text(text)) <= utf16(text)


@given(st.text())
def test_plain_text_of_escaped_text_is_the_text_itself(text: str) -> None:
    assert plain_text(escape(text)) == text


# --- numbers and durations --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "metric", "shown"),
    [
        (2.4127, "zscore", "+2.41"),
        (-0.5, "kalman_zscore", "-0.50"),
        (0.0123, "adf_pvalue", "0.0123"),
        (0.00001234, "coint_pvalue", "1.2e-05"),
        (0.053123, "hedge_ratio", "0.05312"),
        (60123.456, "", "60,123.46"),
        (math.nan, "zscore", "n/a"),
        (None, "", "n/a"),
    ],
)
def test_numbers_are_shown_per_metric(value: float | None, metric: str, shown: str) -> None:
    assert number(value, metric) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (45.4, "45s"), (90, "1m30s"), (720, "12m"), (3725, "1h02m"), (183_600, "2d3h")],
)
def test_durations_are_short(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


# --- notifications ----------------------------------------------------------------------


def test_a_firing_alert_shows_rule_target_value_threshold_context_and_time() -> None:
    text = alert_html(event())
    assert text.splitlines() == [
        "🟠 <b>FIRING</b> · <b>ethbtc-z</b> · warning",
        "<b>ETHUSDT/BTCUSDT</b> · 1m · window 30",
        "zscore <b>+2.41</b> · threshold +2.00",
        "β 0.05312 · ρ 0.8712 · ADF p 0.0123 · coint p 0.0345",
        "<i>ETH/BTC z = +2.41 ≥ 2.0 for 3 bars</i>",
        "2023-11-14 22:13:20 UTC · desk=crypto",
    ]
    assert check_html(text) is None


def test_everything_user_provided_in_an_alert_is_escaped() -> None:
    text = alert_html(
        event(
            rule="a<b>",
            target="X&Y",
            timeframe="<tf>",
            message="<script>alert(1)</script>",
            labels={"<k>": "v&w"},
        )
    )
    assert check_html(text) is None
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b>a&lt;b&gt;</b>" in text
    assert "<b>X&amp;Y</b> · &lt;tf&gt;" in text
    assert "&lt;k&gt;=v&amp;w" in text


def test_a_resolved_alert_says_how_long_it_fired_when_the_start_is_known() -> None:
    resolved = event(kind="resolved", at=T0 + 12 * 60_000, value=0.8)
    assert alert_html(resolved).startswith("✅ <b>RESOLVED</b> · <b>ethbtc-z</b> · warning\n")
    assert alert_html(resolved, since=T0).startswith(
        "✅ <b>RESOLVED</b> · <b>ethbtc-z</b> · warning · after 12m\n"
    )


@pytest.mark.parametrize(
    ("kind", "severity", "head"),
    [
        ("firing", "critical", "🔴 <b>FIRING</b>"),
        ("firing", "info", "🔵 <b>FIRING</b>"),
        ("repeat", "warning", "🟠 <b>STILL FIRING</b>"),
        ("pending", "warning", "⏳ <b>PENDING</b>"),
        ("no_data", "warning", "❔ <b>NO DATA</b>"),
        ("data", "warning", "✅ <b>DATA BACK</b>"),
    ],
)
def test_the_marker_shows_state_and_severity(kind: str, severity: str, head: str) -> None:
    assert alert_html(event(kind=kind, severity=severity)).startswith(head)


def test_an_alert_without_a_value_or_threshold_says_so() -> None:
    text = alert_html(event(kind="no_data", value=math.nan, threshold=math.nan, values={},
                            timeframe=None, window=None, labels={}))  # fmt: skip
    lines = text.splitlines()
    assert lines[1] == "<b>ETHUSDT/BTCUSDT</b>"
    assert lines[2] == "zscore <b>n/a</b>"
    assert lines[-1] == "2023-11-14 22:13:20 UTC"


def test_a_notice_keeps_a_multi_line_text_preformatted() -> None:
    text = notice_html("rules reload failed", "rules.yaml:3: bad <key>\nrules.yaml:9: x & y")
    assert text == (
        "🟠 <b>rules reload failed</b>\n"
        "<pre>rules.yaml:3: bad &lt;key&gt;\nrules.yaml:9: x &amp; y</pre>"
    )
    assert notice_html("t", "one line", "critical") == "🔴 <b>t</b>\none line"


def test_a_payload_becomes_its_messages_and_severity() -> None:
    alert = payload_message(alert_event_payload(event(severity="info")))
    assert alert.severity == "info"
    assert alert.parts == (alert_html(event(severity="info")),)
    notice = payload_message(notice_payload("rules reload failed", "x", "critical"))
    assert (notice.severity, notice.parts) == ("critical", ("🔴 <b>rules reload failed</b>\nx",))
    since = {
        **alert_event_payload(event(kind="resolved", at=T0 + 60_000)),
    }
    since["event"] = {**since["event"], "since": T0}
    assert "after 1m" in payload_message(since).parts[0]
    with pytest.raises(ValueError, match="unknown payload type"):
        payload_message({"type": "what"})


def test_a_long_alert_payload_is_split_into_valid_messages() -> None:
    message = " ".join(f"<{n}> & word{n}" for n in range(2000))
    parts = payload_message(alert_event_payload(event(message=message))).parts
    assert len(parts) >= 4
    assert all(check_html(p) is None and utf16(p) <= 4096 for p in parts)
    assert parts[0].startswith("🟠 <b>FIRING</b>")
    assert parts[-1].endswith("2023-11-14 22:13:20 UTC · desk=crypto")
    shown = "".join(plain(p) for p in parts)
    assert "<1999> & word1999" in shown
    assert all(p.count("<i>") == 1 for p in parts[1:-1])  # the italic run is reopened


# --- command replies --------------------------------------------------------------------


def test_help_lists_every_command_with_its_arguments() -> None:
    text = help_html()
    assert check_html(text) is None
    for command in COMMANDS:
        assert f"/{command.name}" in text
    assert "/z &lt;y&gt; &lt;x&gt; [tf] — latest snapshot of every metric" in text
    assert "/mute &lt;rule|all&gt; &lt;duration&gt;" in text


def test_a_usage_line_follows_what_was_wrong() -> None:
    assert usage_html("z") == (
        "Usage: <code>/z &lt;y&gt; &lt;x&gt; [tf]</code> — latest snapshot of every metric"
    )
    assert usage_html("unmute", "Give a <rule>.") == (
        "Give a &lt;rule&gt;.\nUsage: <code>/unmute &lt;rule|all&gt;</code> — end a rule's silences"
    )


def test_status_shows_feeds_lag_rates_queues_and_uptime() -> None:
    status = BotStatus(
        version="0.1.0", uptime_s=3725, source="binance spot", connections_open=2,
        reconnects=1, gaps=3, missed_ids=17, trades_per_s=12.34, bars_closed=12345,
        lag_ms=(45.2, 210.0, math.nan),
        feeds=(FeedStatus("BTCUSDT", 60123.5, 0.4, 8.0), FeedStatus("ETHUSDT", None, None, 0.0)),
        queues={"trades": 0, "bars": 2}, outbox={"telegram": 1}, rejected={"late": 4},
    )  # fmt: skip
    text = status_html(status)
    assert check_html(text) is None
    lines = text.splitlines()
    assert lines[:4] == [
        "<b>pairwatch 0.1.0</b> · up 1h02m · binance spot",
        "Feed: 2 open · 1 reconnects · 3 gaps (17 ids missed)",
        "Trades 12.3/s · bars closed 12,345",
        "Lag p50 45 ms · p99 210 ms · max n/a",
    ]
    assert "<pre>BTCUSDT     60,123.50     8.0/s  0s ago" in text
    assert "ETHUSDT           n/a     0.0/s  never</pre>" in text
    assert lines[-3:] == ["Queues: trades 0 · bars 2", "Outbox: telegram 1", "Rejected: late 4"]


def test_pairs_list_timeframes_and_windows() -> None:
    text = pairs_html([PairInfo("ETHUSDT", "BTCUSDT", ("1m", "5m"), (30, 120))])
    assert text == "<b>Pairs</b> (1)\n• <code>ETHUSDT BTCUSDT</code> · 1m, 5m · windows 30, 120"
    assert pairs_html([]) == "No pairs are configured."


def test_a_snapshot_lists_every_metric_of_every_window() -> None:
    snaps = [
        PairSnapshot("ETHUSDT", "BTCUSDT", "1m", 30, T0,
                     {"zscore": 2.41, "hedge_ratio": 0.0531, "adf_pvalue": math.nan}, adf_at=T0),
        PairSnapshot("ETHUSDT", "BTCUSDT", "1m", 120, T0, {}, thin=True),
    ]  # fmt: skip
    text = snapshots_html(snaps)
    assert check_html(text) is None
    assert text.splitlines() == [
        "<b>ETHUSDT/BTCUSDT</b> · 1m",
        "<b>window 30</b> · bar 2023-11-14 22:13:20 UTC",
        "<pre>zscore       +2.41",
        "hedge_ratio  0.0531",
        "adf_pvalue   n/a</pre>",
        "ADF/coint computed 2023-11-14 22:13:20 UTC",
        "<b>window 120</b> · bar 2023-11-14 22:13:20 UTC",
        "thin bar (too few trades): no metrics",
    ]
    assert snapshots_html([]).startswith("No snapshot yet")


def test_alerts_list_firing_before_pending_with_their_age() -> None:
    alerts = [
        AlertInfo("slow", "SOLUSDT/BTCUSDT", "5m", 60, "pending", T0 - 60_000, "info",
                  "zscore", 1.9, 2.0),
        AlertInfo("ethbtc-z", "ETHUSDT/BTCUSDT", "1m", 30, "firing", T0 - 720_000, "critical",
                  "zscore", 2.41, 2.0, muted=True),
    ]  # fmt: skip
    text = alerts_html(alerts, now=T0)
    assert check_html(text) is None
    assert text.splitlines() == [
        "<b>Alerts</b>: 1 firing, 1 pending",
        "🔴 <b>ethbtc-z</b> <b>ETHUSDT/BTCUSDT</b> · 1m · window 30 · firing 12m"
        " · zscore +2.41 (threshold +2.00) · 🔇 muted",
        "⏳ <b>slow</b> <b>SOLUSDT/BTCUSDT</b> · 5m · window 60 · pending 1m"
        " · zscore +1.90 (threshold +2.00)",
    ]
    assert alerts_html([], now=T0) == "No alerts firing or pending."


def test_rules_show_condition_state_and_silence() -> None:
    rules = [
        RuleInfo("ethbtc-z", "warning", "ETHUSDT/BTCUSDT", "1m", 30, "abs(zscore) >= 2",
                 firing=1, muted_until=T0 + 25 * 60_000),
        RuleInfo("lag", "critical", "*", None, None, "lag_ms > 5000 & gaps < 1",
                 muted_until=T0 - 1),
    ]  # fmt: skip
    text = rules_html(rules, now=T0)
    assert check_html(text) is None
    assert text.splitlines() == [
        "<b>Rules</b> (2)",
        "• <b>ethbtc-z</b> · warning · ETHUSDT/BTCUSDT 1m w30 · <code>abs(zscore) &gt;= 2</code>"
        " · 1 firing · 🔇 muted 25m",
        "• <b>lag</b> · critical · * · <code>lag_ms &gt; 5000 &amp; gaps &lt; 1</code>",
    ]
    assert rules_html([], now=T0) == "No rules are loaded."
