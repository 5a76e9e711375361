"""The rules schema: defaults, targets, conditions, holds, routes, templates, names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from pairwatch.analytics.conditions import AllOf, AnyOf, Comparison
from pairwatch.analytics.engine import SNAPSHOT_METRICS
from pairwatch.analytics.symbol_metrics import SYMBOL_METRICS
from pairwatch.config.rules import (
    DEFAULT_MESSAGE,
    DEFAULTABLE,
    HEALTH_METRICS,
    NOTIFIERS,
    TEMPLATE_FIELDS,
    Hold,
    Route,
    Rule,
    RulesFile,
    check_template,
)

PAIR = {
    "name": "ethbtc-z",
    "pair": "ETHUSDT/BTCUSDT",
    "timeframe": "1m",
    "window": 100,
    "when": "abs(zscore) >= 2",
}
SYMBOL = {"name": "btc-silent", "symbol": "BTCUSDT", "when": "seconds_since_trade > 30"}
PAIR_KNOWN = ", ".join(SNAPSHOT_METRICS)
SYMBOL_KNOWN = ", ".join((*SYMBOL_METRICS, *HEALTH_METRICS))


def rule(**changes: Any) -> Rule:
    return Rule.model_validate({**PAIR, **changes})


def errors(data: Any, model: type[Rule | RulesFile] = Rule) -> list[tuple[tuple[Any, ...], str]]:
    """Return (location, message) of every validation error of ``data``."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return [(e["loc"], e["msg"].removeprefix("Value error, ")) for e in caught.value.errors()]


def pair_errors(**changes: Any) -> list[tuple[tuple[Any, ...], str]]:
    return errors({**PAIR, **changes})


# --- constants ---------------------------------------------------------------------------


def test_health_metrics_and_notifiers() -> None:
    assert HEALTH_METRICS == ("feed_lag_ms", "seconds_since_trade", "gaps")
    assert NOTIFIERS == ("telegram", "mqtt", "webhook", "log")


def test_every_rule_key_but_name_when_and_clear_can_be_defaulted() -> None:
    assert {
        "description", "pair", "symbol", "timeframe", "window", "for",
        "keep_firing_for", "repeat_every", "notify_resolved", "severity", "labels", "message",
        "notify", "no_data",
    } == DEFAULTABLE  # fmt: skip


# --- defaults ----------------------------------------------------------------------------


def test_a_minimal_pair_rule_takes_the_default_of_every_other_field() -> None:
    r = Rule.model_validate(PAIR)
    assert r.name == "ethbtc-z"
    assert r.description == ""
    assert r.pair == ("ETHUSDT/BTCUSDT",)
    assert r.symbol is None
    assert r.kind == "pair"
    assert r.timeframe == "1m"
    assert r.window == 100
    assert r.when == Comparison("zscore", ">=", 2.0, absolute=True)
    assert r.for_ == Hold(bars=0, duration=timedelta(0))
    assert r.clear is None
    assert r.keep_firing_for == timedelta(0)
    assert r.repeat_every is None
    assert r.notify_resolved is True
    assert r.severity == "warning"
    assert r.labels == {}
    assert r.message == DEFAULT_MESSAGE == "{rule}: {metric} = {value:.4g} ({state})"
    assert r.notify == (Route(notifier="log"),)
    assert r.no_data == "keep"


def test_a_minimal_symbol_rule_on_a_health_metric_needs_no_timeframe_or_window() -> None:
    r = Rule.model_validate(SYMBOL)
    assert r.kind == "symbol"
    assert r.symbol == ("BTCUSDT",)
    assert r.pair is None
    assert r.timeframe is None
    assert r.window is None
    assert r.when == Comparison("seconds_since_trade", ">", 30.0)


