"""A local stand-in for Slack: the Web API methods we call and an incoming webhook.

It listens on 127.0.0.1 on a free port, answers ``chat.postMessage`` and
``chat.update`` under ``/api/`` the way Slack does (``ok``, ``channel``,
``ts``, Slack's error codes), keeps the messages so a test can read the
channel as a person would see it, and records every request.

A channel's messages can be read back the way a bot with the history scopes
reads them: ``conversations.history`` (top-level messages, newest first,
paged by cursor, metadata only when asked for), ``conversations.replies`` (a
thread) and ``conversations.list`` (the workspace's channels and those posted
to). As in Slack, the history methods take a channel id, not a name, and a
message's ``ts`` is the time of posting, by the server's ``clock``.

Failures are scripted per method: a 429 with Retry-After, a 500 or 503, a
connection reset before or after the request is carried out, a hang, or one
of Slack's error codes; each scripted failure answers one request, then the
server behaves.
Messages are checked against Block Kit's limits (:func:`block_kit_problems`)
and a bad one is refused with ``invalid_blocks``, as Slack would.

File uploads follow Slack's external-upload flow (what slack-sdk's
``files_upload_v2`` does): ``files.getUploadURLExternal`` hands out an upload
URL on this server, the bytes are POSTed there, and
``files.completeUploadExternal`` shares them in a channel (and thread);
``files`` keeps each file with its bytes.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

TOKEN = "xoxb-fake-0000-secret-token"
WEBHOOK_PATH = "/services/T0000/B0000/fake-webhook-secret"
UPLOAD_PATH = "/upload/v1/"
WORKSPACE = ("spend", "finops", "pager", "search", "ai-spend", "spendwatch")  # channels that exist from the start
LIMITS = {"blocks": 50, "header": 150, "section": 3000, "fields": 10, "field": 2000, "context": 10,
          "context_text": 2000}


def block_kit_problems(message: dict[str, Any]) -> list[str]:
    """What Slack would refuse in a message: missing fallback text, unknown blocks, limits."""
    problems = []
    if not isinstance(message.get("text"), str) or not message["text"]:
        problems.append("no fallback text")
    blocks = message.get("blocks") or []
    if len(blocks) > LIMITS["blocks"]:
        problems.append(f"{len(blocks)} blocks > {LIMITS['blocks']}")
    for i, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "header":
            text = block["text"]
            if text["type"] != "plain_text" or len(text["text"]) > LIMITS["header"] or not text["text"]:
                problems.append(f"block {i}: header must be plain_text of 1..{LIMITS['header']} characters")
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"block {i}: section needs text or fields")
            if "text" in block and not 0 < len(block["text"]["text"]) <= LIMITS["section"]:
                problems.append(f"block {i}: section text length {len(block['text']['text'])}")
            fields = block.get("fields", [])
            if len(fields) > LIMITS["fields"]:
                problems.append(f"block {i}: {len(fields)} fields")
            problems += [f"block {i}: field too long" for f in fields if len(f["text"]) > LIMITS["field"]]
        elif kind == "context":
            elements = block["elements"]
            if not 0 < len(elements) <= LIMITS["context"]:
                problems.append(f"block {i}: {len(elements)} context elements")
            problems += [
                f"block {i}: context text too long" for e in elements if len(e["text"]) > LIMITS["context_text"]
            ]
        elif kind != "divider":
            problems.append(f"block {i}: unknown type {kind!r}")
    return problems


@dataclass
class Request:
    """One request as the server saw it."""

    method: str  # "chat.postMessage", "chat.update", "webhook", or the unknown path
    headers: dict[str, str]
    body: dict[str, Any]
    answer: str = ""  # "ok", an error code, "429", "500", "503" or "reset"


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    edits: int = 0
    metadata: dict[str, Any] | None = None


@dataclass
class File:
    """One uploaded file: what ``files.getUploadURLExternal`` announced, what arrived, where it was shared."""

    id: str
    filename: str
    length: int
    data: bytes = b""
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    completed: bool = False


@dataclass
class FakeSlack:
    """The server; ``start()`` it, point slack-sdk at ``api_url`` / ``webhook_url``, ``stop()`` it."""

    token: str = TOKEN
    clock: Callable[[], float] = time.time  # Slack's clock: each message's ts
    requests: list[Request] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)  # in posting order; webhook ones too
    files: dict[str, File] = field(default_factory=dict)  # by file id, in upload order
    channels: dict[str, str] = field(default_factory=lambda: {_channel_id(n): n for n in WORKSPACE})  # id → name
    _failures: dict[str, deque[tuple[str, int]]] = field(default_factory=dict)
    _last_ts: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> FakeSlack:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering: connections to the port are refused from now on (an outage)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None, "the fake Slack server is not running"
        return self._server.server_address[1]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    def fail(self, method: str, kind: str, times: int = 1, retry_after: int = 0) -> None:
        """Script failures for ``method``.

        ``kind`` is "429", "500", "503"; "reset" (the connection is cut before
        the request is read); "drop" (the request is carried out, then the
        connection is cut instead of answering); "hang" (no answer for
        ``retry_after`` s); or a Slack error code (``missing_scope``).
        """
        with self._lock:
            self._failures.setdefault(method, deque()).extend([(kind, retry_after)] * times)

    def calls(self, method: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == method]

    def top_level(self) -> list[Message]:
        return [m for m in self.messages if m.thread_ts is None]

    # -- answering (called from the handler threads) ------------------------------
    def _next_failure(self, method: str) -> tuple[str, int] | None:
        with self._lock:
            queue = self._failures.get(method)
            return queue.popleft() if queue else None

    def _answer(self, method: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            if method == "webhook":
                problems = block_kit_problems(body)
                if problems:
                    return 400, "invalid_blocks"
                self.messages.append(Message("webhook", "", body["text"], body.get("blocks", [])))
                return 200, "ok"
            if headers.get("authorization") != f"Bearer {self.token}":
                return 200, {"ok": False, "error": "invalid_auth"}
            if method == "chat.postMessage":
                return 200, self._post(body)
            if method == "chat.update":
                return 200, self._update(body)
            if method == "files.getUploadURLExternal":
                return 200, self._upload_url(body)
            if method == "files.completeUploadExternal":
                return 200, self._complete_upload(body)
            if method == "conversations.history":
                return 200, self._history(body)
            if method == "conversations.replies":
                return 200, self._replies(body)
            if method == "conversations.list":
                return 200, {"ok": True, "channels": [{"id": i, "name": n} for i, n in self.channels.items()],
                             "response_metadata": {"next_cursor": ""}}
            return 404, {"ok": False, "error": "unknown_method"}

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        problems = block_kit_problems(body)
        if problems:
            return {"ok": False, "error": "invalid_blocks", "errors": problems}
        name = body.get("channel", "")
        channel = _channel_id(name)
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if channel != name:
            self.channels[channel] = name.lstrip("#")
        thread_ts = body.get("thread_ts")
        if thread_ts and not any(m.channel == channel and m.ts == thread_ts for m in self.messages):
            return {"ok": False, "error": "thread_not_found"}
        self._last_ts = max(self.clock(), self._last_ts + 1e-6)  # unique, increasing, as Slack's are
        ts = f"{self._last_ts:.6f}"
        self.messages.append(Message(channel, ts, body["text"], body["blocks"], thread_ts,
                                     metadata=body.get("metadata")))
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": body["text"]}}

    def _history(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = body.get("channel", "")
        if channel not in self.channels and channel not in {m.channel for m in self.messages}:
            return {"ok": False, "error": "channel_not_found"}  # names too: Slack wants the id here
        found = [m for m in self.messages if m.channel == channel and m.thread_ts is None]
        return self._page(found[::-1], body)

    def _replies(self, body: dict[str, Any]) -> dict[str, Any]:
        channel, ts = body.get("channel", ""), body.get("ts", "")
        parent = [m for m in self.messages if m.channel == channel and m.ts == ts and m.thread_ts is None]
        if not parent:
            return {"ok": False, "error": "thread_not_found"}
        return self._page(parent + [m for m in self.messages if m.channel == channel and m.thread_ts == ts], body)

    def _page(self, found: list[Message], body: dict[str, Any]) -> dict[str, Any]:
        """One page of ``found`` after ``oldest``: ``limit`` messages from ``cursor`` (an offset here)."""
        oldest = float(body.get("oldest") or 0)
        found = [m for m in found if float(m.ts) > oldest]
        start, limit = int(body.get("cursor") or 0), int(body.get("limit") or 100)
        page = found[start:start + limit]
        with_metadata = str(body.get("include_all_metadata", "")).lower() in ("1", "true")
        more = start + limit < len(found)
        return {
            "ok": True, "has_more": more,
            "messages": [_as_seen(m, with_metadata) for m in page],
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        problems = block_kit_problems(body)
        if problems:
            return {"ok": False, "error": "invalid_blocks", "errors": problems}
        for m in self.messages:
            if m.channel == body.get("channel") and m.ts == body.get("ts"):
                m.text, m.blocks, m.edits = body["text"], body["blocks"], m.edits + 1
                return {"ok": True, "channel": m.channel, "ts": m.ts}
        return {"ok": False, "error": "message_not_found"}


    def _upload_url(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            length = int(body.get("length", ""))
        except ValueError:
            return {"ok": False, "error": "invalid_arguments"}
        if not body.get("filename") or length <= 0:
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{len(self.files) + 1:08d}"
        self.files[file_id] = File(file_id, body["filename"], length)
        return {"ok": True, "file_id": file_id, "upload_url": f"http://127.0.0.1:{self.port}{UPLOAD_PATH}{file_id}"}

    def _receive_upload(self, file_id: str, data: bytes) -> tuple[int, str]:
        with self._lock:
            upload = self.files.get(file_id)
            if upload is None:
                return 404, "no such upload"
            if len(data) != upload.length:
                return 400, f"expected {upload.length} bytes, got {len(data)}"
            upload.data = data
            return 200, f"OK - {len(data)}"

    def _complete_upload(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            entries = json.loads(body.get("files", ""))
        except ValueError:
            return {"ok": False, "error": "invalid_arguments"}
        channel = _channel_id(body.get("channel_id", ""))
        thread_ts = body.get("thread_ts") or None
        if thread_ts and not any(m.channel == channel and m.ts == thread_ts for m in self.messages):
            return {"ok": False, "error": "thread_not_found"}
        shared = []
        for entry in entries:
            upload = self.files.get(entry.get("id", ""))
            if upload is None or len(upload.data) != upload.length:
                return {"ok": False, "error": "file_not_found"}
            upload.title, upload.channel, upload.thread_ts = entry.get("title"), channel or None, thread_ts
            upload.completed = True
            shared.append({"id": upload.id, "name": upload.filename, "title": upload.title})
        return {"ok": True, "files": shared}


def _as_seen(m: Message, with_metadata: bool) -> dict[str, Any]:
    seen: dict[str, Any] = {"type": "message", "ts": m.ts, "text": m.text, "blocks": m.blocks}
    if m.thread_ts:
        seen["thread_ts"] = m.thread_ts
    if with_metadata and m.metadata:
        seen["metadata"] = m.metadata
    return seen


def _channel_id(name: str) -> str:
    """Slack answers with channel ids; a name maps to a stable fake one."""
    if not name:
        return ""
    if name.startswith("C"):
        return name
    return "C" + format(zlib.crc32(name.lstrip("#").encode()), "08X")


def _handler_for(slack: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            """The read methods slack-sdk sends as GET with the arguments in the query."""
            path, _, query = self.path.partition("?")
            self._handle(path.removeprefix("/api/"), {k: v[0] for k, v in parse_qs(query).items()})

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            if self.path.startswith(UPLOAD_PATH):
                with slack._lock:
                    slack.requests.append(Request("upload", headers, {"bytes": len(raw)}))
                status, answer = slack._receive_upload(self.path[len(UPLOAD_PATH):], raw)
                self._send(status, answer)
                return
            if self.path == WEBHOOK_PATH:
                method = "webhook"
            elif self.path.startswith("/api/"):
                method = self.path[len("/api/"):].split("?")[0]
            else:
                method = self.path
            body = _decode(raw, headers.get("content-type", ""))
            if method.startswith("files.") and "?" in self.path:
                body = {**{k: v[0] for k, v in parse_qs(self.path.split("?", 1)[1]).items()}, **body}
            self._handle(method, body)

        def _handle(self, method: str, body: dict[str, Any]) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            request = Request(method, headers, body)
            with slack._lock:
                slack.requests.append(request)
            failure = slack._next_failure(method)
            if failure is not None and failure[0] == "drop":
                slack._answer(method, headers, body)  # Slack acts on it; the answer never arrives
                failure = ("reset", 0)
            if failure is not None:
                request.answer = failure[0]
                self._fail(*failure)
                return
            status, answer = slack._answer(method, headers, body)
            request.answer = answer if isinstance(answer, str) else ("ok" if answer["ok"] else answer["error"])
            self._send(status, answer)

        def _fail(self, kind: str, retry_after: int) -> None:
            if kind == "hang":
                # Slack takes the request and says nothing for `retry_after` seconds, then drops it.
                time.sleep(retry_after)
                self.close_connection = True
                return
            if kind == "reset":
                # An abortive close: the client sees "connection reset by peer" instead of an answer.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            if kind == "429":
                self._send(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})
                return
            if not kind.isdigit():  # one of Slack's error codes, e.g. missing_scope
                self._send(200, {"ok": False, "error": kind})
                return
            self._send(int(kind), "<html><body>Slack is having trouble</body></html>")

        def _send(self, status: int, answer: Any, extra: dict[str, str] | None = None) -> None:
            data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
            self.send_response(status)
            kind = "text/html" if isinstance(answer, str) and answer.startswith("<") else (
                "text/plain" if isinstance(answer, str) else "application/json")
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
            pass

    return Handler


def _decode(raw: bytes, content_type: str) -> dict[str, Any]:
    if "json" in content_type:
        return json.loads(raw or b"{}")
    form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
    if isinstance(form.get("blocks"), str):
        form["blocks"] = json.loads(form["blocks"])
    return form
