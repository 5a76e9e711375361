"""Find the line of each key in a TOML document, for error messages.

``tomllib`` drops positions, so this scanner walks the text again. It assumes the text
already parsed (it runs only after ``tomllib`` accepted it) and is best effort: a key it
cannot place maps to no line rather than to a wrong one.
"""

from __future__ import annotations

import logging
import re
import tomllib
from typing import TypeAlias

KeyPath: TypeAlias = tuple[str | int, ...]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SCALAR_END = frozenset(",]}#\n\r")
_QUOTES = ('"', "'")
_STRINGS = {
    '"': re.compile(r'"(?:[^"\\]|\\.)*+"', re.DOTALL),
    "'": re.compile(r"'[^']*+'"),
    # A multi-line string may end with up to two extra quotes: """a""""".
    '"""': re.compile(r'"""(?:[^"\\]|\\.|""?(?!"))*+"""(?:""?)?', re.DOTALL),
    "'''": re.compile(r"'''(?:[^']|''?(?!'))*+'''(?:''?)?"),
}
"""The whole of a string from its opening delimiter (the text already parsed as TOML)."""

logger = logging.getLogger(__name__)


def key_lines(text: str) -> dict[KeyPath, int]:
    """Return the 1-based line where each key, table and array element is written."""
    scanner = _Scanner(text)
    try:
        scanner.scan()
    except _LostError:
        # Keep the lines found before the scanner lost its way; later keys get none.
        logger.debug("TOML line scanner stopped at offset %d", scanner.pos)
    return scanner.lines


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """Return the line of ``path`` or of its nearest written ancestor, or ``None``."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


class _LostError(Exception):
    """The scanner met text it does not understand and stops."""


class _Scanner:
    """A single pass over valid TOML that records where keys are written."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        # Arrays of tables seen so far: path -> number of elements.
        self.array_tables: dict[KeyPath, int] = {}

    def scan(self) -> dict[KeyPath, int]:
        """Walk the document and return the recorded lines."""
        table: KeyPath = ()
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return self.lines
            start = self.pos
            if self.text.startswith("[[", self.pos):
                self.pos += 2
                table = self.header(self.key(), array=True)
                self.expect("]]")
            elif self.peek() == "[":
                self.pos += 1
                table = self.header(self.key(), array=False)
                self.expect("]")
            else:
                self.key_value(table)
            self.check_progress(start)

    def header(self, keys: list[str], *, array: bool) -> KeyPath:
        """Record a ``[table]`` or ``[[array]]`` header and return the path it opens."""
        path: KeyPath = ()
        for index, key in enumerate(keys):
            path = (*path, key)
            self.lines.setdefault(path, self.line)
            last = index == len(keys) - 1
            if array and last:
                count = self.array_tables.get(path, 0)
                self.array_tables[path] = count + 1
                path = (*path, count)
                self.lines[path] = self.line
            elif path in self.array_tables:
                # [a.b] after [[a]] continues the last element of a.
                path = (*path, self.array_tables[path] - 1)
        if not array:
            self.lines[path] = self.line
        return path

    def key_value(self, table: KeyPath) -> None:
        """Record ``key = value`` (``key`` may be dotted) and everything inside the value."""
        line = self.line
        path = table
        for key in self.key():
            path = (*path, key)
            self.lines.setdefault(path, line)
        self.lines[path] = line
        self.expect("=")
        self.value(path)

    def value(self, path: KeyPath) -> None:
        """Skip one value, recording the lines of array elements and inline-table keys."""
        self.skip_blank(newlines=False)
        char = self.peek()
        if char == "[":
            self.pos += 1
            index = 0
            while True:
                self.skip_blank(newlines=True)
                if self.peek() == "]":
                    self.pos += 1
                    return
                start = self.pos
                self.lines[(*path, index)] = self.line
                self.value((*path, index))
                index += 1
                self.skip_blank(newlines=True)
                if self.peek() == ",":
                    self.pos += 1
                self.check_progress(start)
        elif char == "{":
            self.pos += 1
            while True:
                self.skip_blank(newlines=False)
                if self.peek() == "}":
                    self.pos += 1
                    return
                start = self.pos
                self.key_value(path)
                self.skip_blank(newlines=False)
                if self.peek() == ",":
                    self.pos += 1
                self.check_progress(start)
        elif char in _QUOTES:
            self.string()
        else:
            while self.pos < len(self.text) and self.text[self.pos] not in _SCALAR_END:
                self.pos += 1

    def key(self) -> list[str]:
        """Read a possibly dotted, possibly quoted key."""
        parts: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            if self.peek() in _QUOTES:
                start = self.pos
                self.string()
                try:
                    # tomllib decodes the escapes exactly as it did for the real parse.
                    decoded = tomllib.loads(f"k = {self.text[start : self.pos]}")["k"]
                except tomllib.TOMLDecodeError:
                    raise _LostError from None
                parts.append(str(decoded))
            else:
                start = self.pos
                while self.pos < len(self.text) and self.text[self.pos] in _BARE:
                    self.pos += 1
                if start == self.pos:
                    raise _LostError
                parts.append(self.text[start : self.pos])
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return parts
            self.pos += 1

    def string(self) -> None:
        """Skip a basic, literal or multi-line string, counting the lines it spans."""
        quote = self.text[self.pos]
        delimiter = quote * 3 if self.text.startswith(quote * 3, self.pos) else quote
        # One regular expression per kind: a 1 MB string is skipped in milliseconds.
        found = _STRINGS[delimiter].match(self.text, self.pos)
        self.advance(found.end() - self.pos if found is not None else len(self.text))

    def skip_blank(self, *, newlines: bool) -> None:
        """Skip spaces and comments, and line breaks too if ``newlines``."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t" or (newlines and char in "\r\n"):
                self.advance(1)
            elif char == "#":
                while self.pos < len(self.text) and self.text[self.pos] != "\n":
                    self.pos += 1
            else:
                return

    def advance(self, count: int) -> None:
        """Move ``count`` characters forward, counting line breaks."""
        end = min(self.pos + count, len(self.text))
        self.line += self.text.count("\n", self.pos, end)
        self.pos = end

    def expect(self, token: str) -> None:
        """Step over ``token`` (after optional spaces); stop quietly if it is not there."""
        self.skip_blank(newlines=False)
        if self.text.startswith(token, self.pos):
            self.pos += len(token)

    def check_progress(self, start: int) -> None:
        """Stop if a loop step consumed nothing, rather than spin forever."""
        if self.pos == start:
            raise _LostError

    def peek(self) -> str:
        """Return the current character, or an empty string at the end."""
        return self.text[self.pos] if self.pos < len(self.text) else ""
