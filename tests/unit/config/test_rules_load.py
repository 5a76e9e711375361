"""Loading a rules file: safe YAML, defaults, ``file:line:column`` problems, settings checks."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pairwatch.analytics.conditions import AllOf, AnyOf, Comparison
from pairwatch.config.rules import DEFAULT_MESSAGE, DEFAULTABLE, Hold, Route
from pairwatch.config.rules_load import check_against, load_rules
from pairwatch.config.settings import Settings
from pairwatch.errors import ConfigError

DATA = Path(__file__).parents[2] / "data" / "rules"
BAD = DATA / "bad"
GOOD = DATA / "good.yaml"

CONDITION_HELP = (
    "write METRIC OP NUMBER or abs(METRIC) OP NUMBER, OP one of "
    "> >= < <= == != crosses_above crosses_below, e.g. 'abs(zscore) >= 2'"
)
CAN_DEFAULT = ", ".join(sorted(DEFAULTABLE))


def settings() -> Settings:
    """Four symbols, two pairs; DOGEUSDT is followed but in no pair."""
    return Settings(
        feed={"symbols": ["BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"]},
        pairs=[
            {"y": "ETHUSDT", "x": "BTCUSDT", "windows": [50, 100]},
            {"y": "SOLUSDT", "x": "BTCUSDT", "windows": [50, 100], "timeframes": ["1m"]},
        ],
    )


def at(path: Path, needle: str, nth: int = 1, skip: int = 0) -> str:
    """Return ``path:line:column`` of the ``nth`` ``needle`` in the file, ``skip`` chars on."""
    lines = path.read_text(encoding="utf-8").splitlines()
    seen = 0
    for number, line in enumerate(lines, start=1):
        column = line.find(needle)
        while column >= 0:
            seen += 1
            if seen == nth:
                return f"{path}:{number}:{column + 1 + skip}"
            column = line.find(needle, column + 1)
    raise AssertionError(f"{needle!r} not in {path}")


def value_at(path: Path, key_and_value: str, nth: int = 1) -> str:
    """Return the location of the value in ``key: value``."""
    key, _, _ = key_and_value.partition(": ")
    return at(path, key_and_value, nth, skip=len(key) + 2)


def problems(path: Path, with_settings: Settings | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_rules(path, with_settings)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the good file -----------------------------------------------------------------------


@pytest.mark.parametrize("checked", [False, True], ids=["alone", "against-settings"])
def test_the_good_file_loads_with_defaults_merged(checked: bool) -> None:
    loaded = load_rules(GOOD, settings() if checked else None)
    assert loaded.defaults == {
        "timeframe": "1m",
        "window": 100,
        "notify": ["log"],
        "severity": "warning",
    }
    assert [r.name for r in loaded.rules] == [
        "ethbtc-z",
        "any-pair-kalman",
        "btc-silent",
        "vol-spike",
    ]
    z, kalman, silent, vol = loaded.rules

    assert z.description == "ETH/BTC spread stretched"
    assert z.kind == "pair"
    assert z.pair == ("ETHUSDT/BTCUSDT",)
    assert (z.timeframe, z.window) == ("1m", 100)  # from the defaults
    assert z.when == AllOf(
        (
            Comparison("zscore", ">=", 2.0, absolute=True),
            Comparison("correlation", ">=", 0.7),
            Comparison("adf_pvalue", "<", 0.05),
        )
    )
    assert z.for_ == Hold(bars=3)
    assert z.clear == Comparison("zscore", "<", 0.5, absolute=True)
    assert z.keep_firing_for == timedelta(minutes=2)
    assert z.repeat_every == timedelta(minutes=30)
    assert z.notify_resolved is True
    assert z.severity == "critical"  # the rule's own value wins over the default
    assert z.labels == {"desk": "stat-arb"}
    assert z.message == (
        "{pair} {timeframe} z={zscore:+.2f} beta={hedge_ratio:.4f} (>= {threshold})"
    )
    assert z.notify == (
        Route(notifier="telegram"),
        Route(notifier="mqtt", topic="desk/alerts"),
        Route(notifier="webhook", url="https://example.org/hook"),
    )
    assert z.no_data == "keep"

    assert kalman.pair == ("*/BTCUSDT",)
    assert (kalman.timeframe, kalman.window) == ("1m", 50)
    assert kalman.when == AnyOf(
        (
            Comparison("kalman_zscore", "crosses_above", 2.0),
            Comparison("kalman_zscore", "crosses_below", -2.0),
        )
    )
    assert kalman.for_ == Hold()
    assert kalman.notify_resolved is False
    assert kalman.no_data == "resolve"
    assert kalman.severity == "warning"
    assert kalman.notify == (Route(notifier="log"),)
    assert kalman.message == DEFAULT_MESSAGE

    assert silent.kind == "symbol"
    assert silent.symbol == ("BTCUSDT",)
    assert silent.when == Comparison("seconds_since_trade", ">", 30.0)
    assert silent.for_ == Hold(duration=timedelta(seconds=90))
    assert silent.notify == (Route(notifier="telegram", chat="-100123"), Route(notifier="log"))
    assert silent.no_data == "alert"

    assert vol.symbol == ("ETHUSDT", "SOLUSDT")
    assert vol.when == Comparison("volume_zscore", ">=", 3.0)
    assert vol.message == "{symbol} volume z {volume_zscore:.1f}"
    assert vol.notify == (Route(notifier="log"),)
    assert vol.for_ == Hold()


def test_an_empty_file_has_zero_rules() -> None:
    loaded = load_rules(BAD / "empty.yaml", settings())
    assert loaded.rules == ()
    assert loaded.defaults == {}


def test_a_truly_empty_file_has_zero_rules(tmp_path: Path) -> None:
    assert load_rules(write(tmp_path, "")).rules == ()


# --- one file per failure ----------------------------------------------------------------


def test_unknown_key_points_at_the_key_and_suggests_the_right_one() -> None:
    path = BAD / "unknown_key.yaml"
    assert problems(path) == [
        f"{at(path, 'severty')}: ethbtc-z: rules[0].severty: unknown key; did you mean 'severity'?"
    ]


def test_unknown_metric_points_at_the_condition() -> None:
    path = BAD / "unknown_metric.yaml"
    assert problems(path) == [
        f"{at(path, 'all:')}: ethbtc-z: rules[0].when: unknown metric 'corelation'; "
        "did you mean 'correlation'?"
    ]


def test_code_in_a_condition_is_refused_not_run() -> None:
    path = BAD / "bad_condition.yaml"
    text = "__import__('os').system('true') or zscore > 2"
    assert problems(path) == [
        f"{value_at(path, 'when: __import__')}: sneaky: rules[0].when: "
        f'cannot read "{text}": {CONDITION_HELP}'
    ]


def test_bad_durations_are_each_reported_at_their_value() -> None:
    path = BAD / "bad_duration.yaml"
    assert problems(path) == [
        f"{value_at(path, 'for: 5 minutes')}: ethbtc-z: rules[0].for: "
        "invalid duration '5 minutes': expected e.g. 30s, 5m, 2h, 7d; "
        "or a number of bars, like '3 bars'",
        f"{value_at(path, 'keep_firing_for: 2mins')}: ethbtc-z: rules[0].keep_firing_for: "
        "invalid duration '2mins': expected e.g. 30s, 5m, 2h, 7d",
    ]


def test_a_bare_number_for_for_asks_for_bars_or_a_duration() -> None:
    path = BAD / "bare_number_for.yaml"
    assert problems(path) == [
        f"{value_at(path, 'for: 3')}: ethbtc-z: rules[0].for: "
        "write a number of bars as '3 bars', or a duration like '2m', got 3"
    ]


def test_a_bad_template_is_refused_at_the_message() -> None:
    path = BAD / "bad_template.yaml"
    assert problems(path) == [
        f"{value_at(path, 'message: ')}: leaky: rules[0].message: {{pair.__class__}} is not a "
        "plain field name (no attributes, indexes or positions)"
    ]


def test_bad_routes_are_each_reported_at_their_item() -> None:
    path = BAD / "bad_route.yaml"
    assert problems(path) == [
        f"{at(path, 'telegram:')}: ethbtc-z: rules[0].notify[0]: telegram routes take no 'topic'",
        f"{at(path, 'email')}: ethbtc-z: rules[0].notify[1].notifier: "
        "Input should be 'telegram', 'mqtt', 'webhook', 'log' or 'all'",
    ]


def test_a_rule_without_a_target_is_reported_at_the_rule() -> None:
    path = BAD / "no_target.yaml"
    assert problems(path) == [
        f"{at(path, 'name: nowhere')}: nowhere: rules[0]: "
        "give either 'pair' or 'symbol' (the rule's target)"
    ]


def test_a_pair_rule_without_a_window_is_reported_at_the_rule() -> None:
    path = BAD / "missing_window.yaml"
    assert problems(path) == [
        f"{at(path, 'name: ethbtc-z')}: ethbtc-z: rules[0]: "
        "pair metrics need 'timeframe' and 'window'"
    ]


def test_every_problem_of_every_rule_is_reported_and_nameless_rules_are_numbered() -> None:
    path = BAD / "many_problems.yaml"
    assert problems(path) == [
        f"{value_at(path, 'severity: loud')}: first: rules[0].severity: "
        "Input should be 'info', 'warning' or 'critical'",
        f"{at(path, 'pair: ETHUSDT/BTCUSDT', nth=3)}: rule 3: rules[2].name: Field required",
        f"{at(path, 'repeat_evry')}: rule 3: rules[2].repeat_evry: unknown key; "
        "did you mean 'repeat_every'?",
    ]


def test_a_duplicate_rule_name_points_at_the_second_name_and_the_first() -> None:
    path = BAD / "duplicate_name.yaml"
    first_line = at(path, "name: ethbtc-z").split(":")[-2]
    assert problems(path) == [
        f"{value_at(path, 'name: ethbtc-z', nth=2)}: ethbtc-z: rules[1].name: "
        f"the name is used twice (first at line {first_line})"
    ]


def test_every_repeat_of_a_name_is_reported(tmp_path: Path) -> None:
    rule = "{{name: {}, pair: ETHUSDT/BTCUSDT, timeframe: 1m, window: 100, when: zscore > 2}}"
    path = write(
        tmp_path,
        "rules:\n" + "".join(f"  - {rule.format(n)}\n" for n in ("a", "b", "a", "a", "b")),
    )
    assert problems(path) == [
        f"{path}:4:12: a: rules[2].name: the name is used twice (first at line 2)",
        f"{path}:5:12: a: rules[3].name: the name is used twice (first at line 2)",
        f"{path}:6:12: b: rules[4].name: the name is used twice (first at line 3)",
    ]


# --- YAML itself -------------------------------------------------------------------------


def test_a_yaml_syntax_error_gives_its_position() -> None:
    path = BAD / "yaml_syntax.yaml"
    # PyYAML notices the unclosed '[' at the ':' of the next key.
    assert problems(path) == [
        f"{at(path, ': 100')}: not valid YAML: did not find expected ',' or ']'"
    ]


def test_a_key_given_twice_is_an_error_at_the_second_key() -> None:
    path = BAD / "duplicate_key.yaml"
    assert problems(path) == [f"{at(path, 'window:', nth=2)}: rules[0].window: key given twice"]


def test_a_top_level_key_given_twice_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "rules: []\ndefaults: {}\nrules: []\n")
    assert problems(path) == [f"{path}:3:1: rules: key given twice"]


def test_the_top_level_must_be_a_mapping() -> None:
    path = BAD / "not_a_mapping.yaml"
    assert problems(path) == [f"{path}:1:1: expected a mapping with 'rules:'"]


@pytest.mark.parametrize("text", ["42\n", "just text\n", "[]\n"])
def test_a_scalar_or_list_top_level_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert problems(path) == [f"{path}:1:1: expected a mapping with 'rules:'"]


def test_only_one_yaml_document_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "---\nrules: []\n---\nrules: []\n")
    assert problems(path) == [f"{path}:3:1: not valid YAML: but found another document"]


def test_python_tags_are_refused_by_the_safe_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = BAD / "python_tag.yaml"
    assert problems(path) == [
        f"{at(path, '!!python')}: not valid YAML: could not determine a constructor for the "
        "tag 'tag:yaml.org,2002:python/object/apply:os.system'"
    ]
    assert list(tmp_path.iterdir()) == []  # `touch pwned` never ran


@pytest.mark.parametrize(
    ("tag", "name"),
    [
        ("!!python/object:os.system", "python/object:os.system"),
        ("!!python/name:os.system", "python/name:os.system"),
        ("!!python/module:os", "python/module:os"),
    ],
)
def test_other_python_tags_are_refused(tmp_path: Path, tag: str, name: str) -> None:
    path = write(tmp_path, f"rules:\n  - {tag} {{}}\n")
    assert problems(path) == [
        f"{path}:2:5: not valid YAML: could not determine a constructor for the tag "
        f"'tag:yaml.org,2002:{name}'"
    ]


def test_anchors_and_aliases_work(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules:\n"
        "  - name: a\n"
        "    pair: &pair ETHUSDT/BTCUSDT\n"
        "    timeframe: 1m\n"
        "    window: 100\n"
        "    when: zscore > 2\n"
        "    notify: &routes [telegram, {mqtt: {topic: t}}]\n"
        "  - name: b\n"
        "    pair: *pair\n"
        "    timeframe: 1m\n"
        "    window: 100\n"
        "    when: zscore < -2\n"
        "    notify: *routes\n",
    )
    a, b = load_rules(path).rules
    assert a.notify == b.notify == (Route(notifier="telegram"), Route(notifier="mqtt", topic="t"))
    assert b.pair == ("ETHUSDT/BTCUSDT",)


def test_an_anchor_outside_defaults_and_rules_is_an_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, "base: &base {window: 100}\nrules: []\n")
    assert problems(path) == [f"{path}:1:1: base: unknown key"]


def test_merge_keys_let_a_rule_extend_another(tmp_path: Path) -> None:
    # Regression: `_parse` now builds the data from the same nodes it walks, and PyYAML's
    # `flatten_mapping` rewrites a mapping with `<<:` in place (merged keys first, then the
    # rule's own). `_walk` then sees `name` and `when` twice and reports
    # "rules[1].name: key given twice" for a plain YAML merge with overrides.
    path = write(
        tmp_path,
        "rules:\n"
        "  - &first\n"
        "    name: a\n"
        "    pair: ETHUSDT/BTCUSDT\n"
        "    timeframe: 1m\n"
        "    window: 100\n"
        "    when: zscore > 2\n"
        "  - <<: *first\n"
        "    name: b\n"
        "    when: zscore < -2\n",
    )
    a, b = load_rules(path).rules
    assert (b.name, b.pair, b.window) == ("b", ("ETHUSDT/BTCUSDT",), 100)
    assert b.when == Comparison("zscore", "<", -2.0)
    assert a.when == Comparison("zscore", ">", 2.0)


def test_a_recursive_alias_is_a_config_error(tmp_path: Path) -> None:
    # Regression: `_walk` follows aliases, so a self-referencing anchor recurses until
    # RecursionError, which escapes load_rules (and `pairwatch rules check` prints a
    # traceback with exit 1 instead of a problem line with exit 2).
    path = write(tmp_path, "rules: &r [*r]\n")
    with pytest.raises(ConfigError):
        load_rules(path)


# --- unreadable files --------------------------------------------------------------------


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert problems(path) == [f"{path}: cannot read the rules file: No such file or directory"]


def test_a_directory_is_a_config_error(tmp_path: Path) -> None:
    assert problems(tmp_path) == [f"{tmp_path}: cannot read the rules file: Is a directory"]


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    # Regression: load_rules catches OSError around read_text, but bad bytes raise
    # UnicodeDecodeError (a ValueError), which escapes: `pairwatch rules check` shows a
    # traceback and exits 1. Expected: "<file>: cannot read the rules file: ..." (exit 2).
    path = tmp_path / "latin1.yaml"
    path.write_bytes("rules: []  # caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert caught.value.problems[0].startswith(f"{path}")


# --- other structural problems -----------------------------------------------------------


def test_rules_that_are_not_mappings_or_lack_a_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules:\n  - just a string\n  - pair: ETHUSDT/BTCUSDT\n    when: zscore > 1\n",
    )
    assert problems(path) == [
        f"{path}:2:5: rules[0]: Input should be a valid dictionary or instance of Rule",
        f"{path}:3:5: rule 2: rules[1].name: Field required",
    ]


def test_rules_must_be_a_list(tmp_path: Path) -> None:
    path = write(tmp_path, "rules:\n  name: a\n")
    assert problems(path) == [f"{path}:2:3: rules: Input should be a valid tuple"]


def test_an_unknown_top_level_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "rules: []\nrule: []\n")
    assert problems(path) == [f"{path}:2:1: rule: unknown key"]


def test_an_unknown_route_option_points_at_its_route(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules:\n"
        "  - name: a\n"
        "    pair: ETHUSDT/BTCUSDT\n"
        "    timeframe: 1m\n"
        "    window: 100\n"
        "    when: zscore > 2\n"
        "    notify:\n"
        "      - telegram: {chta: '1'}\n",
    )
    # The option is validated inside the flattened route, so the line is the route's.
    assert problems(path) == [f"{path}:8:9: a: rules[0].notify[0].chta: unknown key"]


ALL_TAKES_NO = (
    "'all' takes no overrides (got {!r}): it sends to each configured notifier's own "
    "destinations; list another destination as a route of its own next to it, "
    "like {{telegram: {{chat: ...}}}}"
)


def test_all_loads_from_defaults_and_next_to_explicit_routes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "defaults:\n"
        "  notify: [all]\n"
        "rules:\n"
        "  - name: a\n"
        "    pair: ETHUSDT/BTCUSDT\n"
        "    timeframe: 1m\n"
        "    window: 100\n"
        "    when: zscore > 2\n"
        "  - name: b\n"
        "    pair: ETHUSDT/BTCUSDT\n"
        "    timeframe: 1m\n"
        "    window: 100\n"
        "    when: zscore > 2\n"
        "    notify: [all, {telegram: {chat: '-100123'}}]\n",
    )
    a, b = load_rules(path, settings()).rules
    assert a.notify == (Route(notifier="all"),)
    assert b.notify == (Route(notifier="all"), Route(notifier="telegram", chat="-100123"))


def test_all_with_an_override_is_refused_at_its_route(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "defaults:\n"
        "  notify: [{all: {url: 'https://hooks.example.com/x'}}]\n"
        "rules:\n"
        "  - name: a\n"
        "    pair: ETHUSDT/BTCUSDT\n"
        "    timeframe: 1m\n"
        "    window: 100\n"
        "    when: zscore > 2\n"
        "    notify:\n"
        "      - log\n"
        "      - all: {chat: '-100123'}\n"
        "  - name: b\n"
        "    pair: ETHUSDT/BTCUSDT\n"
        "    timeframe: 1m\n"
        "    window: 100\n"
        "    when: zscore > 2\n",
    )
    assert problems(path) == [
        # b's notify is the default: reported at the default's list.
        f"{path}:2:11: b: rules[1].notify[0]: {ALL_TAKES_NO.format('url')}",
        f"{path}:11:9: a: rules[0].notify[1]: {ALL_TAKES_NO.format('chat')}",
    ]


# --- defaults ----------------------------------------------------------------------------


def test_rule_keys_win_over_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "defaults:\n"
        "  timeframe: 5m\n"
        "  window: 50\n"
        "  severity: info\n"
        "  for: 2 bars\n"
        "  labels: {team: a}\n"
        "rules:\n"
        "  - name: a\n"
        "    pair: ETHUSDT/BTCUSDT\n"
        "    when: zscore > 2\n"
        "  - name: b\n"
        "    pair: ETHUSDT/BTCUSDT\n"
        "    timeframe: 1m\n"
        "    severity: critical\n"
        "    for: 1m\n"
        "    labels: {desk: b}\n"
        "    when: zscore > 2\n",
    )
    a, b = load_rules(path).rules
    assert (a.timeframe, a.window, a.severity, a.for_, a.labels) == (
        "5m",
        50,
        "info",
        Hold(bars=2),
        {"team": "a"},
    )
    # A rule's value replaces the default whole: labels are not merged key by key.
    assert (b.timeframe, b.window, b.severity, b.for_, b.labels) == (
        "1m",
        50,
        "critical",
        Hold(duration=timedelta(minutes=1)),
        {"desk": "b"},
    )


def test_a_bad_default_is_reported_at_the_defaults_line_for_each_rule_using_it() -> None:
    path = BAD / "bad_default.yaml"
    # `overrides-default` sets its own severity, so only `uses-default` is wrong.
    assert problems(path) == [
        f"{value_at(path, 'severity: urgent')}: uses-default: rules[0].severity: "
        "Input should be 'info', 'warning' or 'critical'"
    ]


def test_a_default_hold_that_is_a_bare_number_is_reported_at_the_defaults(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "defaults:\n  for: 3\nrules:\n"
        "  - {name: a, pair: ETHUSDT/BTCUSDT, timeframe: 1m, window: 100, when: zscore > 2}\n"
        "  - {name: b, pair: ETHUSDT/BTCUSDT, timeframe: 1m, window: 100, when: zscore > 2}\n",
    )
    hint = "write a number of bars as '3 bars', or a duration like '2m', got 3"
    assert problems(path) == [
        f"{path}:2:8: a: rules[0].for: {hint}",
        f"{path}:2:8: b: rules[1].for: {hint}",
    ]


def test_a_key_that_cannot_be_defaulted_is_refused() -> None:
    path = BAD / "not_defaultable.yaml"
    assert problems(path) == [
        f"{at(path, 'when:')}: defaults: 'when' cannot have a default (these can: {CAN_DEFAULT})"
    ]


@pytest.mark.parametrize("key", ["name", "when", "clear", "severty"])
def test_name_when_clear_and_unknown_keys_cannot_be_defaulted(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, f"defaults:\n  {key}: x\nrules: []\n")
    assert problems(path) == [
        f"{path}:2:3: defaults: {key!r} cannot have a default (these can: {CAN_DEFAULT})"
    ]


def test_defaults_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "defaults: [1m]\nrules: []\n")
    assert problems(path) == [f"{path}:1:11: defaults: expected a mapping"]


def test_defaults_apply_to_rules_only_where_they_are_missing_and_keep_the_file() -> None:
    loaded = load_rules(GOOD)
    assert loaded.defaults["window"] == 100
    assert [r.window for r in loaded.rules] == [100, 50, 100, 100]


# --- checked against the settings --------------------------------------------------------


def test_an_unknown_pair_lists_the_configured_ones() -> None:
    path = BAD / "unknown_pair.yaml"
    assert load_rules(path).rules[0].name == "soleth-z"  # fine on its own
    assert problems(path, settings()) == [
        f"{value_at(path, 'pair: SOLUSDT/ETHUSDT')}: soleth-z: pair: 'SOLUSDT/ETHUSDT' matches "
        "no configured pair (configured: ETHUSDT/BTCUSDT, SOLUSDT/BTCUSDT)"
    ]


def test_a_timeframe_or_window_the_pair_is_not_analysed_on() -> None:
    path = BAD / "not_analysed.yaml"
    assert problems(path, settings()) == [
        f"{value_at(path, 'timeframe: 5m')}: solbtc-z: timeframe: "
        "SOLUSDT/BTCUSDT is analysed on 1m only",
        f"{value_at(path, 'window: 200')}: solbtc-z: window: "
        "SOLUSDT/BTCUSDT is analysed with windows 50, 100 only",
    ]


def test_a_glob_matching_several_pairs_checks_each_and_one_matching_none_is_reported() -> None:
    path = BAD / "globs.yaml"
    target = value_at(path, "pair: [")
    window = value_at(path, "window: 200")
    assert problems(path, settings()) == [
        f"{target}: btc-quoted: pair: 'xrp*/*' matches no configured pair "
        "(configured: ETHUSDT/BTCUSDT, SOLUSDT/BTCUSDT)",
        f"{window}: btc-quoted: window: ETHUSDT/BTCUSDT is analysed with windows 50, 100 only",
        f"{window}: btc-quoted: window: SOLUSDT/BTCUSDT is analysed with windows 50, 100 only",
    ]


def test_symbol_targets_timeframes_and_windows() -> None:
    path = BAD / "symbol_targets.yaml"
    series = "1s/50, 1s/100, 1m/50, 1m/100, 5m/50, 5m/100"  # those of ETHUSDT/BTCUSDT
    assert problems(path, settings()) == [
        f"{value_at(path, 'timeframe: 1h')}: eth-vol-hourly: timeframe: "
        "not among bars.timeframes (1s, 1m, 5m)",
        f"{value_at(path, 'window: 200')}: eth-vol-long: window: "
        f"ETHUSDT metrics exist for the timeframes/windows of the pairs it is in: {series}",
        f"{value_at(path, 'symbol: [')}: doge-vol: symbol: 'PEPE*' matches no configured "
        "symbol (configured: BTCUSDT, ETHUSDT, SOLUSDT, DOGEUSDT)",
        f"{value_at(path, 'window: 100', nth=2)}: doge-vol: window: "
        "DOGEUSDT metrics exist for the timeframes/windows of the pairs it is in: "
        "none (it is in no pair)",
    ]


def test_a_symbol_rule_on_a_timeframe_its_pairs_skip_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules:\n"
        "  - {name: sol, symbol: SOLUSDT, timeframe: 5m, window: 100, when: volatility > 1}\n",
    )
    # SOLUSDT is only in SOLUSDT/BTCUSDT, which is analysed on 1m alone.
    assert problems(path, settings()) == [
        f"{value_at(path, 'window: 100')}: sol: window: SOLUSDT metrics exist for the "
        "timeframes/windows of the pairs it is in: 1m/50, 1m/100"
    ]


def test_every_symbol_of_a_rule_needs_its_window() -> None:
    # Regression: check_against unions the (timeframe, window) series of every chosen symbol's
    # pairs, so `symbol: [BTCUSDT, DOGEUSDT]` with 1m/100 passes although DOGEUSDT is in no
    # pair and never gets 1m/100 metrics (the rule silently never sees DOGEUSDT).
    path = BAD / "symbol_window_partial.yaml"
    found = problems(path, settings())
    assert len(found) == 1
    assert found[0].startswith(f"{value_at(path, 'window: 100')}: majors-vol: window: ")
    assert "DOGEUSDT" in found[0]


def test_a_health_rule_ignores_a_default_window() -> None:
    # Regression: `window: 100` in `defaults:` is copied into the health rule on DOGEUSDT, and
    # check_against then refuses it ("symbol metrics exist for the timeframes/windows of the
    # pairs the symbol is in: none (it is in no pair)") although seconds_since_trade needs
    # no timeframe or window.
    loaded = load_rules(DATA / "health_with_default_window.yaml", settings())
    assert [r.name for r in loaded.rules] == ["ethbtc-z", "doge-silent"]


def test_globs_and_names_are_matched_case_insensitively(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules:\n"
        "  - {name: a, pair: ethusdt/btcusdt, timeframe: 1m, window: 50, when: zscore > 2}\n"
        "  - {name: b, symbol: '*usdt', timeframe: 5m, window: 100, when: volatility > 2}\n"
        "  - {name: c, symbol: [eth*, sol*], timeframe: 1m, window: 50, when: vwap > 2}\n",
    )
    loaded = load_rules(path, settings())
    assert loaded.rules[0].pair == ("ethusdt/btcusdt",)  # kept as written
    assert loaded.rules[1].symbol == ("*usdt",)


def test_no_pairs_configured_says_so(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules:\n"
        "  - name: a\n"
        "    pair: ETHUSDT/BTCUSDT\n"
        "    timeframe: 1m\n"
        "    window: 100\n"
        "    when: zscore > 2\n",
    )
    assert problems(path, Settings(feed={"symbols": ["BTCUSDT", "ETHUSDT"]})) == [
        f"{path}:3:11: a: pair: 'ETHUSDT/BTCUSDT' matches no configured pair "
        "(configured: none: configure pairs in the settings)"
    ]


def test_check_against_without_marks_names_only_the_file() -> None:
    path = BAD / "unknown_pair.yaml"
    loaded = load_rules(path)
    assert check_against(loaded, settings(), Path("rules.yaml")) == [
        "rules.yaml: soleth-z: pair: 'SOLUSDT/ETHUSDT' matches no configured pair "
        "(configured: ETHUSDT/BTCUSDT, SOLUSDT/BTCUSDT)"
    ]
    assert check_against(load_rules(GOOD), settings(), GOOD) == []


def test_problems_in_the_file_are_reported_before_the_settings_are_consulted() -> None:
    path = BAD / "unknown_key.yaml"
    assert problems(path, settings()) == problems(path)


def test_a_duplicate_name_does_not_hide_the_other_problems(tmp_path: Path) -> None:
    # Regression: load_rules raises on repeated names before the schema runs, so a file with a
    # repeated name reports only that; its other problems appear one fix later (the issue
    # asks that an invalid file "logs every error").
    rule = "{{name: a, pair: ETHUSDT/BTCUSDT, timeframe: 1m, window: 100, when: {}}}"
    path = write(
        tmp_path,
        f"rules:\n  - {rule.format('zscore > 2')}\n  - {rule.format('zscor > 2')}\n",
    )
    assert problems(path) == [
        f"{path}:3:12: a: rules[1].name: the name is used twice (first at line 2)",
        f"{value_at(path, 'when: zscor', nth=2)}: a: rules[1].when: unknown metric 'zscor'; "
        "did you mean 'zscore'?",
    ]


def test_alias_bombs_and_deep_nesting_are_refused_not_expanded(tmp_path: Path) -> None:
    # Review fix: aliases doubling 24 times expanded to 16M values (GBs) before failing.
    lines = ["x0: &a0 [1, 2]"] + [f"x{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 25)]
    bomb = write(tmp_path, "\n".join(lines) + "\nrules: []\n")
    with pytest.raises(ConfigError) as caught:
        load_rules(bomb)
    (line,) = caught.value.problems
    assert "expands to over 200,000 values (aliases?): refused" in line
    deep = tmp_path / "deep.yaml"
    deep.write_text("rules: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_rules(deep)
    assert "nested deeper than 64" in caught.value.problems[0]
