"""The TOML key-to-line scanner used to point error messages at the right line."""

from __future__ import annotations

import json
import tomllib

from hypothesis import given
from hypothesis import strategies as st

from pairwatch.config.toml_lines import key_lines, line_of

DOCUMENT = '''\
# comment with [brackets] and key = "value"
title = "x"  # trailing comment

[feed]
market = "spot"
symbols = [
  "BTCUSDT", # first
  "ETHUSDT",
]
"quoted.key" = 1
'single' = 2
a.b.c = { x = 1, y = [1, 2] }
text = """multi
[not a table]
line"""
raw = \'\'\'
fake = 1
\'\'\'
when = 1979-05-27 07:32:00
after = true

[storage.retention.bars]
1s = "7d"

[[rule]]
name = "a"
[[rule]]
name = "b"
[rule.extra]
z = 3
[[rule.step]]
n = 1
'''


def test_document_is_valid_toml() -> None:
    assert tomllib.loads(DOCUMENT)["feed"]["after"] is True


def test_key_lines_maps_every_written_key_to_its_line() -> None:
    lines = key_lines(DOCUMENT)
    assert lines == {
        ("title",): 2,
        ("feed",): 4,
        ("feed", "market"): 5,
        ("feed", "symbols"): 6,
        ("feed", "symbols", 0): 7,
        ("feed", "symbols", 1): 8,
        ("feed", "quoted.key"): 10,
        ("feed", "single"): 11,
        ("feed", "a"): 12,
        ("feed", "a", "b"): 12,
        ("feed", "a", "b", "c"): 12,
        ("feed", "a", "b", "c", "x"): 12,
        ("feed", "a", "b", "c", "y"): 12,
        ("feed", "a", "b", "c", "y", 0): 12,
        ("feed", "a", "b", "c", "y", 1): 12,
        ("feed", "text"): 13,
        ("feed", "raw"): 16,
        ("feed", "when"): 19,
        ("feed", "after"): 20,
        ("storage",): 22,
        ("storage", "retention"): 22,
        ("storage", "retention", "bars"): 22,
        ("storage", "retention", "bars", "1s"): 23,
        ("rule",): 25,
        ("rule", 0): 25,
        ("rule", 0, "name"): 26,
        ("rule", 1): 27,
        ("rule", 1, "name"): 28,
        ("rule", 1, "extra"): 29,
        ("rule", 1, "extra", "z"): 30,
        ("rule", 1, "step"): 31,
        ("rule", 1, "step", 0): 31,
        ("rule", 1, "step", 0, "n"): 32,
    }


def test_key_lines_decodes_escaped_quoted_keys() -> None:
    assert key_lines('[t]\n"caf\\u00e9" = 1\n') == {("t",): 1, ("t", "café"): 2}


def test_key_lines_counts_crlf_line_ends() -> None:
    assert key_lines("a = 1\r\n\r\nb = 2\r\n") == {("a",): 1, ("b",): 3}


def test_line_of_falls_back_to_nearest_written_ancestor() -> None:
    lines = key_lines(DOCUMENT)
    assert line_of(lines, ("feed", "symbols", 1)) == 8
    assert line_of(lines, ("feed", "symbols", 7)) == 6
    assert line_of(lines, ("feed", "missing")) == 4
    assert line_of(lines, ("nowhere", "at", "all")) is None
    assert line_of(lines, ()) is None


def test_key_lines_keeps_what_it_found_when_it_loses_its_way() -> None:
    # Not valid TOML (the loader never passes such text): scanning stops, earlier keys stay.
    assert key_lines("a = 1\n= 2\nb = 3\n") == {("a",): 1}


# Property test: render random documents while noting where each key goes, then compare.
BARE_KEY = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=6)
QUOTED_KEY = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=6
)
KEY = st.one_of(BARE_KEY, QUOTED_KEY)
PLAIN = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=8)
MULTILINE = st.lists(st.text(alphabet="ab #[]={},=.'", max_size=5), min_size=1, max_size=3)
SCALAR = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.booleans().map(lambda flag: "true" if flag else "false"),
    PLAIN.map(lambda text: json.dumps(text, ensure_ascii=False)),
    st.text(alphabet='ab #[]"={}', max_size=6).map(lambda text: f"'{text}'"),
    MULTILINE.map(lambda parts: '"""' + "\n".join(parts) + '"""'),
)
VALUE = st.one_of(SCALAR, st.lists(SCALAR, max_size=3))
TABLE = st.dictionaries(KEY, VALUE, max_size=4)
DOCUMENTS = st.tuples(
    TABLE,
    st.dictionaries(KEY, st.tuples(TABLE, st.dictionaries(KEY, TABLE, max_size=2)), max_size=3),
)


def render_key(key: str) -> str:
    if key and all(char in "abcXYZ019_-" for char in key):
        return key
    return json.dumps(key, ensure_ascii=False)


class Renderer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.expected: dict[tuple[str | int, ...], int] = {}

    def emit(self, text: str) -> int:
        """Append ``text`` and return the line it starts on."""
        start = sum(line.count("\n") + 1 for line in self.lines) + 1
        self.lines.append(text)
        return start

    def pairs(self, path: tuple[str, ...], table: dict[str, str | list[str]]) -> None:
        for key, value in table.items():
            if isinstance(value, str):
                self.expected[(*path, key)] = self.emit(f"{render_key(key)} = {value}")
                continue
            self.expected[(*path, key)] = self.emit(f"{render_key(key)} = [")
            for index, element in enumerate(value):
                self.expected[(*path, key, index)] = self.emit(f"  {element},  # {index}")
            self.emit("]")

    def header(self, path: tuple[str, ...]) -> None:
        self.expected[path] = self.emit("[" + ".".join(render_key(key) for key in path) + "]")


@given(DOCUMENTS)
def test_key_lines_finds_every_key_of_generated_documents(
    document: tuple[
        dict[str, str | list[str]],
        dict[str, tuple[dict[str, str | list[str]], dict[str, dict[str, str | list[str]]]]],
    ],
) -> None:
    top, tables = document
    renderer = Renderer()
    renderer.pairs((), top)
    for name, (pairs, subtables) in tables.items():
        if name in top:
            continue
        renderer.emit("")
        renderer.header((name,))
        renderer.pairs((name,), pairs)
        for sub, sub_pairs in subtables.items():
            if sub in pairs:
                continue
            renderer.header((name, sub))
            renderer.pairs((name, sub), sub_pairs)
    text = "\n".join(renderer.lines) + "\n"
    tomllib.loads(text)  # the generator only writes valid TOML
    lines = key_lines(text)
    assert {path: lines.get(path) for path in renderer.expected} == renderer.expected
