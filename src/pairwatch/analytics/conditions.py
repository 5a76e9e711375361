"""Alert conditions: a tiny, safe grammar over metric values, and its three-valued truth.

A comparison is written ``metric OP number`` or ``abs(metric) OP number``, with OP one of
``> >= < <= == !=`` or ``crosses_above`` / ``crosses_below`` (true on the bar where the value
moves from below the number to at or above it, or the reverse). Compositions are
``all:`` / ``any:`` lists of conditions. Nothing is evaluated as code: the text is matched
against one regular expression.

Truth has three values: True, False, and None for *no data* — a metric that is missing or
NaN (warming up, a flat window), or, for a crossing, no previous value. ``all`` is False
if any part is False, else None if any part has no data; ``any`` is True if any part is
True, else None if any part has no data.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
CROSSINGS = ("crosses_above", "crosses_below")
OPERATORS = (*COMPARE, *CROSSINGS)

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_PATTERN = re.compile(
    rf"""^\s*(?:abs\(\s*(?P<abs>[a-z][a-z0-9_]*)\s*\)|(?P<metric>[a-z][a-z0-9_]*))
    \s*(?P<op>>=|<=|==|!=|>|<|crosses_above|crosses_below)
    \s*(?P<threshold>{_NUMBER})\s*$""",
    re.VERBOSE,
)

Values = Mapping[str, float]
Holds = Callable[[Values, Values | None], bool | None]
"""A compiled condition: ``holds(values, previous)`` (see ``compile_condition``)."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """``[abs(]metric[)] op threshold``."""

    metric: str
    op: str
    threshold: float
    absolute: bool = False
    _test: Callable[[float, float], bool] | None = field(
        init=False, repr=False, compare=False, default=None
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_test", COMPARE.get(self.op))  # None for a crossing

    def __str__(self) -> str:
        name = f"abs({self.metric})" if self.absolute else self.metric
        return f"{name} {self.op} {self.threshold:g}"

    def compare(self, value: float) -> bool:
        """Return the comparison of a present value with the threshold (not for crossings)."""
        test = self._test
        assert test is not None
        return test(value, self.threshold)

    def value(self, values: Values) -> float:
        """Return the compared value (NaN when missing)."""
        v = values.get(self.metric, math.nan)
        v = math.nan if v is None else float(v)
        return abs(v) if self.absolute else v

    def holds(self, values: Values, previous: Values | None = None) -> bool | None:
        """Return whether it holds on ``values`` (``previous``: the bar before, for crossings)."""
        now = values.get(self.metric)
        if now is None or now != now:  # noqa: PLR0124 -- missing, or NaN: no data
            return None
        if self.absolute:
            now = abs(now)
        test = self._test
        if test is not None:
            return test(now, self.threshold)
        before = math.nan if previous is None else self.value(previous)
        if math.isnan(before):
            return None
        if self.op == "crosses_above":
            return before < self.threshold <= now
        return before > self.threshold >= now


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every part holds."""

    parts: tuple[Condition, ...]

    def holds(self, values: Values, previous: Values | None = None) -> bool | None:
        """Return False if a part is False, None if a part has no data, else True."""
        unknown = False
        for part in self.parts:
            result = part.holds(values, previous)
            if result is False:
                return False
            if result is None:
                unknown = True
        return None if unknown else True


@dataclass(frozen=True, slots=True)
class AnyOf:
    """At least one part holds."""

    parts: tuple[Condition, ...]

    def holds(self, values: Values, previous: Values | None = None) -> bool | None:
        """Return True if a part is True, None if a part has no data, else False."""
        unknown = False
        for part in self.parts:
            result = part.holds(values, previous)
            if result is True:
                return True
            if result is None:
                unknown = True
        return None if unknown else False


Condition = Comparison | AllOf | AnyOf


def parse_comparison(text: str) -> Comparison:
    """Parse ``[abs(]metric[)] op number``; raise ``ValueError`` saying what is wrong."""
    match = _PATTERN.match(text)
    if match is None:
        raise ValueError(
            f"cannot read {text!r}: write METRIC OP NUMBER or abs(METRIC) OP NUMBER, "
            f"OP one of {' '.join(OPERATORS)}, e.g. 'abs(zscore) >= 2'"
        )
    threshold = float(match["threshold"])
    if not math.isfinite(threshold):
        raise ValueError(f"the number in {text!r} must be finite")
    metric = match["abs"] or match["metric"]
    return Comparison(metric, match["op"], threshold, absolute=match["abs"] is not None)


