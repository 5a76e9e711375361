"""The example rules file and docs/rules.md stay valid and true to the rules schema."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest

from pairwatch.analytics.conditions import AllOf, AnyOf, Comparison
from pairwatch.analytics.engine import SNAPSHOT_METRICS
from pairwatch.analytics.symbol_metrics import SYMBOL_METRICS
from pairwatch.config.rules import (
    ALL,
    HEALTH_METRICS,
    NOTIFIERS,
    TEMPLATE_FIELDS,
    Hold,
    Route,
    Rule,
    RulesFile,
)
from pairwatch.config.rules_load import load_rules
from pairwatch.config.settings import Settings
from pairwatch.daemon.demo import demo_settings
from pairwatch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "config" / "rules.example.yaml"
DOCS = ROOT / "docs" / "rules.md"
COMMENTED_ROUTE = re.compile(r"^(\s+)# (- (?:telegram|mqtt|webhook):.*)$", re.MULTILINE)
YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)
SHELL_BLOCK = re.compile(r"```\n(\$ pairwatch rules check .*?)```", re.DOTALL)
TABLE_NAME = re.compile(r"^\|\s*`([a-z_]+)`\s*\|", re.MULTILINE)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Return the demo's settings, untouched by the environment of the test run."""
    for name in os.environ:
        if name.upper().startswith("PAIRWATCH_"):
            monkeypatch.delenv(name)
    return demo_settings(Settings(), tmp_path)


