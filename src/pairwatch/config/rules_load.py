"""Read a rules file: safe YAML, strict schema, every problem as ``file:line:column: where: what``.

YAML is parsed once into nodes (which know their line and column), walked into plain data
(what the safe constructors make: no tags, no objects). Validation errors name the rule and key
and point at the line of the offending value, so an editor can jump straight to it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pairwatch.config.rules import DEFAULTABLE, Rule, RulesFile
from pairwatch.config.settings import Settings
from pairwatch.errors import ConfigError

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Path_ = tuple[str | int, ...]
_MAX_NODES = 200_000
_MAX_DEPTH = 64
_POSITION = re.compile(r":(\d+):(\d+): ")
Marks = dict[Path_, tuple[int, int]]


def load_rules(path: Path, settings: Settings | None = None) -> RulesFile:
    """Return the rules of ``path``, checked against ``settings`` when given.

    Raises ``ConfigError`` with one ``file:line:column: where: what`` line per problem.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the rules file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{path}: not UTF-8 text (byte {exc.start}): save it as UTF-8"]
        ) from None
    data, marks = _parse(path, text)
    problems: list[str] = []
    data = _apply_defaults(path, data, marks, problems)
    problems.extend(_duplicate_names(path, data, marks))
    try:
        rules = RulesFile.model_validate(data)
    except ValidationError as exc:
        problems.extend(_describe(path, exc, data, marks))
    if problems:
        raise ConfigError(sorted(problems, key=_position))
    if settings is not None:
        problems = check_against(rules, settings, path, marks)
        if problems:
            raise ConfigError(problems)
    return rules


def check_against(
    rules: RulesFile, settings: Settings, path: Path, marks: Marks | None = None
) -> list[str]:
    """Return a problem per rule target, timeframe or window the settings do not analyse."""
    marks = marks or {}
    problems: list[str] = []
    pairs = {p.name: p for p in settings.pairs}
    all_timeframes = [t for t, _ in settings.bars.timeframe_lengths]
    # Many rules name the same patterns and symbols: match and look each up once.
    pair_names, symbol_names = list(pairs), list(settings.feed.symbols)
    pair_hits: dict[str, list[str]] = {}
    symbol_hits: dict[str, list[str]] = {}
    series_of: dict[str, set[tuple[str, int]]] = {}
    for i, rule in enumerate(rules.rules):

        def problem(key: str, what: str, i: int = i, rule: Rule = rule) -> None:
            problems.append(f"{_at(path, marks, ('rules', i, key))}: {rule.name}: {key}: {what}")

        if rule.pair is not None:
            chosen = _match(rule.pair, pair_names, "pair", problem, pair_hits)
            for name in chosen:
                pair = pairs[name]
                timeframes = pair.timeframes or all_timeframes
                if rule.timeframe is not None and rule.timeframe not in timeframes:
                    problem("timeframe", f"{name} is analysed on {', '.join(timeframes)} only")
                if rule.window is not None and rule.window not in pair.windows:
                    windows = ", ".join(map(str, pair.windows))
                    problem("window", f"{name} is analysed with windows {windows} only")
        else:
            assert rule.symbol is not None
            chosen = _match(rule.symbol, symbol_names, "symbol", problem, symbol_hits)
            if rule.timeframe is not None and rule.timeframe not in all_timeframes:
                problem("timeframe", f"not among bars.timeframes ({', '.join(all_timeframes)})")
            elif rule.window is not None and rule.needs_series:
                # Symbol metrics exist per timeframe and window of the pairs a symbol is in.
                lengths = dict(settings.bars.timeframe_lengths)
                named = {t.upper() for t in rule.symbol if not any(c in t for c in "*?[")}
                lacking: list[tuple[str, str]] = []
                for symbol in chosen:
                    series = series_of.get(symbol)
                    if series is None:
                        series = series_of[symbol] = {
                            (tf, w)
                            for p in settings.pairs
                            if symbol in (p.y, p.x)
                            for tf in (p.timeframes or all_timeframes)
                            for w in p.windows
                        }
                    if (rule.timeframe, rule.window) not in series:
                        ordered = sorted(series, key=lambda s: (lengths.get(s[0], 0), s[1]))
                        listed = ", ".join(f"{tf}/{w}" for tf, w in ordered)
                        lacking.append((symbol, listed or "none (it is in no pair)"))
                # A named symbol must have the series; a glob only has to find one that does
                # (the others are never evaluated).
                for symbol, listed in lacking:
                    if symbol in named or len(lacking) == len(chosen):
                        problem(
                            "window",
                            f"{symbol} metrics exist for the timeframes/windows of the pairs "
                            f"it is in: {listed}",
                        )
    return problems


