"""A small real OpenAI-compatible server (stdlib HTTP on a loopback port) whose answers a test chooses.

For tests that need a model *server* (a URL and a model name) rather than a backend object: what the server
answers can change between two runs while its URL and name stay the same, as a redeployed vLLM would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class TinyOpenAIServer:
    def __init__(self, answer: Callable[[str], str]) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                server.requests.append({"path": self.path, **body})
                prompt = body.get("prompt") or "".join(m.get("content", "") for m in body.get("messages", []))
                text = server.answer(prompt)
                chat = self.path.endswith("/chat/completions")
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.end_headers()
                    piece = {"delta": {"content": text}} if chat else {"text": text}
                    for event in (
                        {"choices": [{"index": 0, **piece, "finish_reason": None}]},
                        {
                            "choices": [
                                {"index": 0, **({"delta": {}} if chat else {"text": ""}), "finish_reason": "stop"}
                            ]
                        },
                    ):
                        self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
                payload = {
                    "choices": [{"index": 0, **choice, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(text) // 4},
                }
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"

    @contextmanager
    def running(self) -> Iterator[TinyOpenAIServer]:
        thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.httpd.shutdown()
            self.httpd.server_close()
            thread.join()
