"""Refuse a settings file that would make ``tomllib`` crash or run away, before it parses it.

Python 3.11's ``tomllib`` recurses once per nested array or inline table (a
``RecursionError`` past some 1,000 levels), keeps every prefix of a dotted key (a key of
10,000 parts takes 400 MB) and converts integers of over 4,300 digits with a
``ValueError``. Settings nest a few levels and hold short values, so one pass over the
text, skipping strings and comments, refuses deep nesting, long dotted keys and long
unquoted values with their line, and the file's size is capped before it is read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

MAX_BYTES: Final = 1 << 20
"""Largest settings file read (1 MiB: a file with a thousand pairs is well under 100 kB)."""
MAX_NESTING: Final = 32
"""Most arrays or inline tables inside one another, and most parts of one dotted key."""
MAX_BARE: Final = 1_000
"""Longest run of unquoted key or value characters (a number, a date, a bare key)."""

_TOKEN = re.compile(
    r"""
      (?P<string>
          \"\"\"(?:[^"\\]|\\.|""?(?!"))*+\"\"\"(?:""?)?    # multi-line basic string
        | '''(?:[^']|''?(?!'))*+'''(?:''?)?               # multi-line literal string
        | "(?:[^"\\\n]|\\.)*+"                            # basic string
        | '[^'\n]*+'                                      # literal string
      )
    | (?P<comment>\#[^\n]*+)
    | (?P<open>[\[{])
    | (?P<close>[\]}])
    | (?P<dot>\.)
    | (?P<bare>[A-Za-z0-9_+\-:]++)
    | (?P<blank>[ \t]++)
    | (?P<other>.)
    """,
    re.DOTALL | re.VERBOSE,
)


def check_toml_text(path: Path, text: str) -> str | None:
    """Return ``path:line:column: invalid TOML: ...`` if ``text`` passes a limit, else None."""
    depth = 0
    chain = 0  # dots in the dotted key being read
    key_part = False  # the last token could be part of a dotted key
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "blank":
            continue
        if kind == "dot":
            chain = chain + 1 if key_part else 0
            key_part = False
            if chain >= MAX_NESTING:
                return _problem(path, text, match.start(), f"a key of over {MAX_NESTING} parts")
            continue
        if kind == "open":
            depth += 1
            if depth > MAX_NESTING:
                where = f"arrays or inline tables nested deeper than {MAX_NESTING}"
                return _problem(path, text, match.start(), where)
        elif kind == "close":
            depth = max(depth - 1, 0)
        elif kind == "bare" and match.end() - match.start() > MAX_BARE:
            where = f"an unquoted value or key of over {MAX_BARE:,} characters"
            return _problem(path, text, match.start(), where)
        key_part = kind in ("bare", "string")
        if not key_part:
            chain = 0
    return None


def _problem(path: Path, text: str, offset: int, what: str) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)
    return f"{path}:{line}:{column}: invalid TOML: {what}: refused"
