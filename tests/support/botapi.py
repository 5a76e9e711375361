"""A fake Telegram Bot API: a real HTTP/1.1 server on 127.0.0.1 for python-telegram-bot.

It answers the methods the bot calls (``getMe``, ``deleteWebhook``, ``getUpdates`` with
long polling, ``sendMessage``, ``sendPhoto``, ``setMyCommands``), checks the token in the
path, validates HTML texts the way Telegram does (known tags, balanced, entities, at
most 4,096 characters after parsing), and records every request. Tests inject updates
(``push_message``), make the next calls of a method fail (``fail_next``: 429 with
``retry_after``, 5xx, 400 …; ``storm``: a pattern of such answers), every send to a chat
fail (``fail_chat``) or the next
HTML texts be refused as unparsable (``refuse_html``), and await requests with
``wait_for`` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

BOT_ID = 7_000_000_001
USERNAME = "pairwatch_test_bot"
_ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span",
                 "tg-spoiler", "a", "code", "pre", "blockquote", "tg-emoji"}  # fmt: skip
_TOKEN_RE = re.compile(r"<(/?)([a-zA-Z][\w-]*)[^<>]*>|&(#?\w+);|[<>&]")
_NAMED = {"lt", "gt", "amp", "quot"}


@dataclass
class Upload:
    """A file part of a multipart request."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class ApiCall:
    """One request the server got, and the HTTP status it answered."""

    method: str
    params: dict[str, str]
    """Form fields as sent: strings as they are, other values JSON-encoded."""
    files: dict[str, Upload]
    at: float
    """``time.monotonic()`` when it arrived."""
    status: int = 200
    retry_after: int | None = None
    """The ``retry_after`` answered with an error (a 429's wait), if any."""

    def arg(self, name: str) -> Any:
        """Return a parameter JSON-decoded (a plain string when it is not JSON)."""
        raw = self.params.get(name)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    @property
    def chat(self) -> str | None:
        """Return the ``chat_id`` parameter."""
        return self.params.get("chat_id")


@dataclass
class Failure:
    """An error answer: HTTP status, description and optional ``retry_after``."""

    status: int
    description: str
    retry_after: int | None = None

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": False, "error_code": self.status,
                                "description": self.description}  # fmt: skip
        if self.retry_after is not None:
            data["parameters"] = {"retry_after": self.retry_after}
        return data