def test_every_field_can_be_set() -> None:
    r = rule(
        description="ETH/BTC stretched",
        pair=["ETHUSDT/BTCUSDT", "*/BTCUSDT"],
        timeframe="5m",
        window=3,
        when={"all": ["abs(zscore) >= 2", "correlation >= 0.7", "adf_pvalue < 0.05"]},
        clear="abs(zscore) < 0.5",
        keep_firing_for="2m",
        repeat_every="1h",
        notify_resolved=False,
        severity="critical",
        labels={"desk": "stat-arb"},
        message="{pair} z={zscore:+.2f}",
        notify=["telegram", {"mqtt": {"topic": "desk/alerts"}}],
        no_data="alert",
        **{"for": "3 bars"},
    )
    assert r.description == "ETH/BTC stretched"
    assert r.pair == ("ETHUSDT/BTCUSDT", "*/BTCUSDT")
    assert r.timeframe == "5m"
    assert r.window == 3
    assert r.when == AllOf(
        (
            Comparison("zscore", ">=", 2.0, absolute=True),
            Comparison("correlation", ">=", 0.7),
            Comparison("adf_pvalue", "<", 0.05),
        )
    )
    assert r.for_ == Hold(bars=3)
    assert r.clear == Comparison("zscore", "<", 0.5, absolute=True)
    assert r.keep_firing_for == timedelta(minutes=2)
    assert r.repeat_every == timedelta(hours=1)
    assert r.notify_resolved is False
    assert r.severity == "critical"
    assert r.labels == {"desk": "stat-arb"}
    assert r.message == "{pair} z={zscore:+.2f}"
    assert r.notify == (Route(notifier="telegram"), Route(notifier="mqtt", topic="desk/alerts"))
    assert r.no_data == "alert"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("severity", "fatal", "Input should be 'info', 'warning' or 'critical'"),
        ("no_data", "ignore", "Input should be 'keep', 'resolve' or 'alert'"),
        ("window", 2, "Input should be greater than or equal to 3"),
        (
            "timeframe",
            "7x",
            "invalid timeframe '7x': expected a whole number and a unit s, m, h or d "
            "(e.g. 1s, 1m, 5m, 1h)",
        ),
        ("labels", {"desk": [1]}, "Input should be a valid string"),
        ("notify_resolved", "maybe", "Input should be a valid boolean, unable to interpret input"),
    ],
)
def test_field_values_are_checked(key: str, value: Any, message: str) -> None:
    found = pair_errors(**{key: value})
    assert [m for _, m in found] == [message]
    assert found[0][0][0] == key


def test_unknown_keys_are_refused() -> None:
    assert pair_errors(severty="critical") == [(("severty",), "Extra inputs are not permitted")]


def test_rules_are_frozen() -> None:
    r = Rule.model_validate(PAIR)
    with pytest.raises(ValidationError, match="frozen"):
        r.severity = "info"  # type: ignore[misc]


# --- hold (for:) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hold"),
    [
        ("3 bars", Hold(bars=3)),
        ("1 bar", Hold(bars=1)),
        ("3bars", Hold(bars=3)),
        ("  12  bars ", Hold(bars=12)),
        ("0 bars", Hold()),
        ("2m", Hold(duration=timedelta(minutes=2))),
        ("90s", Hold(duration=timedelta(seconds=90))),
        ("1h30m", Hold(duration=timedelta(hours=1, minutes=30))),
        ("500ms", Hold(duration=timedelta(milliseconds=500))),
    ],
)
def test_for_is_a_number_of_bars_or_a_duration(text: str, hold: Hold) -> None:
    assert rule(**{"for": text}).for_ == hold


def test_for_is_not_read_under_its_python_name() -> None:
    assert pair_errors(for_="2 bars") == [(("for_",), "Extra inputs are not permitted")]


def test_hold_prints_as_written() -> None:
    assert str(Hold(bars=3)) == "3 bars"
    assert str(Hold(duration=timedelta(seconds=90))) == "0:01:30"


@pytest.mark.parametrize("value", [90, 90.0, 1.5, "90", " 1.5 ", "-3", True, {"bars": 3}])
def test_a_bare_number_for_for_is_refused_as_ambiguous(value: object) -> None:
    assert pair_errors(**{"for": value}) == [
        (("for",), f"write a number of bars as '3 bars', or a duration like '2m', got {value!r}")
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5 minutes", "invalid duration '5 minutes': expected e.g. 30s, 5m, 2h, 7d"),
        ("three bars", "invalid duration 'three bars': expected e.g. 30s, 5m, 2h, 7d"),
        ("-3 bars", "invalid duration '-3 bars': must not be negative"),
        ("-1m", "invalid duration '-1m': must not be negative"),
    ],
)
def test_a_bad_hold_says_what_is_expected(value: Any, message: str) -> None:
    assert pair_errors(**{"for": value}) == [
        (("for",), f"{message}; or a number of bars, like '3 bars'")
    ]


