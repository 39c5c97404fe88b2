"""A loopback stand-in for an OpenAI-compatible server (vLLM, SGLang, llama.cpp, OpenAI), for judge tests.

`OpenAIServer` (standard library only) runs an `http.server.ThreadingHTTPServer` on 127.0.0.1 (port 0) in a daemon
thread, one thread per connection, and answers

* `POST /v1/chat/completions` with a `chat.completion` whose message content is `responder(request_json)`;
* `GET /v1/models` with the known model names.

Per test: `models` (a request for any other model gets 404 `model_not_found`), `api_key` (any other bearer token gets
401 `invalid_api_key`; None accepts any), `failures` (statuses that the next chat requests get, in order, e.g.
`[429, 500]`, each with `retry-after-ms: 10` so the client's retry waits 10 ms: openai 3.x ignores `Retry-After: 0`
and would back off 0.5 s or more). A responder may raise `ServerError(status, message)` to answer with that error,
return None for a null content, and sleep to keep a request in flight.

Every request is recorded in `server.requests` as {"method", "path", "headers" (lower-cased names), "json"};
`server.chat_requests` are those to the chat endpoint, and `server.max_in_flight` is the most chat requests that
were ever being answered at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from .loopback import LoopbackServer

RETRY_HEADERS = {"retry-after-ms": "10"}
ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
               429: "rate_limit_error"}


class ServerError(Exception):
    """Raised by a responder (or scripted) to answer with an OpenAI-shaped error."""

    def __init__(self, status: int, message: str = "", code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message or f"error {status}", code
        self.headers = dict(RETRY_HEADERS if status in (408, 409, 429) or status >= 500 else {}, **(headers or {}))


class OpenAIServer(LoopbackServer):
    """An OpenAI-compatible endpoint at `server.base_url` (http://127.0.0.1:<port>/v1). A context manager."""

    def __init__(self, *, responder: Callable[[dict], str | None] | None = None, models: tuple[str, ...] = ("judge",),
                 api_key: str | None = "test-key", failures: list[int] | None = None):
        self.responder = responder or (lambda body: "A")
        self.models = set(models)
        self.api_key = api_key
        self.failures = list(failures or [])
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return self.address + "/v1"

    @property
    def chat_requests(self) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == "/v1/chat/completions"]

    def _next_failure(self) -> int | None:
        with self.lock:
            return self.failures.pop(0) if self.failures else None


class _Handler(BaseHTTPRequestHandler):
    server_state: OpenAIServer  # set on the subclass made by OpenAIServer.start
    protocol_version = "HTTP/1.1"  # keep-alive, like a real server; every response has a Content-Length
    server_version = "FakeOpenAI/1.0"
    timeout = 30

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _handle(self, method: str) -> None:
        state = self.server_state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        with state.lock:
            state.requests.append({"method": method, "path": path, "json": body,
                                   "headers": {k.lower(): v for k, v in self.headers.items()}})
        try:
            self._check_key()
            if method == "GET" and path == "/v1/models":
                return self._json(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in sorted(state.models)]})
            if method == "POST" and path == "/v1/chat/completions":
                return self._chat(body if isinstance(body, dict) else {})
            raise ServerError(404, f"Unknown request URL: {method} {path}", "unknown_url")
        except ServerError as e:
            error = {"message": e.message, "type": ERROR_TYPES.get(e.status, "server_error"), "param": None,
                     "code": e.code}
            self._json(e.status, {"error": error}, e.headers)

    def _check_key(self) -> None:
        expected = self.server_state.api_key
        auth = self.headers.get("Authorization", "")
        if expected is not None and auth != f"Bearer {expected}":
            # like OpenAI, quote the key that was sent: a judge must not pass this message on
            sent = auth.removeprefix("Bearer ")
            raise ServerError(401, f"Incorrect API key provided: {sent}.", "invalid_api_key")

    def _chat(self, body: dict) -> None:
        state = self.server_state
        status = state._next_failure()
        if status is not None:
            raise ServerError(status, f"scripted failure {status}")
        model = body.get("model")
        if model not in state.models:
            raise ServerError(404, f"The model `{model}` does not exist or you do not have access to it.",
                              "model_not_found")
        with state.lock:
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            content = state.responder(body)
        finally:
            with state.lock:
                state.in_flight -= 1
        self._json(200, {
            "id": f"chatcmpl-{len(state.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    def _json(self, status: int, payload, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout) while we were answering
            self.close_connection = True


__all__ = ["OpenAIServer", "ServerError"]


OpenAIServer.handler_base, OpenAIServer.state_name = _Handler, "server_state"