def _match(
    patterns: Sequence[str],
    names: list[str],
    kind: str,
    problem: Any,
    cache: dict[str, list[str]] | None = None,
) -> list[str]:
    chosen: list[str] = []
    for pattern in patterns:
        hits = None if cache is None else cache.get(pattern)
        if hits is None:
            hits = [n for n in names if fnmatch.fnmatchcase(n, pattern.upper())]
            if cache is not None:
                cache[pattern] = hits
        if not hits:
            known = ", ".join(names) or f"none: configure {kind}s in the settings"
            problem(kind, f"{pattern!r} matches no configured {kind} (configured: {known})")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def _parse(path: Path, text: str) -> tuple[Any, Marks]:
    loader = _Loader(text)
    walk = _Walk(path, loader)
    try:  # one parse: the nodes (with their marks), walked before constructing plain data
        _check_nesting(path, text)
        node = loader.get_single_node()
        if node is None:
            return {}, {}
        # Walk first: constructing rewrites merge keys (``<<``) in place.
        data = walk.visit(node, (), ())
        if walk.problems:
            raise ConfigError(walk.problems)
        if not walk.plain:  # built while walking, unless a node needs YAML's own constructors
            data = _construct(node)
    except _CONSTRUCTOR_ERRORS as exc:  # the walk reports these at their value: a safety net
        raise ConfigError([f"{path}: cannot read a value: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: not valid YAML: {reason}"]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError([f"{_at(path, walk.marks, ())}: expected a mapping with 'rules:'"])
    return data, walk.marks


def _check_nesting(path: Path, text: str) -> None:
    """Refuse nesting deeper than ``_MAX_DEPTH`` from the parser's events, before composing.

    libyaml's composer recurses in C: some 30,000 nested lists overflow the stack and kill
    the process (a segfault, not an exception), so the depth is checked on the flat events.
    """
    loader = _Loader(text)
    depth = 0
    try:
        while (event := loader.get_event()) is not None:  # type: ignore[no-untyped-call]
            kind = type(event)
            if kind is yaml.SequenceStartEvent or kind is yaml.MappingStartEvent:
                depth += 1
                if depth > _MAX_DEPTH + 1:  # the walk's limit: 64 levels below the top
                    mark = event.start_mark
                    where = f"{path}:{mark.line + 1}:{mark.column + 1}"
                    raise ConfigError([f"{where}: nested deeper than {_MAX_DEPTH}"])
            elif kind is yaml.SequenceEndEvent or kind is yaml.MappingEndEvent:
                depth -= 1
            elif kind is yaml.DocumentEndEvent:
                return  # only the first document is read
    finally:
        loader.dispose()


def _construct(node: yaml.Node) -> Any:
    """Return the plain data of ``node`` built by YAML's safe constructors (or their error)."""
    loader = _Loader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


_YAML = "tag:yaml.org,2002:"
_STR, _SEQ, _MAP = f"{_YAML}str", f"{_YAML}seq", f"{_YAML}map"
_SCALARS = frozenset(f"{_YAML}{kind}" for kind in ("bool", "int", "float", "null"))
_CHECKED = _SCALARS | {f"{_YAML}timestamp"}
"""Tags whose safe constructors can raise other errors than ``YAMLError`` on odd text."""
_CONSTRUCTOR_ERRORS = (ValueError, LookupError, AttributeError, TypeError, OverflowError)
"""What they raise: ``int()`` past 4,300 digits, ``!!bool x`` (a KeyError), an explicit
``!!timestamp`` that is no date (an AttributeError), month 13 (a ValueError)."""


class _Walk:
    """One walk over the node tree: positions, problems, and the plain data.

    Every node's position is recorded under its path (``marks``), and keys given twice,
    aliases that contain themselves, too many values or too deep nesting are refused. The
    data is built on the way, equal to what the safe constructors make, as long as the tree
    holds only mappings, lists, strings, numbers, booleans and nulls without merge keys
    (``plain``); otherwise ``_construct`` builds it after the walk, as it always did.
    """

    def __init__(self, path: Path, loader: yaml.SafeLoader) -> None:
        self.path = path
        self.loader = loader
        self.marks: Marks = {}
        self.problems: list[str] = []
        self.plain = True
        self._built: dict[int, Any] = {}  # an aliased node is one object, as YAML makes it

    def visit(self, node: yaml.Node, at: Path_, inside: tuple[int, ...]) -> Any:
        """Walk ``node`` at path ``at`` (inside the nodes ``inside``); return its data."""
        path, marks = self.path, self.marks
        here = (node.start_mark.line + 1, node.start_mark.column + 1)
        if len(marks) > _MAX_NODES:  # aliases can expand a small file exponentially
            raise ConfigError([f"{path}:{here[0]}:{here[1]}: the file expands to over "
                               f"{_MAX_NODES:,} values (aliases?): refused"])  # fmt: skip
        if len(inside) > _MAX_DEPTH:
            raise ConfigError([f"{path}:{here[0]}:{here[1]}: nested deeper than {_MAX_DEPTH}"])
        if id(node) in inside:  # an alias to a node that contains it
            self.problems.append(
                f"{path}:{here[0]}:{here[1]}: {_dotted(at)}: an alias refers to itself"
            )
            self.plain = False
            return None
        marks.setdefault(at, here)
        built = self._built.get(id(node), _UNBUILT)
        inside = (*inside, id(node))
        if isinstance(node, yaml.MappingNode):
            data = self._mapping(node, at, inside)
        elif isinstance(node, yaml.SequenceNode):
            data = [self.visit(item, (*at, i), inside) for i, item in enumerate(node.value)]
            if node.tag != _SEQ:
                self.plain = False
        else:
            data = self._scalar(node, at) if built is _UNBUILT else built
        if built is not _UNBUILT:
            return built
        self._built[id(node)] = data
        return data

    def _mapping(self, node: yaml.MappingNode, at: Path_, inside: tuple[int, ...]) -> Any:
        path, marks, problems = self.path, self.marks, self.problems
        seen: set[str] = set()
        data: dict[Any, Any] = {}
        if node.tag != _MAP:
            self.plain = False
        for key_node, value_node in node.value:
            key = str(key_node.value)
            key_at = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in seen and key != "<<":
                name = f"{_dotted((*at, key))}"
                problems.append(f"{path}:{key_at[0]}:{key_at[1]}: {name}: key given twice")
            seen.add(key)
            if key == "<<":  # a merge: its keys count as the mapping's own, not nested
                self.plain = False
                continue
            value = self.visit(value_node, (*at, key), inside)
            # A key's own position is more useful than its value's for "unknown key".
            marks[(*at, key, "<key>")] = key_at
            if isinstance(key_node, yaml.ScalarNode):
                key_data = self._scalar(key_node, at)
                if self.plain:
                    data[key_data] = value
            else:
                self.plain = False
        return data

    def _scalar(self, node: yaml.Node, at: Path_) -> Any:
        tag = node.tag
        if tag == _STR:
            return node.value
        if tag in _CHECKED:
            try:
                value = self.loader.construct_object(node)
            except yaml.YAMLError:
                pass  # ``_construct`` raises it again, with its position
            except _CONSTRUCTOR_ERRORS as exc:  # an int of 5,000 digits, month 13, !!bool x
                self._unreadable(node, at, exc)
            else:
                if tag in _SCALARS and self.plain:
                    return value
        self.plain = False
        return None

    def _unreadable(self, node: yaml.Node, at: Path_, exc: Exception) -> None:
        text = str(node.value)
        shown = text if len(text) <= 24 else f"{text[:20]}..."
        kind = node.tag.removeprefix(_YAML)
        # Not the advice to call sys.set_int_max_str_digits; not an AttributeError's text.
        reason = str(exc).split(";")[0] if type(exc) is ValueError else f"not a valid {kind}"
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        name = _dotted(at)
        self.problems.append(
            f"{self.path}:{line}:{column}: {f'{name}: ' if name else ''}cannot read {shown!r} "
            f"as {kind}: {reason[:1].lower()}{reason[1:]}"
        )


_UNBUILT = object()


def _duplicate_names(path: Path, data: Any, marks: Marks) -> list[str]:
    rules = data.get("rules")
    if not isinstance(rules, list):
        return []
    first: dict[str, int] = {}
    problems = []
    for i, rule in enumerate(rules):
        name = rule.get("name") if isinstance(rule, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            line = marks.get(("rules", first[name], "name"), (0, 0))[0]
            problems.append(
                f"{_at(path, marks, ('rules', i, 'name'))}: {name}: rules[{i}].name: "
                f"the name is used twice (first at line {line})"
            )
        else:
            first[name] = i
    return problems


def _apply_defaults(path: Path, data: Any, marks: Marks, problems: list[str]) -> Any:
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.append(f"{_at(path, marks, ('defaults',))}: defaults: expected a mapping")
        return {**data, "defaults": {}}
    allowed = ", ".join(sorted(DEFAULTABLE))
    problems.extend(
        f"{_at(path, marks, ('defaults', key, '<key>'))}: defaults: {key!r} cannot have a "
        f"default (these can: {allowed})"
        for key in defaults
        if key not in DEFAULTABLE
    )
    rules = data.get("rules")
    if not defaults or not isinstance(rules, list):
        return data
    merged = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            merged.append(rule)
            continue
        for key in defaults:
            if key not in rule:  # a defaulted value is located in the defaults section
                marks[("rules", i, key)] = marks.get(("defaults", key), (1, 1))
        merged.append({**defaults, **rule})
    return {**data, "rules": merged}


def _describe(path: Path, exc: ValidationError, data: Any, marks: Marks) -> list[str]:
    lines = []
    for error in exc.errors():
        loc: Path_ = tuple(error["loc"])
        if not loc and "used twice" in error["msg"]:
            continue  # reported at the name's line by _duplicate_names
        name = _rule_name(data, loc)
        where = _dotted(loc) or "file"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown key{_hint(loc, data)}"
            anchor = (*loc, "<key>")
        else:
            anchor = loc
        prefix = f"{name}: " if name else ""
        lines.append(f"{_at(path, marks, anchor)}: {prefix}{where}: {message}")
    return lines


def _hint(loc: Path_, data: Any) -> str:
    import difflib

    from pairwatch.config.rules import Rule

    key = str(loc[-1])
    if len(loc) == 3 and loc[0] == "rules":
        keys = [*Rule.model_fields, "for"]
        close = difflib.get_close_matches(key, keys, n=1)
        if close:
            return f"; did you mean {close[0]!r}?"
        return f"; a rule takes: {', '.join(sorted(k for k in keys if k != 'for_'))}"
    return ""


def _rule_name(data: Any, loc: Path_) -> str | None:
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = data.get("rules") if isinstance(data, Mapping) else None
        if isinstance(rules, list) and loc[1] < len(rules) and isinstance(rules[loc[1]], dict):
            name = rules[loc[1]].get("name")
            if name is None:
                return f"rule {loc[1] + 1}"
            text = str(name)
            return text if len(text) <= 64 else f"{text[:40]}..."  # a 10 MB name is not shown
    return None


def _position(problem: str) -> tuple[int, int]:
    """Return the (line, column) a ``file:line:column: …`` problem points at, for sorting."""
    found = _POSITION.search(problem)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def _at(path: Path, marks: Marks, loc: Path_) -> str:
    """Return ``file:line:column`` of ``loc`` or of its nearest located parent."""
    for end in range(len(loc), -1, -1):
        found = marks.get(loc[:end])
        if found is not None:
            return f"{path}:{found[0]}:{found[1]}"
    return str(path)


def _dotted(loc: Path_) -> str:
    out = ""
    for part in loc:
        if part == "<key>":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + ("for" if part == "for_" else str(part))
    return out