def test_bars_need_a_timeframe() -> None:
    assert errors({**SYMBOL, "for": "3 bars"}) == [
        ((), "'for: N bars' needs a timeframe (health rules: use a duration)")
    ]
    ok = Rule.model_validate({**SYMBOL, "for": "3 bars", "timeframe": "1m"})
    assert ok.for_ == Hold(bars=3)
    assert Rule.model_validate({**SYMBOL, "for": "2m"}).for_ == Hold(duration=timedelta(minutes=2))


@pytest.mark.parametrize("hold", ["2 bars", "1m", "500ms"])
def test_a_crossing_cannot_hold_longer_than_one_bar(hold: str) -> None:
    message = "a crossing holds on one bar only, so it cannot hold 'for' longer: drop 'for'"
    assert pair_errors(when="zscore crosses_above 2", **{"for": hold}) == [((), message)]
    # A crossing in `clear` does not limit how long `when` must hold (review fix).
    assert rule(clear="zscore crosses_below 0", **{"for": hold}).clear is not None


@pytest.mark.parametrize("hold", ["1 bar", "0 bars", "0s"])
def test_a_crossing_may_hold_for_one_bar(hold: str) -> None:
    r = rule(when="zscore crosses_above 2", **{"for": hold})
    assert r.for_.bars <= 1
    assert r.for_.duration == timedelta(0)


# --- keep_firing_for / repeat_every ------------------------------------------------------


def test_keep_firing_for_and_repeat_every_are_durations() -> None:
    r = rule(keep_firing_for="5m", repeat_every="30m")
    assert r.keep_firing_for == timedelta(minutes=5)
    assert r.repeat_every == timedelta(minutes=30)
    assert rule(keep_firing_for=90).keep_firing_for == timedelta(seconds=90)


@pytest.mark.parametrize("value", ["0s", 0, "0"])
def test_repeat_every_must_be_positive(value: Any) -> None:
    assert pair_errors(repeat_every=value) == [((), "repeat_every must be positive (or left out)")]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1s", "invalid duration '-1s': must not be negative"),
        ("2 mins", "invalid duration '2 mins': expected e.g. 30s, 5m, 2h, 7d"),
    ],
)
def test_keep_firing_for_must_be_a_non_negative_duration(value: str, message: str) -> None:
    assert pair_errors(keep_firing_for=value) == [(("keep_firing_for",), message)]


# --- routes ------------------------------------------------------------------------------


def test_a_numeric_chat_id_and_label_value_are_read_as_text() -> None:
    r = rule(notify=[{"telegram": {"chat": -1001234567890}}], labels={"desk": 7, "x": 1.5})
    assert r.notify == (Route(notifier="telegram", chat="-1001234567890"),)
    assert r.labels == {"desk": "7", "x": "1.5"}
    assert pair_errors(labels={"flag": True}) == [
        (("labels", "flag"), "Input should be a valid string")
    ]


def test_routes_are_names_or_one_mapping_with_options() -> None:
    r = rule(
        notify=[
            "telegram",
            {"telegram": {"chat": "-100123"}},
            {"mqtt": {"topic": "desk/alerts"}},
            {"webhook": {"url": "https://example.org/hook"}},
            {"webhook": None},
            {"log": {}},
        ]
    )
    assert r.notify == (
        Route(notifier="telegram"),
        Route(notifier="telegram", chat="-100123"),
        Route(notifier="mqtt", topic="desk/alerts"),
        Route(notifier="webhook", url="https://example.org/hook"),
        Route(notifier="webhook"),
        Route(notifier="log"),
    )


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"telegram": {"topic": "a"}}, "telegram routes take no 'topic'"),
        ({"telegram": {"url": "a"}}, "telegram routes take no 'url'"),
        ({"mqtt": {"chat": "1"}}, "mqtt routes take no 'chat'"),
        ({"webhook": {"url": "u", "topic": "t"}}, "webhook routes take no 'topic'"),
        ({"log": {"url": "u"}}, "log routes take no 'url'"),
        ({"telegram": "x"}, "telegram: expected a mapping of options, got 'x'"),
        (
            {"telegram": {"chat": "1"}, "mqtt": {}},
            "expected a notifier name (telegram, mqtt, webhook, log, all) or one mapping",
        ),
        (5, "expected a notifier name (telegram, mqtt, webhook, log, all) or one mapping"),
        (
            {"telegram": {"chat": "my group"}},
            "chat 'my group': a chat id (a number) or an @channel name",
        ),
        (
            {"mqtt": {"topic": "desk/#"}},
            "topic 'desk/#': no '+', '#' or NUL, not empty, no leading '$'",
        ),
        (
            {"mqtt": {"topic": "$SYS/x"}},
            "topic '$SYS/x': no '+', '#' or NUL, not empty, no leading '$'",
        ),
        (
            {"webhook": {"url": "hooks.example.com/x"}},
            "url 'hooks.example.com/x': an http:// or https:// URL",
        ),
    ],
)
def test_a_bad_route_names_the_problem(route: Any, message: str) -> None:
    assert pair_errors(notify=["log", route]) == [(("notify", 1), message)]


