"""Telegram HTML: escaping, splitting a long text into messages, and the plain fallback.

``split_html`` cuts a long text into messages Telegram accepts (at most 4,096 characters
each) without cutting a tag or an entity: tags open at a cut are closed and reopened in the
next message. ``plain_text`` is the fallback of a text Telegram could not parse.
"""

from __future__ import annotations

import html
import re
from collections import deque
from collections.abc import Sequence

MAX_MESSAGE = 4096
"""Telegram's limit of one text message (characters after entity parsing)."""
MAX_CAPTION = 1024
"""Telegram's limit of one photo caption."""


def escape(text: object) -> str:
    """Return ``text`` escaped for Telegram HTML (``&``, ``<``, ``>``)."""
    return html.escape(str(text), quote=False)


_UNIT = re.compile(r"<[^<>]*>|&#?[0-9A-Za-z]+;|\n| +|[^\s<&]{1,64}|\s|[<&]")
_TAG = re.compile(r"<(/?)([a-zA-Z][\w-]*)")
_TAGS = re.compile(r"<[^<>]*>")
"""The tag units of ``_UNIT`` (every ``<`` starts a unit: a tag, else ``<`` alone)."""
_PIECE = 64


def _len16(text: str) -> int:
    """Return the length of ``text`` in UTF-16 code units (as Telegram counts)."""
    return len(text.encode("utf-16-le")) // 2


def _closing(stack: Sequence[tuple[str, str]]) -> str:
    return "".join(f"</{name}>" for name, _ in reversed(stack))


def _after(stack: list[tuple[str, str]], unit: str) -> list[tuple[str, str]]:
    """Return the stack of open tags after ``unit``."""
    match = _TAG.match(unit)
    if match is None:
        return stack
    closing, name = match.group(1), match.group(2).lower()
    if not closing:
        return [*stack, (name, unit)]
    for i in range(len(stack) - 1, -1, -1):
        if stack[i][0] == name:
            return stack[:i] + stack[i + 1 :]
    return stack


def _is_text(unit: str) -> bool:
    return not (unit.startswith("<") and unit.endswith(">")) and not unit.isspace()


def split_html(text: str, limit: int = MAX_MESSAGE) -> list[str]:
    """Return ``text`` as messages of at most ``limit`` characters with balanced tags.

    Cuts at a line break if the message has one, else at a space, else between two
    pieces of a long word; never inside a tag or an entity. Tags open at a cut are
    closed at its end and reopened at the start of the next message. Lengths are counted
    on the HTML itself (an upper bound of Telegram's count after parsing), in UTF-16 units.
    """
    if limit < 4 * _PIECE:
        raise ValueError(f"limit {limit} is too small to split safely")
    if 3 * _len16(text) <= limit:
        return _whole(text)
    return _split(text, limit)


def _whole(text: str) -> list[str]:
    """Return what ``_split`` returns for a text it cannot cut (the common alert).

    A cut is tried only where a prefix and the closing tags of what it left open exceed
    the limit; a closing tag is at most twice as long as its opening tag, so within a
    third of the limit no prefix gets there. One message then: the text, its trailing
    blanks dropped and its open tags closed. (Tokenizing an alert costs ~0.15 ms of the
    event loop per message; this path, ~11 µs.)
    """
    stack: list[tuple[str, str]] = []
    for tag in _TAGS.findall(text):
        stack = _after(stack, tag)
    return [text.rstrip() + _closing(stack)] if _text_of(text).strip() else []


def _split(text: str, limit: int) -> list[str]:
    units = deque(_UNIT.findall(text))
    chunks: list[str] = []
    stack: list[tuple[str, str]] = []
    while units:
        head = "".join(tag for _, tag in stack)
        cur = [head] if head else []
        length = _len16(head)
        has_text = False
        lines: list[tuple[int, list[tuple[str, str]]]] = []
        spaces: list[tuple[int, list[tuple[str, str]]]] = []
        while units:
            unit = units[0]
            after = _after(stack, unit)
            size = _len16(unit)
            if has_text and length + size + _len16(_closing(after)) > limit:
                break
            units.popleft()
            cur.append(unit)
            length += size
            stack = after
            has_text = has_text or _is_text(unit)
            if has_text and unit == "\n":
                lines.append((len(cur), stack))
            elif has_text and unit.isspace():
                spaces.append((len(cur), stack))
        if units and (lines or spaces):
            cut, stack = (lines or spaces)[-1]
            units.extendleft(reversed(cur[cut:]))
            del cur[cut:]
        body = "".join(cur)
        if _text_of(body).strip():
            chunks.append(body.rstrip() + _closing(stack))
        while units and units[0].isspace():
            units.popleft()  # a message does not start with the blank the cut was at
    return chunks


def _text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^<>]*>", "", fragment))


_MARKUP = re.compile(r"</?[a-zA-Z][\w-]*(?:\s[^<>]*)?/?>")


def plain_text(text: str) -> str:
    """Return an HTML text as plain text: tags removed, entities unescaped.

    What is sent when Telegram cannot parse the HTML. Only what looks like a tag (``<b>``,
    ``</a>``, ``<a href="…">``) is removed, so a stray ``<`` or ``a < b`` stays.
    """
    return html.unescape(_MARKUP.sub("", text))