def compile_condition(condition: Condition) -> Holds:
    """Return a function equal to ``condition.holds``, cheaper to call on the hot path.

    The tree is turned into closures once: no attribute lookups or operator dispatch per
    evaluation. Same three-valued results as ``holds`` for every input (a property test
    checks it).
    """
    if isinstance(condition, Comparison):
        return _compile_comparison(condition)
    if all(isinstance(p, Comparison) and p.op in COMPARE for p in condition.parts):
        return _plain_list(condition)
    parts = tuple(compile_condition(p) for p in condition.parts)
    return _all_of(parts) if isinstance(condition, AllOf) else _any_of(parts)


def _plain_list(condition: AllOf | AnyOf) -> Holds:
    """Compile ``all:`` / ``any:`` of plain comparisons (no crossings) into one loop."""
    specs = tuple(
        (c.metric, c.absolute, COMPARE[c.op], c.threshold)
        for c in condition.parts
        if isinstance(c, Comparison)
    )

    def all_plain(values: Values, previous: Values | None) -> bool | None:
        unknown = False
        for metric, absolute, test, threshold in specs:
            v = values.get(metric)
            if v is None or v != v:  # noqa: PLR0124 -- missing, or NaN: no data
                unknown = True
            elif test(abs(v) if absolute else v, threshold) is False:
                return False
        return None if unknown else True

    def any_plain(values: Values, previous: Values | None) -> bool | None:
        unknown = False
        for metric, absolute, test, threshold in specs:
            v = values.get(metric)
            if v is None or v != v:  # noqa: PLR0124 -- missing, or NaN: no data
                unknown = True
            elif test(abs(v) if absolute else v, threshold) is True:
                return True
        return None if unknown else False

    return all_plain if isinstance(condition, AllOf) else any_plain


def _compile_comparison(c: Comparison) -> Holds:
    metric, threshold, absolute = c.metric, c.threshold, c.absolute
    test = COMPARE.get(c.op)
    if test is None:
        return _crossing(c)
    if absolute:

        def magnitude(values: Values, previous: Values | None) -> bool | None:
            v = values.get(metric)
            if v is None or v != v:  # noqa: PLR0124 -- missing, or NaN: no data
                return None
            return test(abs(v), threshold)

        return magnitude

    def plain(values: Values, previous: Values | None) -> bool | None:
        v = values.get(metric)
        if v is None or v != v:  # noqa: PLR0124 -- missing, or NaN: no data
            return None
        return test(v, threshold)

    return plain


def _crossing(c: Comparison) -> Holds:
    metric, threshold, absolute, value = c.metric, c.threshold, c.absolute, c.value
    above = c.op == "crosses_above"

    def crossing(values: Values, previous: Values | None) -> bool | None:
        now = values.get(metric)
        if now is None or now != now:  # noqa: PLR0124 -- missing, or NaN: no data
            return None
        if absolute:
            now = abs(now)
        before = math.nan if previous is None else value(previous)
        if math.isnan(before):
            return None
        if above:
            return before < threshold <= now
        return before > threshold >= now

    return crossing


def _all_of(parts: tuple[Holds, ...]) -> Holds:
    def all_of(values: Values, previous: Values | None) -> bool | None:
        unknown = False
        for part in parts:
            result = part(values, previous)
            if result is False:
                return False
            if result is None:
                unknown = True
        return None if unknown else True

    return all_of


def _any_of(parts: tuple[Holds, ...]) -> Holds:
    def any_of(values: Values, previous: Values | None) -> bool | None:
        unknown = False
        for part in parts:
            result = part(values, previous)
            if result is True:
                return True
            if result is None:
                unknown = True
        return None if unknown else False

    return any_of


def comparisons(condition: Condition) -> Iterator[Comparison]:
    """Yield every comparison inside ``condition``."""
    if isinstance(condition, Comparison):
        yield condition
    else:
        for part in condition.parts:
            yield from comparisons(part)