def test_an_unknown_notifier_lists_the_known_ones() -> None:
    assert pair_errors(notify=["email"]) == [
        (("notify", 0, "notifier"), "Input should be 'telegram', 'mqtt', 'webhook', 'log' or 'all'")
    ]


def test_all_is_a_route_of_its_own_and_goes_with_explicit_routes() -> None:
    r = rule(notify=["all", {"telegram": {"chat": "-100123"}}, {"all": None}])
    assert r.notify == (
        Route(notifier="all"),
        Route(notifier="telegram", chat="-100123"),
        Route(notifier="all"),
    )


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"chat": "-100123"}, "chat"),
        ({"topic": "desk/z"}, "topic"),
        ({"url": "https://a.b"}, "url"),
    ],
)
def test_all_takes_no_overrides(options: dict[str, str], key: str) -> None:
    assert pair_errors(notify=[{"all": options}]) == [
        (
            ("notify", 0),
            f"'all' takes no overrides (got {key!r}): it sends to each configured notifier's "
            "own destinations; list another destination as a route of its own next to it, "
            "like {telegram: {chat: ...}}",
        )
    ]


def test_an_unknown_route_option_is_refused() -> None:
    assert pair_errors(notify=[{"telegram": {"chta": "1"}}]) == [
        (("notify", 0, "chta"), "Extra inputs are not permitted")
    ]


def test_notify_needs_at_least_one_route() -> None:
    assert pair_errors(notify=[]) == [((), "notify: list at least one route (e.g. [log])")]


# --- targets -----------------------------------------------------------------------------


def test_targets_are_a_name_or_a_list() -> None:
    assert rule(pair="ETHUSDT/BTCUSDT").pair == ("ETHUSDT/BTCUSDT",)
    assert rule(pair=["A/B", "C*/D"]).pair == ("A/B", "C*/D")
    s = Rule.model_validate({**SYMBOL, "symbol": ["BTCUSDT", "ETH*"]})
    assert s.symbol == ("BTCUSDT", "ETH*")


def test_a_rule_needs_a_target() -> None:
    data = {k: v for k, v in PAIR.items() if k != "pair"}
    assert errors(data) == [((), "give either 'pair' or 'symbol' (the rule's target)")]


def test_a_rule_with_both_a_pair_and_a_symbol_is_told_to_choose() -> None:
    # Regression: with both keys the metrics are checked as symbol metrics first (`_metrics` sees
    # `symbol` in info.data), so the user reads "unknown metric 'zscore'; did you mean
    # 'volume_zscore'?" and the model validator's "give either 'pair' or 'symbol'" never
    # runs: no condition is valid for both kinds, so that message is unreachable.
    assert pair_errors(symbol="BTCUSDT") == [
        ((), "give either 'pair' or 'symbol' (the rule's target)")
    ]


def test_an_empty_target_list_is_refused() -> None:
    # Regression: `pair: []` (or `symbol: []`) is accepted: the rule targets nothing, and
    # check_against reports nothing either, so the rule silently never fires.
    assert pair_errors(pair=[]) != []


def test_pair_metrics_need_a_timeframe_and_a_window() -> None:
    for missing in ("timeframe", "window"):
        data = {k: v for k, v in PAIR.items() if k != missing}
        assert errors(data) == [((), "pair metrics need 'timeframe' and 'window'")]


def test_symbol_metrics_need_a_timeframe_and_a_window() -> None:
    data = {**SYMBOL, "timeframe": "1m", "when": "volatility > 1"}
    assert errors(data) == [((), "symbol metrics need 'timeframe' and 'window'")]
    ok = Rule.model_validate({**data, "window": 100})
    assert ok.when == Comparison("volatility", ">", 1.0)