def section(heading: str) -> str:
    """Return the text of docs/rules.md under ``heading`` up to the next heading."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    following = re.search(r"^#{1,6} ", text[start:], re.MULTILINE)
    return text[start : start + following.start()] if following else text[start:]


def table_names(heading: str) -> list[str]:
    """Return the backticked first column of every table row under ``heading``."""
    return TABLE_NAME.findall(section(heading))


def test_example_loads_against_the_demo_settings(settings: Settings) -> None:
    assert [p.name for p in settings.pairs] == ["ETHUSDT/BTCUSDT"]
    assert settings.pairs[0].windows == (30, 100)

    rules = {rule.name: rule for rule in load_rules(EXAMPLE, settings).rules}

    assert list(rules) == [
        "ethbtc-z-fast",
        "ethbtc-z-cointegrated",
        "ethbtc-spread-mean",
        "feed-silent",
        "volatility-high",
    ]
    assert [rule.kind for rule in rules.values()] == ["pair", "pair", "pair", "symbol", "symbol"]
    assert {rule.notify for rule in rules.values()} == {(Route(notifier="all"),)}


def test_example_fast_z_rule_is_on_the_demo_pairs_shortest_timeframe_and_window(
    settings: Settings,
) -> None:
    rule = load_rules(EXAMPLE, settings).rules[0]

    assert rule.pair == ("ETHUSDT/BTCUSDT",)
    assert (rule.timeframe, rule.window) == (settings.bars.timeframe_lengths[0][0], 30)
    assert rule.when == Comparison("zscore", ">=", 2.0, absolute=True)
    assert rule.for_ == Hold(bars=3)
    assert rule.clear == Comparison("zscore", "<", 1.0, absolute=True)
    assert rule.keep_firing_for == timedelta(seconds=2)
    assert rule.repeat_every is None
    assert (rule.severity, rule.no_data, rule.notify_resolved) == ("info", "keep", True)
    assert rule.labels == {"strategy": "demo"}
    assert rule.when.holds({"zscore": -2.1}) is True
    assert rule.clear.holds({"zscore": 1.2}) is False
    assert rule.clear.holds({"zscore": -0.7}) is True


def test_example_cointegration_crossing_and_symbol_rules(settings: Settings) -> None:
    rules = load_rules(EXAMPLE, settings).rules
    coint, crossing, silent, volatility = rules[1:]

    assert (coint.timeframe, coint.window) == ("1m", 100)
    assert coint.when == AllOf(
        (
            Comparison("zscore", ">=", 2.0, absolute=True),
            Comparison("correlation", ">=", 0.7),
            Comparison("coint_pvalue", "<", 0.05),
        )
    )
    assert coint.for_ == Hold(duration=timedelta(minutes=2))
    assert coint.keep_firing_for == timedelta(minutes=2)
    assert coint.repeat_every == timedelta(minutes=30)
    assert coint.severity == "warning"  # from defaults
    assert coint.labels == {"strategy": "mean-reversion", "desk": "crypto"}

    assert crossing.when == AnyOf(
        (Comparison("zscore", "crosses_above", 0.0), Comparison("zscore", "crosses_below", 0.0))
    )
    assert crossing.for_ == Hold()
    assert crossing.notify_resolved is False

    assert silent.symbol == ("*",)
    assert (silent.timeframe, silent.window) == (None, None)
    assert silent.when == AnyOf(
        (Comparison("seconds_since_trade", ">", 30.0), Comparison("feed_lag_ms", ">", 2000.0))
    )
    assert silent.for_ == Hold(duration=timedelta(seconds=10))
    assert silent.severity == "critical"

    assert volatility.symbol == ("BTCUSDT", "ETHUSDT")
    assert (volatility.timeframe, volatility.window) == ("1m", 30)
    assert volatility.when == Comparison("volatility", ">", 1.0)
    assert volatility.clear == Comparison("volatility", "<", 0.8)
    assert volatility.for_ == Hold(bars=3)
    assert volatility.no_data == "resolve"


def test_example_commented_out_routes_are_valid(settings: Settings, tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert len(COMMENTED_ROUTE.findall(text)) == 2
    path = tmp_path / "routes.yaml"
    path.write_text(COMMENTED_ROUTE.sub(r"\1\2", text), encoding="utf-8")

    rule = load_rules(path, settings).rules[1]

    assert rule.notify == (
        Route(notifier="all"),
        Route(notifier="telegram", chat="-1001234567890"),
        Route(notifier="mqtt", topic="desk/alerts/ethbtc"),
    )


def test_docs_rule_key_table_lists_exactly_the_schema_keys() -> None:
    documented = table_names("## Rule keys")
    schema = [field.alias or name for name, field in Rule.model_fields.items()]

    assert len(documented) == len(set(documented))
    assert sorted(documented) == sorted(schema)
    assert sorted(table_names("## File layout")) == sorted(RulesFile.model_fields)


def test_docs_metric_tables_list_exactly_the_metrics() -> None:
    assert sorted(table_names("### Pair rules")) == sorted(SNAPSHOT_METRICS)
    assert sorted(table_names("### Symbol rules")) == sorted((*SYMBOL_METRICS, *HEALTH_METRICS))


def test_docs_message_fields_and_notifiers_are_the_schema_ones() -> None:
    assert sorted(table_names("## Messages")) == sorted(TEMPLATE_FIELDS)
    assert sorted(table_names("## Routes")) == sorted((*NOTIFIERS, ALL))


def test_docs_rules_files_are_valid_against_the_demo_settings(
    settings: Settings, tmp_path: Path
) -> None:
    intro = section("## A first rule") + section("## File layout")
    blocks = YAML_BLOCK.findall(intro)
    assert len(blocks) == 2
    for i, block in enumerate(blocks):
        path = tmp_path / f"block{i}.yaml"
        path.write_text(block, encoding="utf-8")
        assert [rule.name for rule in load_rules(path, settings).rules] == ["ethbtc-z"]


def test_docs_check_output_is_what_the_loader_says(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checking = section("## Checking a file")
    files = YAML_BLOCK.findall(checking)
    outputs = SHELL_BLOCK.findall(checking)
    assert len(files) == 2
    assert len(outputs) == 3
    monkeypatch.chdir(tmp_path)

    for text, output, against in zip(files, outputs[:2], (None, settings), strict=True):
        Path("rules.yaml").write_text(text, encoding="utf-8")
        expected = [
            line.removeprefix("pairwatch: ")
            for line in output.splitlines()
            if line.startswith("pairwatch: ")
        ]
        with pytest.raises(ConfigError) as caught:
            load_rules(Path("rules.yaml"), against)
        assert caught.value.problems == expected

    rules = load_rules(EXAMPLE).rules
    pairs = sum(rule.kind == "pair" for rule in rules)
    summary = f"{len(rules)} rules ok ({pairs} on pairs, {len(rules) - pairs} on symbols)"
    assert summary in outputs[2]
