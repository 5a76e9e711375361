"""A rule's ``message:`` template cannot reach attributes, items, positions or conversions.

Each hostile template is written into a rules file and loaded as the daemon loads it: it
must be refused at the message's file:line:column with a message that says why. The
harmless look-alikes (escaped braces, bounded number formats) load and render exactly as
asserted, through the same ``render`` the alert stage uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pairwatch.analytics.alerting import Transition
from pairwatch.analytics.rule_engine import render
from pairwatch.config.rules_load import load_rules
from pairwatch.errors import ConfigError

PLAIN = "is not a plain field name (no attributes, indexes or positions)"


def rules_file(tmp_path: Path, message: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - name: t\n    pair: ETHUSDT/BTCUSDT\n    timeframe: 1m\n    window: 30\n"
        f"    when: abs(zscore) >= 2\n    message: {json.dumps(message)}\n",
        encoding="utf-8",
    )
    return path


def problems(tmp_path: Path, message: str) -> list[str]:
    path = rules_file(tmp_path, message)
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    return [p.replace(str(path), "FILE") for p in caught.value.problems]


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("{value.__class__}", f"{{value.__class__}} {PLAIN}"),
        ("{zscore.__class__.__mro__}", f"{{zscore.__class__.__mro__}} {PLAIN}"),
        ("{zscore.real}", f"{{zscore.real}} {PLAIN}"),
        (
            "{pair.__class__.__init__.__globals__}",
            f"{{pair.__class__.__init__.__globals__}} {PLAIN}",
        ),
        ("{0}", f"{{0}} {PLAIN}"),
        ("{}", f"{{}} {PLAIN}"),
        ("{pair[0]}", f"{{pair[0]}} {PLAIN}"),
        ("{pair!r}", "{pair}: no conversions or nested fields"),
        ("{pair!a}", "{pair}: no conversions or nested fields"),
        ("{zscore:{width}}", "{zscore}: no conversions or nested fields"),
        ("{pair:{pair}}", "{pair}: no conversions or nested fields"),
        ("{zscore:>41}", "{zscore:>41}: widths and precisions up to 40"),
        ("{zscore:.1e308}", "{zscore:.1e308}: widths and precisions up to 40"),
    ],
)
def test_a_template_that_reaches_beyond_plain_fields_is_refused_at_its_line(
    tmp_path: Path, template: str, why: str
) -> None:
    assert problems(tmp_path, template) == [f"FILE:7:14: t: rules[0].message: {why}"]


@pytest.mark.parametrize("name", ["__import__", "__class__", "__builtins__", "self", "rule_"])
def test_a_name_that_is_not_a_template_field_is_refused(tmp_path: Path, name: str) -> None:
    [problem] = problems(tmp_path, f"{{{name}}}")
    assert problem.startswith(f"FILE:7:14: t: rules[0].message: unknown field {{{name}}}")


@pytest.mark.parametrize("spec", ["<" * 10_000, "x" * 10_000])
def test_a_10_000_character_spec_is_refused_at_its_line(tmp_path: Path, spec: str) -> None:
    [problem] = problems(tmp_path, f"{{zscore:{spec}}}")
    assert problem == (
        f"FILE:7:14: t: rules[0].message: {{zscore:{spec[:20]}…}}: widths and precisions up to 40"
    )


@pytest.mark.parametrize("digit", ["9", "0"])
def test_a_10_000_digit_width_is_refused_at_its_line(tmp_path: Path, digit: str) -> None:
    [problem] = problems(tmp_path, f"{{zscore:{digit * 10_000}}}")
    assert problem == (
        f"FILE:7:14: t: rules[0].message: {{zscore:{digit * 20}…}}: widths and precisions up to 40"
    )


def test_a_10_000_digit_width_is_refused_with_the_width_limit_in_a_short_line(
    tmp_path: Path,
) -> None:
    [problem] = problems(tmp_path, f"{{zscore:{'9' * 10_000}}}")
    assert "widths and precisions up to 40" in problem
    assert len(problem) < 500


def transition() -> Transition:
    return Transition("firing", 1_700_000_000_000, "zscore", 2.5, 2.0)


@pytest.mark.parametrize(
    ("template", "rendered"),
    [
        ("{{value.__class__}}", "{value.__class__}"),  # escaped braces: literal text
        ("{{0}} {{pair!r}}", "{0} {pair!r}"),
        ("z={zscore:+.2f} {pair:>20}", "z=+2.50      ETHUSDT/BTCUSDT"),
        ("{zscore:40.40f}", "2.5000000000000000000000000000000000000000"),
        ("{window:>40d}|", " " * 38 + "30|"),
    ],
)
def test_harmless_look_alikes_load_and_render_exactly(
    tmp_path: Path, template: str, rendered: str
) -> None:
    [rule] = load_rules(rules_file(tmp_path, template)).rules
    values = {"zscore": 2.5}
    assert render(rule, "ETHUSDT/BTCUSDT", "1m", 30, transition(), values) == rendered
