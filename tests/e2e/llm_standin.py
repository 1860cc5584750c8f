"""A stand-in for an LLM server: no LLM can run on the test machines, so the ``openai`` tier is tested against
this OpenAI-compatible chat-completions endpoint on loopback, which answers (or misbehaves) by the
``model`` the request names:

- ``label:<L>`` answers {"label": "<L>"}; ``fields:<json>`` answers that JSON object as the content;
- ``hang`` never answers within the test; ``http500`` answers 500; ``busy429`` answers 429 (Retry-After: 0)
  to a request id's first call and ``label:3`` to its second; ``always429`` answers 429 every time;
- ``notjson`` answers a body that is not JSON; ``prose`` a completion whose content is not JSON;
- ``missing``, ``extra``, ``mistyped`` and ``unknown-label`` answer a label object with those faults.

Every request is kept (path, headers, body) so that a test can check what the tier sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LlmStandIn:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.attempts: Counter = Counter()
        self._stop = threading.Event()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                stand_in.answer(self, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        mode = body["model"]
        request_id = handler.headers.get("X-Request-Id", "")
        self.attempts[(mode, request_id)] += 1
        if mode == "hang":
            self._stop.wait(30)
            return
        if mode == "http500":
            return _send(handler, 500, b'{"error": "internal"}')
        if mode == "always429" or (mode == "busy429" and self.attempts[(mode, request_id)] == 1):
            return _send(handler, 429, b'{"error": "rate limited"}', {"Retry-After": "0"})
        if mode == "notjson":
            return _send(handler, 200, b"<html>gateway error</html>")
        content = {
            "busy429": '{"label": "3"}',
            "prose": "The digit is a three.",
            "missing": "{}",
            "extra": '{"label": "3", "why": "looks like it"}',
            "mistyped": '{"label": 3}',
            "unknown-label": '{"label": "eleven"}',
        }.get(mode)
        if content is None and mode.startswith("label:"):
            content = json.dumps({"label": mode.removeprefix("label:")})
        if content is None and mode.startswith("fields:"):
            content = mode.removeprefix("fields:")
        reply = {"id": "x", "object": "chat.completion", "created": int(time.time()), "model": mode,
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": content}}]}
        _send(handler, 200, json.dumps(reply).encode())

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(body)
