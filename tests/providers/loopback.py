"""A loopback HTTP server that speaks a provider's wire format, for the official SDKs to talk to.

Tests queue the replies the server gives (status, JSON or raw body, headers, a
delay, or a dropped connection) and read back every request it received, so
they can check both what the SDK sent and how Paymaster translated the answer.
Only 127.0.0.1 is ever bound or dialled.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A key shaped like a real one, so that any leak of it is easy to spot in text.
ANTHROPIC_KEY = "sk-ant-api03-LOOPBACKtestKEY0123456789abcdefABCDEF"
OPENAI_KEY = "sk-proj-LOOPBACKtestKEY0123456789abcdefABCDEF"


@dataclass(frozen=True)
class Received:
    """One request the loopback server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The request body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Reply:
    """What the loopback server answers: a status, a body, headers, an optional delay or a hang-up."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    truncate: bool = False

    def encoded(self) -> tuple[bytes, str]:
        """The body as bytes, and its content type."""
        if isinstance(self.body, bytes):
            return self.body, "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), "application/json"
        return json.dumps(self.body).encode(), "application/json"


Responder = Callable[[Received], Reply]


# -- bodies in each provider's real wire format ---------------------------------------------


def claude_message(
    content: list[dict[str, Any]] | None = None,
    *,
    usage: dict[str, Any] | None = None,
    stop_reason: str = "end_turn",
    model: str | None = None,
) -> dict[str, Any]:
    """A Messages API response body, as api.anthropic.com sends it (``model=None``: the model asked for)."""
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content if content is not None else [{"type": "text", "text": "Hello!"}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage
        if usage is not None
        else {
            "input_tokens": 12,
            "output_tokens": 6,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "standard",
        },
    }


def claude_error(kind: str, message: str) -> dict[str, Any]:
    """A Messages API error body."""
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}


def chat_completion(
    message: dict[str, Any] | None = None,
    *,
    usage: dict[str, Any] | None = None,
    finish_reason: str = "stop",
    model: str | None = None,
) -> dict[str, Any]:
    """A Chat Completions response body, as api.openai.com sends it (``model=None``: the model asked for)."""
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message or {"role": "assistant", "content": "Hello!", "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage
        if usage is not None
        else {
            "prompt_tokens": 19,
            "completion_tokens": 10,
            "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_fc9f1d7035",
    }


def openai_error(kind: str, message: str, code: str | None = None) -> dict[str, Any]:
    """A Chat Completions error body."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 with a queue of replies and a log of requests."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._replies: list[Reply | Responder] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        # A short poll interval keeps shutdown, and so every test's teardown, fast.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the server, without a trailing slash."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def reply(self, *replies: Reply | Responder) -> None:
        """Queue replies, answered in order, one per request."""
        with self._lock:
            self._replies.extend(replies)

    def next_reply(self, request: Received) -> Reply:
        """Record ``request`` and pick the reply for it (a 500 when none is queued)."""
        with self._lock:
            self.received.append(request)
            item = self._replies.pop(0) if self._replies else Reply(500, {"error": "no reply queued"})
        reply = item(request) if callable(item) else item
        if isinstance(reply.body, dict) and "model" in reply.body and reply.body["model"] is None:
            # A body built without a model names the one asked for, as the real APIs do.
            asked = request.json().get("model") if request.body else None
            reply = replace(reply, body={**reply.body, "model": asked})
        return reply

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Wake delayed handlers, stop serving and close the listening socket."""
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _make_handler(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = server.next_reply(Received(self.command, self.path, headers, body))
            if reply.delay and server.stopping.wait(reply.delay):
                return
            if reply.drop:
                # Hang up without a status line: the client sees a dropped connection.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            data, content_type = reply.encoded()
            try:
                self.send_response(reply.status)
                self.send_header("content-type", reply.headers.pop("content-type", content_type))
                self.send_header("content-length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if reply.truncate:
                    # Promise the whole body, send half of it, hang up.
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(data)
            except OSError:
                # The client gave up first (a timeout test); nothing is listening any more.
                self.close_connection = True

        do_GET = do_POST

        def log_message(self, format: str, *args: Any) -> None:
            # Keep test output quiet; the requests are in server.received.
            pass

    return Handler
