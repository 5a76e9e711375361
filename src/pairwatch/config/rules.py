"""The alert rules file: its schema (strict: unknown keys are errors) and the typed rules.

The file is YAML (``docs/rules.md``)::

    defaults:                 # optional: any rule key but name, when and clear
      timeframe: 1m
      notify: [all]           # every configured notifier
    rules:
      - name: ethbtc-z
        pair: ETHUSDT/BTCUSDT
        window: 100
        when: abs(zscore) >= 2
        for: 3 bars
        clear: abs(zscore) < 0.5

Loading (with file:line:column errors) is ``config.rules_load``; checking the rules against
the configured pairs, symbols and timeframes is ``check_against``.
"""

from __future__ import annotations

import math
import re
import string
from datetime import timedelta
from functools import cached_property, lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pairwatch.analytics.conditions import (
    CROSSINGS,
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    comparisons,
    parse_comparison,
)
from pairwatch.analytics.engine import SNAPSHOT_METRICS
from pairwatch.analytics.symbol_metrics import SYMBOL_METRICS
from pairwatch.config.durations import Duration, parse_duration
from pairwatch.config.field_types import Timeframe

_STRICT = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

HEALTH_METRICS = ("feed_lag_ms", "seconds_since_trade", "gaps")
"""Per-symbol feed health values a symbol rule may test (no timeframe or window needed)."""

NOTIFIERS = ("telegram", "mqtt", "webhook", "log")

ALL = "all"
"""The route to every notifier configured in the running daemon, each to its defaults."""

TEMPLATE_FIELDS = (
    "rule", "pair", "symbol", "y", "x", "timeframe", "window", "severity", "state",
    "metric", "value", "threshold", "description",
)  # fmt: skip
"""Fields every message template may use, besides the target's metrics."""

DEFAULT_MESSAGE = "{rule}: {metric} = {value:.4g} ({state})"

_TEXT_FIELDS = frozenset(
    {"rule", "pair", "symbol", "y", "x", "timeframe", "severity", "state", "metric", "description"}
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CHAT = re.compile(r"-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31}")
_WILDCARDS = re.compile(r"[#+\x00]")
_BARS = re.compile(r"^\s*(\d+)\s*bars?\s*$", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"^\s*[-+]?\d+(\.\d*)?\s*$")
_MAX_FORMAT_WIDTH = 40


def _condition(value: Any, where: str = "") -> Condition:
    """Build a condition from a string or an ``all:`` / ``any:`` mapping."""
    if isinstance(value, str):
        try:
            return _parse_comparison(value)
        except ValueError as exc:
            raise ValueError(f"{where}{exc}") from None
    if isinstance(value, dict) and len(value) == 1:
        ((kind, parts),) = value.items()
        if kind in ("all", "any"):
            if not isinstance(parts, list) or not parts:
                raise ValueError(f"{where}{kind}: expected a non-empty list of conditions")
            built = tuple(_condition(p, f"{where}{kind}[{i}]: ") for i, p in enumerate(parts))
            return AllOf(built) if kind == "all" else AnyOf(built)
    raise ValueError(
        f"{where}expected a condition like 'abs(zscore) >= 2', or 'all:' / 'any:' with a "
        f"list of conditions, got {value!r}"
    )


@lru_cache(maxsize=4096)
def _parse_comparison(text: str) -> Comparison:
    """Return ``parse_comparison(text)``, once per text (a file repeats its conditions)."""
    return parse_comparison(text)


ConditionField = Annotated[Any, BeforeValidator(_condition)]


class Hold(BaseModel):
    """How long a condition must hold: a number of bars, or a duration."""

    model_config = _STRICT

    bars: int = 0
    duration: timedelta = timedelta(0)

    def __str__(self) -> str:
        return f"{self.bars} bars" if self.bars else str(self.duration)


def _hold(value: Any) -> Any:
    if isinstance(value, Hold):
        return value
    if isinstance(value, str) and (match := _BARS.match(value)):
        return Hold(bars=int(match[1]))
    if not isinstance(value, str) or _BARE_NUMBER.match(value):
        # A bare number is ambiguous (bars? seconds?): say which.
        raise ValueError(
            f"write a number of bars as '3 bars', or a duration like '2m', got {value!r}"
        )
    try:
        return Hold(duration=parse_duration(value))
    except ValueError as exc:
        raise ValueError(f"{exc}; or a number of bars, like '3 bars'") from None


HoldField = Annotated[Hold, BeforeValidator(_hold)]


def _text(value: Any) -> Any:
    """Accept a number where text is meant (a Telegram chat id, a label value)."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class Route(BaseModel):
    """Where a rule's notifications go, with optional per-route overrides."""

    model_config = _STRICT

    notifier: Literal["telegram", "mqtt", "webhook", "log", "all"]
    """A notifier, or ``all``: every notifier the daemon has configured when it notifies."""
    chat: Annotated[str, BeforeValidator(_text)] | None = None
    """Telegram chat id (default: the notifier's configured chats)."""
    topic: str | None = None
    """MQTT topic (default: ``pairwatch/v1/alerts/<rule>``)."""
    url: str | None = None
    """Webhook URL (default: the notifier's configured URL)."""

    @model_validator(mode="after")
    def _check(self) -> Route:
        allowed = {"telegram": "chat", "mqtt": "topic", "webhook": "url", "log": None, ALL: None}
        for key in ("chat", "topic", "url"):
            if getattr(self, key) is not None and allowed[self.notifier] != key:
                if self.notifier == ALL:
                    raise ValueError(
                        f"'all' takes no overrides (got {key!r}): it sends to each configured "
                        f"notifier's own destinations; list another destination as a route "
                        f"of its own next to it, like {{telegram: {{chat: ...}}}}"
                    )
                raise ValueError(f"{self.notifier} routes take no {key!r}")
        # Checked here, not at delivery: a bad destination would be retried for ever and
        # hold up every later notification of that notifier.
        if self.chat is not None and not _CHAT.fullmatch(self.chat):
            raise ValueError(f"chat {self.chat!r}: a chat id (a number) or an @channel name")
        if self.topic is not None and (
            not self.topic.strip("/") or self.topic.startswith("$") or _WILDCARDS.search(self.topic)
        ):
            raise ValueError(f"topic {self.topic!r}: no '+', '#' or NUL, not empty, no leading '$'")
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"url {self.url!r}: an http:// or https:// URL")
        return self