def test_a_health_metric_in_clear_needs_no_window_but_a_symbol_metric_does() -> None:
    ok = Rule.model_validate({**SYMBOL, "clear": "seconds_since_trade < 5"})
    assert ok.clear == Comparison("seconds_since_trade", "<", 5.0)
    assert errors({**SYMBOL, "clear": "volatility < 1"}) == [
        ((), "symbol metrics need 'timeframe' and 'window'")
    ]


@pytest.mark.parametrize("metric", HEALTH_METRICS)
def test_every_health_metric_is_usable_on_symbols(metric: str) -> None:
    r = Rule.model_validate({**SYMBOL, "when": f"{metric} > 1"})
    assert r.when == Comparison(metric, ">", 1.0)


@pytest.mark.parametrize("metric", SNAPSHOT_METRICS)
def test_every_snapshot_metric_is_usable_on_pairs(metric: str) -> None:
    assert rule(when=f"{metric} > 1").when == Comparison(metric, ">", 1.0)


# --- conditions --------------------------------------------------------------------------


def test_conditions_nest_all_and_any() -> None:
    r = rule(
        when={"any": ["zscore crosses_above 2", {"all": ["zscore < -2", "correlation > 0.5"]}]}
    )
    assert r.when == AnyOf(
        (
            Comparison("zscore", "crosses_above", 2.0),
            AllOf((Comparison("zscore", "<", -2.0), Comparison("correlation", ">", 0.5))),
        )
    )


SHAPE = "expected a condition like 'abs(zscore) >= 2', or 'all:' / 'any:' with a list of conditions"


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ({"all": []}, "all: expected a non-empty list of conditions"),
        ({"any": "zscore > 1"}, "any: expected a non-empty list of conditions"),
        ({"none": ["zscore > 1"]}, f"{SHAPE}, got {{'none': ['zscore > 1']}}"),
        (
            {"all": ["zscore > 1"], "any": ["zscore > 1"]},
            f"{SHAPE}, got {{'all': ['zscore > 1'], 'any': ['zscore > 1']}}",
        ),
        (["zscore > 1"], f"{SHAPE}, got ['zscore > 1']"),
        (5, f"{SHAPE}, got 5"),
        (None, f"{SHAPE}, got None"),
        (
            {"all": ["zscore > 1", {"any": ["zscore < 1", "zscore = 1"]}]},
            "all[1]: any[1]: cannot read 'zscore = 1': write METRIC OP NUMBER or abs(METRIC) "
            "OP NUMBER, OP one of > >= < <= == != crosses_above crosses_below, "
            "e.g. 'abs(zscore) >= 2'",
        ),
        ({"all": [{"any": [7]}]}, f"all[0]: any[0]: {SHAPE}, got 7"),
    ],
)
def test_a_bad_condition_says_where_inside_it(when: Any, message: str) -> None:
    assert pair_errors(when=when) == [(("when",), message)]


def test_when_is_required() -> None:
    data = {k: v for k, v in PAIR.items() if k != "when"}
    assert errors(data) == [(("when",), "Field required")]


def test_an_unknown_metric_suggests_the_closest_one() -> None:
    assert pair_errors(when="zscor >= 2") == [
        (("when",), "unknown metric 'zscor'; did you mean 'zscore'?")
    ]
    assert pair_errors(clear="abs(zscroe) < 0.5") == [
        (("clear",), "unknown metric 'zscroe'; did you mean 'zscore'?")
    ]


def test_an_unknown_metric_inside_a_composition_is_found() -> None:
    assert pair_errors(when={"all": ["zscore > 1", {"any": ["corelation > 0.5"]}]}) == [
        (("when",), "unknown metric 'corelation'; did you mean 'correlation'?")
    ]


def test_an_unknown_metric_with_nothing_close_lists_the_known_ones() -> None:
    assert pair_errors(when="qqqq > 1") == [
        (("when",), f"unknown metric 'qqqq'; known: {PAIR_KNOWN}")
    ]
    assert errors({**SYMBOL, "when": "qqqq > 1"}) == [
        (("when",), f"unknown metric 'qqqq'; known: {SYMBOL_KNOWN}")
    ]


def test_pairs_and_symbols_have_their_own_metrics() -> None:
    assert pair_errors(when="feed_lag_ms > 1000") == [
        (("when",), f"unknown metric 'feed_lag_ms'; known: {PAIR_KNOWN}")
    ]
    assert errors({**SYMBOL, "timeframe": "1m", "window": 100, "when": "zscore > 2"}) == [
        (("when",), "unknown metric 'zscore'; did you mean 'volume_zscore'?")
    ]


