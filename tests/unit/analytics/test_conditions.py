"""The condition grammar (``metric OP number``, ``abs()``) and its three-valued truth."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pairwatch.analytics.conditions import (
    CROSSINGS,
    OPERATORS,
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    comparisons,
    parse_comparison,
)

HELP = (
    "write METRIC OP NUMBER or abs(METRIC) OP NUMBER, OP one of "
    "> >= < <= == != crosses_above crosses_below, e.g. 'abs(zscore) >= 2'"
)
NAN = math.nan


# --- parsing -----------------------------------------------------------------------------


def test_operators_are_the_six_comparisons_and_the_two_crossings() -> None:
    assert OPERATORS == (">", ">=", "<", "<=", "==", "!=", "crosses_above", "crosses_below")
    assert CROSSINGS == ("crosses_above", "crosses_below")


@pytest.mark.parametrize("op", [">", ">=", "<", "<=", "==", "!=", "crosses_above", "crosses_below"])
def test_every_operator_parses(op: str) -> None:
    assert parse_comparison(f"zscore {op} 2") == Comparison("zscore", op, 2.0)
    assert parse_comparison(f"abs(zscore) {op} 2") == Comparison("zscore", op, 2.0, absolute=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("zscore>2", Comparison("zscore", ">", 2.0)),
        ("zscore >= 2", Comparison("zscore", ">=", 2.0)),
        ("  zscore  <=  2  ", Comparison("zscore", "<=", 2.0)),
        ("\tzscore\t<\t2\n", Comparison("zscore", "<", 2.0)),
        ("abs(zscore)>=2", Comparison("zscore", ">=", 2.0, absolute=True)),
        ("abs( zscore ) >= 2", Comparison("zscore", ">=", 2.0, absolute=True)),
        ("adf_pvalue < 0.05", Comparison("adf_pvalue", "<", 0.05)),
        ("max_abs_zscore > 3", Comparison("max_abs_zscore", ">", 3.0)),
        ("x2 != 0", Comparison("x2", "!=", 0.0)),
        ("kalman_zscore crosses_below -2", Comparison("kalman_zscore", "crosses_below", -2.0)),
        ("abs(zscore)crosses_above 1.5", Comparison("zscore", "crosses_above", 1.5, True)),
    ],
)
def test_comparison_text_parses_with_any_whitespace(text: str, expected: Comparison) -> None:
    assert parse_comparison(text) == expected


@pytest.mark.parametrize(
    ("number", "value"),
    [
        ("2", 2.0),
        ("0", 0.0),
        ("007", 7.0),
        ("+2", 2.0),
        ("-2", -2.0),
        ("2.5", 2.5),
        ("2.", 2.0),
        (".5", 0.5),
        ("-.5", -0.5),
        ("+0.25", 0.25),
        ("1e3", 1000.0),
        ("1E3", 1000.0),
        ("1e+3", 1000.0),
        ("2.5e-3", 0.0025),
        ("-1.5E-2", -0.015),
        (".5e1", 5.0),
        ("1e308", 1e308),
    ],
)
def test_numbers_are_ints_decimals_and_exponents_with_a_sign(number: str, value: float) -> None:
    parsed = parse_comparison(f"zscore >= {number}")
    assert parsed.threshold == value
    assert type(parsed.threshold) is float


@pytest.mark.parametrize(
    "text",
    [
        "zscore = 2",  # not an operator
        "zscore => 2",
        "zscore =< 2",
        "zscore >> 2",
        "zscore <> 2",
        "zscore ~ 2",
        "zscore crosses 2",
        "zscore above 2",
        "zscore >",  # missing number
        "zscore >= ",
        "abs(zscore) >=",
        ">= 2",  # missing metric
        "abs() >= 2",
        "2 < zscore",  # reversed
        "",
        "   ",
        "zscore",
        "zscore >= two",
        "zscore >= 1_000",
        "zscore >= 0x10",
        "zscore >= 1e",
        "zscore >= .",
        "zscore >= --2",
        "zscore >= 2 2",
        "zscore >= inf",
        "zscore >= nan",
        "Zscore >= 2",  # metric names are lower case
        "1zscore >= 2",
        "_zscore >= 2",
        "z-score >= 2",
        "abs (zscore) >= 2",
        "ABS(zscore) >= 2",
        "abs(zscore >= 2",
        "abs(abs(z)) > 1",  # code-like input
        "-zscore > 1",
        "zscore * 2 > 1",
        "zscore > 2 or 1",
        "zscore > 2 and correlation > 0.7",
        "zscore > 2; import os",
        "__import__('os')",
        "__import__('os').system('true') or zscore > 2",
        "zscore.real > 1",
        "zscore[0] > 1",
        "max(zscore, 1) > 1",
        "{zscore} > 1",
    ],
)
def test_anything_else_is_refused_with_the_grammar(text: str) -> None:
    with pytest.raises(ValueError, match="cannot read") as caught:
        parse_comparison(text)
    assert str(caught.value) == f"cannot read {text!r}: {HELP}"


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1e309"])
def test_numbers_that_overflow_to_infinity_are_refused(number: str) -> None:
    text = f"zscore > {number}"
    with pytest.raises(ValueError, match="must be finite") as caught:
        parse_comparison(text)
    assert str(caught.value) == f"the number in {text!r} must be finite"


@given(
    metric=st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
    op=st.sampled_from(OPERATORS),
    threshold=st.floats(allow_nan=False, allow_infinity=False),
    absolute=st.booleans(),
    space=st.sampled_from(["", " ", "  ", "\t"]),
)
def test_any_metric_op_and_finite_number_parse_back(
    metric: str, op: str, threshold: float, absolute: bool, space: str
) -> None:
    name = f"abs({metric})" if absolute else metric
    text = f"{space}{name}{space}{op}{space}{threshold!r}{space}"
    if op in CROSSINGS and not space:
        # Without spaces a word operator runs into the metric name; write it apart.
        text = f"{name} {op} {threshold!r}"
    assert parse_comparison(text) == Comparison(metric, op, threshold, absolute)


@pytest.mark.parametrize(
    ("comparison", "text"),
    [
        (Comparison("zscore", ">=", 2.0), "zscore >= 2"),
        (Comparison("zscore", ">=", 2.0, absolute=True), "abs(zscore) >= 2"),
        (Comparison("adf_pvalue", "<", 0.05), "adf_pvalue < 0.05"),
        (Comparison("kalman_zscore", "crosses_below", -2.5), "kalman_zscore crosses_below -2.5"),
    ],
)
def test_str_writes_the_comparison_back(comparison: Comparison, text: str) -> None:
    assert str(comparison) == text
    assert parse_comparison(text) == comparison


# --- truth of one comparison -----------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "below", "equal", "above"),
    [
        (">", False, False, True),
        (">=", False, True, True),
        ("<", True, False, False),
        ("<=", True, True, False),
        ("==", False, True, False),
        ("!=", True, False, True),
    ],
)
def test_comparison_truth_table(op: str, below: bool, equal: bool, above: bool) -> None:
    c = Comparison("zscore", op, 2.0)
    assert c.holds({"zscore": 1.5}) is below
    assert c.holds({"zscore": 2.0}) is equal
    assert c.holds({"zscore": 2.5}) is above


@pytest.mark.parametrize(
    ("value", "expected"),
    [(-2.5, True), (-2.0, True), (-1.9, False), (0.0, False), (1.9, False), (2.0, True)],
)
def test_abs_compares_the_magnitude(value: float, expected: bool) -> None:
    c = Comparison("zscore", ">=", 2.0, absolute=True)
    assert c.value({"zscore": value}) == abs(value)
    assert c.holds({"zscore": value}) is expected


@pytest.mark.parametrize("op", OPERATORS)
@pytest.mark.parametrize(
    "values", [{}, {"zscore": NAN}, {"zscore": None}, {"other": 5.0}, {"zscore": -NAN}]
)
def test_a_missing_nan_or_none_value_is_no_data(op: str, values: Mapping[str, float]) -> None:
    for absolute in (False, True):
        c = Comparison("zscore", op, 2.0, absolute)
        assert math.isnan(c.value(values))
        assert c.holds(values, previous={"zscore": 1.0}) is None
        assert c.holds(values, previous={"zscore": 3.0}) is None


def test_infinite_values_compare_as_numbers() -> None:
    assert Comparison("zscore", ">", 2.0).holds({"zscore": math.inf}) is True
    assert Comparison("zscore", ">", 2.0).holds({"zscore": -math.inf}) is False
    assert Comparison("zscore", ">", 2.0, absolute=True).holds({"zscore": -math.inf}) is True


def test_integer_values_are_read_as_floats() -> None:
    c = Comparison("gaps", ">", 0.0)
    assert c.value({"gaps": 3}) == 3.0
    assert c.holds({"gaps": 3}) is True
    assert c.holds({"gaps": 0}) is False


def test_plain_comparisons_ignore_the_previous_bar() -> None:
    c = Comparison("zscore", ">", 2.0)
    assert c.holds({"zscore": 3.0}, previous=None) is True
    assert c.holds({"zscore": 3.0}, previous={"zscore": NAN}) is True
    assert c.holds({"zscore": 3.0}, previous={"zscore": 5.0}) is True


# --- crossings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "now", "expected"),
    [
        (1.0, 3.0, True),
        (1.9, 2.0, True),  # reaching the line counts: before < 2 <= now
        (2.0, 3.0, False),  # starting on the line is not a crossing
        (2.0, 2.0, False),
        (3.0, 4.0, False),
        (1.0, 1.5, False),
        (3.0, 1.0, False),  # the other direction
        (-5.0, 5.0, True),
    ],
)
def test_crosses_above(before: float, now: float, expected: bool) -> None:
    c = Comparison("zscore", "crosses_above", 2.0)
    assert c.holds({"zscore": now}, previous={"zscore": before}) is expected


@pytest.mark.parametrize(
    ("before", "now", "expected"),
    [
        (3.0, -3.0, True),
        (-1.0, -2.5, True),
        (-1.9, -2.0, True),  # reaching the line counts: before > -2 >= now
        (-2.0, -3.0, False),  # starting on the line is not a crossing
        (-2.0, -2.0, False),
        (-3.0, -4.0, False),
        (0.0, -1.0, False),
        (-3.0, 0.0, False),  # the other direction
    ],
)
def test_crosses_below(before: float, now: float, expected: bool) -> None:
    c = Comparison("zscore", "crosses_below", -2.0)
    assert c.holds({"zscore": now}, previous={"zscore": before}) is expected


@pytest.mark.parametrize("op", CROSSINGS)
@pytest.mark.parametrize("previous", [None, {}, {"zscore": NAN}, {"zscore": None}, {"x": 1.0}])
def test_a_crossing_without_a_previous_value_is_no_data(
    op: str, previous: Mapping[str, float] | None
) -> None:
    c = Comparison("zscore", op, 0.0)
    assert c.holds({"zscore": 5.0}, previous) is None
    assert c.holds({"zscore": -5.0}, previous) is None


def test_a_crossing_of_abs_compares_magnitudes_on_both_bars() -> None:
    c = Comparison("zscore", "crosses_above", 2.0, absolute=True)
    assert c.holds({"zscore": -2.5}, previous={"zscore": 1.0}) is True
    assert c.holds({"zscore": -2.5}, previous={"zscore": -3.0}) is False
    below = Comparison("zscore", "crosses_below", 0.5, absolute=True)
    assert below.holds({"zscore": -0.2}, previous={"zscore": -1.0}) is True


def test_a_crossing_needs_the_current_value_too() -> None:
    c = Comparison("zscore", "crosses_above", 2.0)
    assert c.holds({"zscore": NAN}, previous={"zscore": 1.0}) is None


# --- compositions: Kleene logic --------------------------------------------------------

METRICS = ("a", "b", "c")
T, F, U = Comparison("a", ">", 0.0), Comparison("a", "<", 0.0), Comparison("missing", ">", 0.0)
VALUES = {"a": 1.0}


@pytest.mark.parametrize(
    ("parts", "all_", "any_"),
    [
        ((T,), True, True),
        ((F,), False, False),
        ((U,), None, None),
        ((T, T), True, True),
        ((T, F), False, True),
        ((F, F), False, False),
        ((T, U), None, True),
        ((F, U), False, None),
        ((U, U), None, None),
        ((U, F, T), False, True),
    ],
)
def test_all_and_any_truth_table(
    parts: tuple[Comparison, ...], all_: bool | None, any_: bool | None
) -> None:
    assert AllOf(parts).holds(VALUES) is all_
    assert AnyOf(parts).holds(VALUES) is any_


Observed = Mapping[str, float | None]


def _ref_leaf(c: Comparison, values: Observed, previous: Observed | None) -> bool | None:
    """Evaluate one comparison the long way round (the reference for the property test)."""

    def read(source: Observed | None) -> float | None:
        if source is None or c.metric not in source:
            return None
        v = source[c.metric]
        if v is None or math.isnan(v):
            return None
        return -v if c.absolute and v < 0 else v

    now = read(values)
    if now is None:
        return None
    t = c.threshold
    if c.op == ">":
        return now > t
    if c.op == ">=":
        return now >= t
    if c.op == "<":
        return now < t
    if c.op == "<=":
        return now <= t
    if c.op == "==":
        return now == t
    if c.op == "!=":
        return now != t
    before = read(previous)
    if before is None:
        return None
    if c.op == "crosses_above":
        return before < t and now >= t
    return before > t and now <= t


_RANK = {False: 0, None: 1, True: 2}


def _ref(condition: Condition, values: Observed, previous: Observed | None) -> bool | None:
    """Kleene logic: with False < unknown < True, ``all`` is the minimum, ``any`` the maximum."""
    if isinstance(condition, Comparison):
        return _ref_leaf(condition, values, previous)
    results = [_ref(p, values, previous) for p in condition.parts]
    pick = min if isinstance(condition, AllOf) else max
    return pick(results, key=lambda r: _RANK[r])


_leaves = st.builds(
    Comparison,
    metric=st.sampled_from(METRICS),
    op=st.sampled_from(OPERATORS),
    threshold=st.sampled_from([-1.0, 0.0, 1.0]),
    absolute=st.booleans(),
)
_conditions: st.SearchStrategy[Condition] = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=4).map(lambda ps: AllOf(tuple(ps))),
        st.lists(inner, min_size=1, max_size=4).map(lambda ps: AnyOf(tuple(ps))),
    ),
    max_leaves=12,
)
_value = st.one_of(st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, NAN]), st.none())
_values = st.dictionaries(st.sampled_from(METRICS), _value)


@given(condition=_conditions, values=_values, previous=st.one_of(st.none(), _values))
def test_compositions_follow_kleene_logic(
    condition: Condition,
    values: dict[str, float | None],
    previous: dict[str, float | None] | None,
) -> None:
    expected = _ref(condition, values, previous)
    assert condition.holds(values, previous) is expected  # type: ignore[arg-type]


# --- walking a tree --------------------------------------------------------------------


def test_comparisons_walks_nested_trees_in_order() -> None:
    a = Comparison("zscore", ">=", 2.0, absolute=True)
    b = Comparison("correlation", ">=", 0.7)
    c = Comparison("adf_pvalue", "<", 0.05)
    d = Comparison("kalman_zscore", "crosses_above", 2.0)
    tree = AnyOf((AllOf((a, AnyOf((b, c)))), d, AllOf((AllOf((a,)),))))
    assert list(comparisons(tree)) == [a, b, c, d, a]
    assert list(comparisons(a)) == [a]
    assert list(comparisons(AllOf(()))) == []


def test_conditions_are_frozen_values() -> None:
    c = Comparison("zscore", ">", 2.0)
    with pytest.raises(AttributeError):
        c.threshold = 3.0  # type: ignore[misc]
    assert {AllOf((c,)), AllOf((Comparison("zscore", ">", 2.0),))} == {AllOf((c,))}