def _route(value: Any) -> Any:
    if isinstance(value, str):
        return {"notifier": value}
    if isinstance(value, dict) and len(value) == 1:
        ((notifier, options),) = value.items()
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise ValueError(f"{notifier}: expected a mapping of options, got {options!r}")
        return {"notifier": notifier, **options}
    raise ValueError(f"expected a notifier name ({', '.join(NOTIFIERS)}, {ALL}) or one mapping")


RouteField = Annotated[Route, BeforeValidator(_route)]


def _names(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and not value:
        raise ValueError("list at least one target")
    return value


Targets = Annotated[tuple[str, ...], BeforeValidator(_names)]


class Rule(BaseModel):
    """One alert rule."""

    model_config = _STRICT

    name: str = Field(description="Unique name: letters, digits, '_', '.', '-'.")
    description: str = ""
    pair: Targets | None = Field(
        default=None, description="Pairs (Y/X), lists or globs over the configured pairs."
    )
    symbol: Targets | None = Field(
        default=None, description="Symbols, lists or globs over the configured symbols."
    )
    timeframe: Timeframe | None = None
    window: Annotated[int, Field(ge=3)] | None = None
    when: ConditionField
    for_: HoldField = Field(default=Hold(), alias="for")
    clear: ConditionField | None = None
    keep_firing_for: Duration = timedelta(0)
    repeat_every: Duration | None = None
    notify_resolved: bool = True
    severity: Literal["info", "warning", "critical"] = "warning"
    labels: dict[str, Annotated[str, BeforeValidator(_text)]] = Field(default_factory=dict)
    message: str = DEFAULT_MESSAGE
    notify: tuple[RouteField, ...] = (Route(notifier="log"),)
    no_data: Literal["keep", "resolve", "alert"] = "keep"

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            shown = name if len(name) <= 100 else f"{name[:40]}..."  # not all of 10 MB
            raise ValueError(
                f"{shown!r}: use 1-64 letters, digits, '_', '.' or '-' "
                "(it names MQTT topics and bot commands)"
            )
        if name.lower() == "all":
            raise ValueError(f"{name!r} is reserved: 'mute all' means every rule")
        return name

    @field_validator("when", "clear")
    @classmethod
    def _metrics(cls, condition: Condition | None, info: ValidationInfo) -> Condition | None:
        if info.data.get("pair") is not None and info.data.get("symbol") is not None:
            return condition  # the rule itself is refused: give either 'pair' or 'symbol'
        if condition is not None:
            known = _known_metrics("symbol" if info.data.get("symbol") else "pair")
            for c in comparisons(condition):
                if c.metric not in known:
                    raise ValueError(f"unknown metric {c.metric!r}{_suggest(c.metric, known)}")
        return condition

    @field_validator("message")
    @classmethod
    def _template(cls, message: str, info: ValidationInfo) -> str:
        _check_template(message, "symbol" if info.data.get("symbol") else "pair")
        return message

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if (self.pair is None) == (self.symbol is None):
            raise ValueError("give either 'pair' or 'symbol' (the rule's target)")
        needs_window = any(c.metric not in HEALTH_METRICS for c in self._comparisons())
        if needs_window and (self.timeframe is None or self.window is None):
            raise ValueError(f"{self.kind} metrics need 'timeframe' and 'window'")
        if self.for_.bars and self.timeframe is None:
            raise ValueError("'for: N bars' needs a timeframe (health rules: use a duration)")
        when = self.when
        crossing = isinstance(when, Comparison) and when.op in CROSSINGS
        if crossing and (self.for_.bars > 1 or self.for_.duration > timedelta(0)):
            raise ValueError(
                "a crossing holds on one bar only, so it cannot hold 'for' longer: drop 'for'"
            )
        if self.repeat_every is not None and self.repeat_every <= timedelta(0):
            raise ValueError("repeat_every must be positive (or left out)")
        if self.keep_firing_for < timedelta(0):
            raise ValueError("keep_firing_for must not be negative")
        if not self.notify:
            raise ValueError("notify: list at least one route (e.g. [log])")
        return self

    @property
    def kind(self) -> Literal["pair", "symbol"]:
        """Return what the rule targets."""
        return "pair" if self.pair is not None else "symbol"

    @cached_property
    def uses_previous(self) -> bool:
        """Return whether a condition compares with the bar before (a crossing)."""
        return bool(self.crossing_metrics)

    @cached_property
    def simple_when(self) -> Comparison | None:
        """Return ``when`` if it is one comparison that is not a crossing (a fast path)."""
        when = self.when
        return when if isinstance(when, Comparison) and when.op not in CROSSINGS else None

    @cached_property
    def needs_series(self) -> bool:
        """Return whether a condition uses analytics (not only health): timeframe and window."""
        return any(c.metric not in HEALTH_METRICS for c in self._comparisons())

    @cached_property
    def crossing_metrics(self) -> tuple[str, ...]:
        """Return the metrics of the crossings: their previous values must be kept."""
        return tuple(dict.fromkeys(c.metric for c in self._comparisons() if c.op in CROSSINGS))

    @cached_property
    def primary(self) -> Comparison:
        """Return the comparison ``{metric}``, ``{value}`` and ``{threshold}`` describe."""
        return next(comparisons(self.when))

    def _comparisons(self) -> list[Comparison]:
        found = list(comparisons(self.when))
        if self.clear is not None:
            found.extend(comparisons(self.clear))
        return found


class RulesFile(BaseModel):
    """The whole file: optional defaults, then the rules."""

    model_config = _STRICT

    defaults: dict[str, Any] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> RulesFile:
        # The loader reports a repeated name at its line; this guards other callers.
        names = [rule.name for rule in self.rules]
        if len(set(names)) != len(names):
            raise ValueError(
                f"rule names are used twice: {sorted({n for n in names if names.count(n) > 1})}"
            )
        return self


DEFAULTABLE = frozenset(Rule.model_fields) - {"name", "when", "clear", "for_"} | {"for"}
"""Rule keys ``defaults:`` may set."""


def _known_metrics(kind: str) -> tuple[str, ...]:
    return (*SNAPSHOT_METRICS,) if kind == "pair" else (*SYMBOL_METRICS, *HEALTH_METRICS)


def _suggest(name: str, known: tuple[str, ...]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"


@lru_cache(maxsize=4096)
def _check_template(template: str, kind: str) -> None:
    """Run ``check_template`` once per template and kind (a failure is not cached)."""
    check_template(template, _known_metrics(kind))


def check_template(template: str, metrics: tuple[str, ...]) -> None:
    """Refuse a message template that is not plain named fields with number formats."""
    allowed = {*TEMPLATE_FIELDS, *metrics}
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{exc} (write a literal brace as '{{{{' or '}}}}')") from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier():
            raise ValueError(
                f"{{{field}}} is not a plain field name (no attributes, indexes or positions)"
            )
        if field not in allowed:
            raise ValueError(f"unknown field {{{field}}}{_suggest(field, tuple(sorted(allowed)))}")
        if conversion is not None or (spec and "{" in spec):
            raise ValueError(f"{{{field}}}: no conversions or nested fields")
        if not spec:
            continue
        if len(spec) > 20 or any(
            len(n) > 3 or int(n) > _MAX_FORMAT_WIDTH for n in re.findall(r"\d+", spec)
        ):
            shown = spec if len(spec) <= 20 else spec[:20] + "…"
            raise ValueError(
                f"{{{field}:{shown}}}: widths and precisions up to {_MAX_FORMAT_WIDTH}"
            )
        text = field in _TEXT_FIELDS
        try:
            format("text" if text else 30 if field == "window" else math.pi, spec)
        except ValueError:
            kind = "a text" if text else "a number"
            raise ValueError(f"{{{field}:{spec}}}: not {kind} format") from None