# --- message templates -------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{pair} z={zscore:+.2f} beta={hedge_ratio:.4f} >= {threshold}",
        "{rule}: {metric} = {value:.4g} ({state})",
        "{y}/{x} {timeframe} w{window} {severity} {description}",
        "{value:,.2f} {value:%} {value:e} {value:>10.3f} {value}",
        "{pair:>12} {rule:.3}",
        "braces: {{literal}} and {{}}",
        "no fields at all",
        "",
    ],
)
def test_plain_fields_with_number_formats_are_accepted(template: str) -> None:
    assert rule(message=template).message == template
    check_template(template, SNAPSHOT_METRICS)


def test_symbol_templates_may_use_symbol_and_health_metrics() -> None:
    template = "{symbol} vol={volatility:.2%} lag={feed_lag_ms:.0f} gaps={gaps}"
    r = Rule.model_validate({**SYMBOL, "message": template})
    assert r.message == template


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "{pair.__class__}",
            "{pair.__class__} is not a plain field name (no attributes, indexes or positions)",
        ),
        (
            "{pair.upper}",
            "{pair.upper} is not a plain field name (no attributes, indexes or positions)",
        ),
        ("{pair[0]}", "{pair[0]} is not a plain field name (no attributes, indexes or positions)"),
        ("{0}", "{0} is not a plain field name (no attributes, indexes or positions)"),
        ("{}", "{} is not a plain field name (no attributes, indexes or positions)"),
        ("{ pair }", "{ pair } is not a plain field name (no attributes, indexes or positions)"),
        ("{pair!r}", "{pair}: no conversions or nested fields"),
        ("{value!s:>3}", "{value}: no conversions or nested fields"),
        ("{value:{spec}}", "{value}: no conversions or nested fields"),
        ("{zscroe}", "unknown field {zscroe}; did you mean 'zscore'?"),
        ("{value:abc}", "{value:abc}: not a number format"),
        ("{value:d}", "{value:d}: not a number format"),
        ("{zscore:s}", "{zscore:s}: not a number format"),
        (
            "{pair",
            "expected '}' before end of string (write a literal brace as '{{' or '}}')",
        ),
        (
            "pair}",
            "Single '}' encountered in format string (write a literal brace as '{{' or '}}')",
        ),
        ("z {", "Single '{' encountered in format string (write a literal brace as '{{' or '}}')"),
    ],
)
def test_templates_refuse_anything_but_plain_fields(template: str, message: str) -> None:
    assert pair_errors(message=template) == [(("message",), message)]
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check_template(template, SNAPSHOT_METRICS)


def test_template_fields_depend_on_the_target() -> None:
    assert errors({**SYMBOL, "message": "{zscore}"}) == [
        (("message",), "unknown field {zscore}; did you mean 'volume_zscore'?")
    ]
    assert TEMPLATE_FIELDS == (
        "rule", "pair", "symbol", "y", "x", "timeframe", "window", "severity", "state",
        "metric", "value", "threshold", "description",
    )  # fmt: skip


def test_an_unknown_template_field_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown field") as caught:
        check_template("{volatility}", SNAPSHOT_METRICS)
    head, _, listed = str(caught.value).partition("; known: ")
    assert head == "unknown field {volatility}"
    assert set(listed.split(", ")) == {*TEMPLATE_FIELDS, *SNAPSHOT_METRICS}


def test_the_unknown_field_message_is_the_same_in_every_process() -> None:
    # Regression: check_template lists the known fields in set order (`tuple(allowed)` of a set of
    # str), which changes with PYTHONHASHSEED: `pairwatch rules check` prints a different
    # line on each run. Expected: a fixed order (e.g. sorted).
    script = (
        "from pairwatch.config.rules import check_template\n"
        "try:\n"
        "    check_template('{volatility}', ('zscore', 'spread', 'hedge_ratio'))\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in (1, 2, 3, 4)
    }
    assert len(outputs) == 1, outputs


@pytest.mark.parametrize("template", ["{pair:.2f}", "{timeframe:+}", "{rule:,}", "{state:=5}"])
def test_a_number_format_on_a_text_field_is_refused(template: str) -> None:
    with pytest.raises(ValueError, match=r"^\{\w+:.+\}: not a text format$") as caught:
        check_template(template, SNAPSHOT_METRICS)
    assert str(caught.value) == f"{template}: not a text format"