def free_port() -> int:
    """Return a loopback port nothing listens on (for an "unreachable" API)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_html(text: str) -> str | None:
    """Return why Telegram would refuse ``text`` in HTML parse mode, or None."""
    stack: list[str] = []
    plain: list[str] = []
    position = 0
    for match in _TOKEN_RE.finditer(text):
        plain.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if match.group(2):
            name = match.group(2).lower()
            if name not in _ALLOWED_TAGS:
                return f'Unsupported start tag "{name}"'
            if match.group(1):
                if not stack or stack[-1] != name:
                    return f'Unmatched end tag "{name}"'
                stack.pop()
            else:
                stack.append(name)
        elif match.group(3):
            entity = match.group(3)
            if not (entity in _NAMED or re.fullmatch(r"#\d+|#x[0-9a-fA-F]+", entity)):
                return f'Unsupported HTML entity "&{entity};"'
            plain.append(html.unescape(f"&{entity};"))
        else:
            return f'Unexpected "{token}": escape it'
    plain.append(text[position:])
    if stack:
        return f'Can\'t find end tag corresponding to start tag "{stack[-1]}"'
    parsed = "".join(plain)
    if not parsed.strip():
        return "text is empty"
    if len(parsed.encode("utf-16-le")) // 2 > 4096:
        return "message is too long"
    return None


@dataclass
class FakeBotApi:
    """The server; use as ``async with FakeBotApi(token) as api``."""

    token: str
    port: int = 0
    calls: list[ApiCall] = field(default_factory=list)
    commands: list[dict[str, str]] = field(default_factory=list)
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _next_update: int = 1000
    _next_message: int = 1
    _failures: dict[str, list[Failure | None]] = field(default_factory=dict)
    _chat_failures: dict[str, Failure] = field(default_factory=dict)
    _html_refusals: dict[str, list[str]] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _connections: set[asyncio.Task[Any]] = field(default_factory=set)
    _tick: asyncio.Event = field(default_factory=asyncio.Event)
    _new_update: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base_url(self) -> str:
        """Return the ``base_url`` for python-telegram-bot (the token is appended)."""
        return f"http://127.0.0.1:{self.port}/bot"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeBotApi:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- what tests tell it ---------------------------------------------------------

    def fail_next(self, method: str, count: int = 1, *, status: int = 429,
                  description: str | None = None, retry_after: int | None = None,
                  after: int = 0) -> None:  # fmt: skip
        """Answer ``count`` calls of ``method`` with an error, after ``after`` answered well."""
        if description is None:
            description = (
                f"Too Many Requests: retry after {retry_after}"
                if status == 429
                else f"{HTTPStatus(status).phrase}"
            )
        self._failures.setdefault(method, []).extend(
            [None] * after + [Failure(status, description, retry_after)] * count
        )

    def storm(self, method: str, pattern: Sequence[int | None], *, retry_after: int = 1) -> None:
        """Answer the next calls of ``method`` by ``pattern``, one entry per call, in order.

        An entry is an error status (429 comes with ``retry_after``) or None: answered as
        usual. Queued after what ``fail_next`` queued before.
        """
        queue = self._failures.setdefault(method, [])
        for status in pattern:
            if status is None:
                queue.append(None)
            elif status == 429:
                queue.append(
                    Failure(429, f"Too Many Requests: retry after {retry_after}", retry_after)
                )
            else:
                queue.append(Failure(status, HTTPStatus(status).phrase))

    def fail_chat(self, chat_id: str, status: int = 400,
                  description: str = "Bad Request: chat not found") -> None:  # fmt: skip
        """Answer every send to ``chat_id`` with an error."""
        self._chat_failures[chat_id] = Failure(status, description)

    def refuse_html(
        self, method: str = "sendMessage", count: int = 1, problem: str = 'Unsupported tag "x"'
    ) -> None:
        """Answer the next ``count`` calls of ``method`` in HTML parse mode with a 400.

        Telegram's answer to a text it cannot parse: ``Bad Request: can't parse entities:
        …``. Calls without ``parse_mode`` (plain text) are answered as usual.
        """
        self._html_refusals.setdefault(method, []).extend([problem] * count)

    def push_message(self, chat_id: int, text: str, *, user_id: int | None = None,
                     username: str | None = "alice", title: str | None = None) -> int:  # fmt: skip
        """Queue a message update (a command when ``text`` starts with ``/``)."""
        self._next_update += 1
        chat: dict[str, Any] = {"id": chat_id, "type": "private" if chat_id > 0 else "group"}
        if chat_id < 0:
            chat["title"] = title or "a group"
        else:
            chat["first_name"] = "Alice"
        user: dict[str, Any] = {"id": user_id or abs(chat_id), "is_bot": False,
                                "first_name": "Alice"}  # fmt: skip
        if username:
            user["username"] = username
        message: dict[str, Any] = {"message_id": self._next_message, "date": int(time.time()),
                                   "chat": chat, "from": user, "text": text}  # fmt: skip
        self._next_message += 1
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        self._updates.append({"update_id": self._next_update, "message": message})
        self._new_update.set()
        return self._next_update

    # --- what tests read ------------------------------------------------------------

    def sent(self, method: str = "sendMessage", chat: str | None = None) -> list[ApiCall]:
        """Return the calls of ``method`` answered 200 (to ``chat`` if given)."""
        return [c for c in self.calls if c.method == method and c.status == 200
                and (chat is None or c.chat == chat)]  # fmt: skip

    async def wait_for(
        self,
        method: str,
        count: int = 1,
        *,
        where: Callable[[ApiCall], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[ApiCall]:
        """Return once ``count`` calls of ``method`` (matching ``where``) have arrived."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = [c for c in self.calls if c.method == method and (where is None or where(c))]
            if len(found) >= count:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [(c.method, c.status, c.chat) for c in self.calls]
                raise TimeoutError(f"{len(found)} of {count} {method} calls; got {seen}")
            tick = self._tick
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tick.wait(), remaining)

    # --- HTTP -----------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                target, headers, body = request
                status, answer = await self._answer(target, headers, body)
                payload = json.dumps(answer).encode()
                writer.write(
                    f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                    "Connection: keep-alive\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # close() cancels open connections; end normally, as Python 3.11's stream
            # callback calls ``task.exception()``, which raises for a cancelled task.
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _answer(
        self, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        url = urlsplit(target)
        _, _, rest = url.path.partition("/bot")
        token, _, method = rest.rpartition("/")
        params, files = _form(headers.get("content-type", ""), body)
        params.update(dict(parse_qsl(url.query)))
        call = ApiCall(method, params, files, time.monotonic())
        failure = self._failure(call, token)
        if failure is None and method == "getUpdates":
            self._record(call)
            return 200, {"ok": True, "result": await self._get_updates(call)}
        if failure is None:
            try:
                result = self._result(call)
            except _Refused as refused:
                failure = refused.failure
        if failure is not None:
            call.status = failure.status
            call.retry_after = failure.retry_after
            self._record(call)
            return failure.status, failure.body()
        self._record(call)
        return 200, {"ok": True, "result": result}

    def _record(self, call: ApiCall) -> None:
        self.calls.append(call)
        self._tick.set()
        self._tick = asyncio.Event()

    def _failure(self, call: ApiCall, token: str) -> Failure | None:
        if token != self.token:
            return Failure(401, "Unauthorized")
        queued = self._failures.get(call.method)
        if queued and (failure := queued.pop(0)) is not None:
            return failure
        if call.chat is not None and call.chat in self._chat_failures:
            return self._chat_failures[call.chat]
        refusals = self._html_refusals.get(call.method)
        if refusals and call.params.get("parse_mode") == "HTML":
            return Failure(400, f"Bad Request: can't parse entities: {refusals.pop(0)}")
        return None

    async def _get_updates(self, call: ApiCall) -> list[dict[str, Any]]:
        offset = int(call.arg("offset") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates:
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), float(call.arg("timeout") or 0))
        limit = int(call.arg("limit") or 100)
        return self._updates[:limit]

    def _result(self, call: ApiCall) -> Any:
        method = call.method
        if method == "getMe":
            return {"id": BOT_ID, "is_bot": True, "first_name": "pairwatch", "username": USERNAME,
                    "can_join_groups": True, "can_read_all_group_messages": False,
                    "supports_inline_queries": False}  # fmt: skip
        if method == "deleteWebhook":
            if call.arg("drop_pending_updates") is True:
                self._updates.clear()
            return True
        if method == "setMyCommands":
            self.commands = list(call.arg("commands"))
            return True
        if method == "sendMessage":
            _check_text(call, "text")
            return self._message(call, {"text": call.params["text"]})
        if method == "sendPhoto":
            photo = call.files.get("photo")
            if photo is None or not photo.data:
                raise _Refused(Failure(400, "Bad Request: there is no photo in the request"))
            if "caption" in call.params:
                _check_text(call, "caption")
            size = {"file_id": "photo1", "file_unique_id": "u1", "width": 1000, "height": 750,
                    "file_size": len(photo.data)}  # fmt: skip
            return self._message(call, {"photo": [size]})
        raise _Refused(Failure(404, "Not Found: method not found"))

    def _message(self, call: ApiCall, content: dict[str, Any]) -> dict[str, Any]:
        chat_id = call.arg("chat_id")
        chat: dict[str, Any] = (
            {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup", "title": "t"}
            if isinstance(chat_id, int)
            else {"id": -1001, "type": "channel", "title": "c", "username": str(chat_id)[1:]}
        )
        self._next_message += 1
        return {"message_id": self._next_message, "date": int(time.time()), "chat": chat,
                **content}  # fmt: skip


class _Refused(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.description)
        self.failure = failure


def _check_text(call: ApiCall, name: str) -> None:
    if call.params.get("parse_mode") != "HTML":
        return
    problem = check_html(call.params[name])
    if problem is not None:
        raise _Refused(Failure(400, f"Bad Request: can't parse entities: {problem}"))


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, dict[str, str], bytes] | None:
    line = await reader.readline()
    if not line.strip():
        return None
    _, target, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(chunk[:-2])
        body = b"".join(parts)
    else:
        body = b""
    return target, headers, body


def _form(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, Upload]]:
    if content_type.startswith("multipart/form-data"):
        return _multipart(content_type, body)
    return dict(parse_qsl(body.decode(), keep_blank_values=True)), {}


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, Upload]]:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    assert match is not None, content_type
    params: dict[str, str] = {}
    files: dict[str, Upload] = {}
    for section in body.split(b"--" + match.group(1).encode())[1:-1]:
        head, _, data = section.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        text = head.decode("utf-8")
        name = re.search(r'(?:^|[;\s])name="([^"]*)"', text)
        filename = re.search(r'filename="([^"]*)"', text)
        kind = re.search(r"content-type:\s*(\S+)", text, re.IGNORECASE)
        assert name is not None, text
        if filename is None:
            params[name.group(1)] = data.decode("utf-8")
        else:
            files[name.group(1)] = Upload(
                filename.group(1), kind.group(1) if kind else "application/octet-stream", data
            )
    return params, files
