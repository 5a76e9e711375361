"""Loading rules fast changes nothing: the data built while walking the YAML nodes equals
what the safe constructors build, pattern matches are shared without losing a problem, and
the garbage collector is left as it was found."""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pairwatch.config.rules_load import _parse, load_rules
from pairwatch.config.settings import Settings
from pairwatch.errors import ConfigError

GOOD = Path(__file__).parents[2] / "data" / "rules" / "good.yaml"


def reference(text: str) -> tuple[str, Any]:
    """Return what the safe loader makes of ``text``, or the kind of error it raises."""
    try:
        return "data", yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return "yaml error", None
    except ValueError:
        return "value error", None


def parsed(text: str) -> tuple[str, Any]:
    try:
        return "data", _parse(Path("rules.yaml"), text)[0]
    except ConfigError as exc:
        return ("yaml error", None) if "not valid YAML" in str(exc) else ("refused", str(exc))
    except ValueError:
        return "value error", None


_scalars = st.one_of(
    st.text(max_size=8),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.sampled_from(["yes", "no", "on", "~", "null", "0x1f", "1_000", "0o17", "1:30", ".inf"]),
)
_keys = st.one_of(st.text(min_size=1, max_size=6), st.integers(-5, 5), st.booleans())
_documents = st.dictionaries(
    _keys,
    st.recursive(
        _scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)
        ),
        max_leaves=20,
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(document=_documents, flow=st.sampled_from([None, True, False]))
def test_data_built_while_walking_equals_the_safe_constructors(
    document: dict[Any, Any], flow: bool | None
) -> None:
    text = yaml.safe_dump(document, default_flow_style=flow, allow_unicode=True)
    kind, expected = reference(text)
    assert kind == "data"
    got_kind, got = parsed(text)
    assert (got_kind, got) == ("data", expected) or got_kind == "refused"
    if got_kind == "refused":  # keys that print the same, e.g. 1 and '1': refused as twice
        assert "key given twice" in got


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb: [1, 2.5, true, null, ~, 0x1f, 1_000, .inf, yes, 'q', \"d\", 1:30]\n",
        "c: &x {k: v, 3: four, null: n, true: t}\nd: *x\n",
        "e: !!str 12\nf: !!int '7'\ng: !!float 1\n",
        "when: 2020-01-01\nat: 2020-01-01 10:00:00\n",  # timestamps: YAML's own constructor
        "a: &x {k: v}\nb:\n  <<: *x\n  z: 1\nc: *x\n",  # merge keys: YAML's own constructor
        "a: {'<<': 1, b: 2}\n",
        "a: {=: 1}\n",
        "a: !!binary aGVsbG8=\n",
        "a: !!set {x, y}\n",
        "a: !!omap [x: 1, y: 2]\n",
        "a: 0b_\n",  # resolves as an int, which int() then refuses
        "a: [!!float x]\nb: !!int zz\n",
        "a: 2020-02-30\n",
        "a: !foo 1\n",
        "? [a, b]\n: 1\n",
        "? {a: 1}\n: 1\n",
        "? !!str {a: 1}\n: 1\n",
        "a: !!map foo\n",
        "a: !!seq foo\n",
        "a: !!str [1]\n",
        "- 1\n- 2\n",
        "5\n",
        "",
        "# nothing\n",
    ],
)
def test_every_kind_of_node_gives_the_safe_constructors_data_or_error(text: str) -> None:
    expected_kind, expected = reference(text)
    got_kind, got = parsed(text)
    if not isinstance(expected, dict):  # the top level must be a mapping: refused either way
        assert got_kind in ("refused", expected_kind)
        return
    assert (got_kind, got) == (expected_kind, expected)


def test_an_aliased_value_is_one_object_as_yaml_makes_it() -> None:
    data, _ = _parse(Path("rules.yaml"), "a: &x {k: [1, 2]}\nb: *x\n")
    assert data["a"] is data["b"]


def test_a_pattern_matching_nothing_is_reported_for_every_rule_using_it(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n"
        + "".join(
            f"  - {{name: r{i}, pair: XRP*, timeframe: 1m, window: 30, when: zscore > 2}}\n"
            for i in range(3)
        )
    )
    configured = Settings(feed={"symbols": ["BTCUSDT", "ETHUSDT"]}, pairs=["ETHUSDT/BTCUSDT"])
    with pytest.raises(ConfigError) as caught:
        load_rules(path, configured)
    assert [line.split(": ", 2)[1] for line in caught.value.problems] == ["r0", "r1", "r2"]


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_leaves_the_garbage_collector_as_it_was(tmp_path: Path, enabled: bool) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [{name: x}]\n")
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        load_rules(GOOD)
        assert gc.isenabled() is enabled
        with pytest.raises(ConfigError):
            load_rules(bad)
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_loads_in_threads_leave_the_garbage_collector_running() -> None:
    assert gc.isenabled()
    errors: list[BaseException] = []

    def load() -> None:
        try:
            for _ in range(5):
                load_rules(GOOD)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert gc.isenabled()