@pytest.mark.parametrize(
    ("template", "ok"),
    [("{value:40.2f}", True), ("{value:.40f}", True), ("{value:41}", False), ("{pair:>99}", False)],
)
def test_format_widths_and_precisions_are_bounded(template: str, ok: bool) -> None:
    if ok:
        check_template(template, SNAPSHOT_METRICS)
    else:
        with pytest.raises(ValueError, match="up to 40") as caught:
            check_template(template, SNAPSHOT_METRICS)
        assert str(caught.value) == f"{template}: widths and precisions up to 40"


# --- names -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "7", "ethbtc-z", "A-b_c.d", "x" * 64])
def test_rule_names_are_letters_digits_and_punctuation(name: str) -> None:
    assert rule(name=name).name == name


@pytest.mark.parametrize("name", ["", "-a", "_a", ".a", "a b", "a/b", "é", "x" * 65, "a\nb"])
def test_bad_rule_names_are_refused(name: str) -> None:
    assert pair_errors(name=name) == [
        (
            ("name",),
            f"{name!r}: use 1-64 letters, digits, '_', '.' or '-' "
            "(it names MQTT topics and bot commands)",
        )
    ]


@pytest.mark.parametrize("name", ["all", "All", "ALL"])
def test_all_is_reserved_for_every_rule(name: str) -> None:
    assert pair_errors(name=name) == [
        (("name",), f"{name!r} is reserved: 'mute all' means every rule")
    ]


def test_a_name_with_a_trailing_newline_is_refused() -> None:
    # Regression: _NAME is matched with `re.match` and ends in `$`, which also matches before a
    # final newline, so "ethbtc\n" (e.g. YAML `name: |` block) becomes a rule name that ends
    # up in MQTT topics and bot commands. Expected: refused like any other bad character.
    assert pair_errors(name="ethbtc\n") == [
        (
            ("name",),
            "'ethbtc\\n': use 1-64 letters, digits, '_', '.' or '-' "
            "(it names MQTT topics and bot commands)",
        )
    ]


def test_name_is_required() -> None:
    data = {k: v for k, v in PAIR.items() if k != "name"}
    assert errors(data) == [(("name",), "Field required")]


# --- the whole file ----------------------------------------------------------------------


def test_an_empty_file_has_no_rules_and_no_defaults() -> None:
    f = RulesFile.model_validate({})
    assert f.rules == ()
    assert f.defaults == {}


def test_rule_names_are_unique() -> None:
    second = {**PAIR, "name": "other"}
    assert errors({"rules": [PAIR, second, PAIR, second]}, RulesFile) == [
        ((), "rule names are used twice: ['ethbtc-z', 'other']")
    ]
    ok = RulesFile.model_validate({"rules": [PAIR, second]})
    assert [r.name for r in ok.rules] == ["ethbtc-z", "other"]


def test_file_level_keys_are_strict() -> None:
    assert errors({"rules": [], "rulez": []}, RulesFile) == [
        (("rulez",), "Extra inputs are not permitted")
    ]
    assert errors({"rules": None}, RulesFile) == [(("rules",), "Input should be a valid tuple")]


def test_every_bad_rule_is_reported() -> None:
    found = errors({"rules": [{**PAIR, "severity": "x"}, PAIR, {**PAIR, "window": 1}]}, RulesFile)
    assert found == [
        (("rules", 0, "severity"), "Input should be 'info', 'warning' or 'critical'"),
        (("rules", 2, "window"), "Input should be greater than or equal to 3"),
    ]


# --- derived properties ------------------------------------------------------------------


def test_primary_is_the_first_comparison_of_when() -> None:
    r = rule(
        when={"any": [{"all": ["abs(zscore) > 2", "correlation > 0.5"]}, "spread < 0"]},
        clear="abs(zscore) < 0.5",
    )
    assert r.primary == Comparison("zscore", ">", 2.0, absolute=True)
    assert rule().primary == Comparison("zscore", ">=", 2.0, absolute=True)


def test_uses_previous_when_a_crossing_is_in_when_or_clear() -> None:
    assert rule().uses_previous is False
    assert rule(when={"all": ["correlation > 0.5", "zscore crosses_above 2"]}).uses_previous
    assert rule(clear="zscore crosses_below 0").uses_previous is True
    assert rule(clear="abs(zscore) < 0.5").uses_previous is False
