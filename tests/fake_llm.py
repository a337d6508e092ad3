"""A tiny OpenAI-compatible chat server for tests: real HTTP on 127.0.0.1, one behaviour per mode.

Modes (set `server.mode`, or pass a list to `server.script` to play modes request by request):
  good        a clean comma list derived from the queried class ("small X, large X, ...")
  messy       numbered lines, bullets, quotes, markdown, plural duplicates, an echoed prefix
  empty       a valid completion whose content is empty
  garbage     HTTP 200 with an HTML body (not JSON at all)
  rate_limit  HTTP 429 with retry-after: 0
  rate_limit_once  HTTP 429 on the first request in this mode, then good
  error_500   HTTP 500
  unauthorized HTTP 401
  slow        sleeps `delay` seconds, then answers like good
Structured output: a request with `response_format` of type `json_schema` is answered according to
`server.structured`: "supported" (default) sends the names as `{"names": [...]}`, "unsupported" refuses
with HTTP 400 as servers without JSON-schema support do, "ignored" answers in free text.
`server.active` / `server.peak` count requests in flight (how concurrent a client was).
Every request is recorded in `server.requests` (path, JSON body, authorization header).
"""
from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ADJECTIVES = ["small", "large", "antique", "miniature", "folding", "giant", "vintage", "pocket"]
MESSY = ('Response: Sure! Here are some fine-grained categories related to {cls}:\n\n'
         '1. **Flatbeds** - a truck with an open bed\n2) "Tow truck".\n- Ute\n* box truck (enclosed)\n'
         '\u2022 flatbed\n\nQuery: pickup truck\nResponse: lorry, van')


def default_answer(cls: str, k: int) -> str:
    """A clean answer whose names differ per class, so the leak filter keeps them."""
    return ", ".join(f"{a} {cls}" for a in ADJECTIVES[:k])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        srv: FakeLLM = self.server.fake  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        with srv.lock:
            srv.requests.append({"path": self.path, "body": body, "authorization": self.headers.get("authorization")})
            mode = srv.script.pop(0) if srv.script else srv.mode
            if mode == "rate_limit_once":
                mode, srv.limited = ("good" if srv.limited else "rate_limit"), True
            srv.active += 1
            srv.peak = max(srv.peak, srv.active)
        try:
            self._answer(srv, body, mode)
        finally:
            with srv.lock:
                srv.active -= 1

    def _answer(self, srv: "FakeLLM", body: dict, mode: str) -> None:
        if not self.path.endswith("/chat/completions"):
            return self._send(404, b'{"error":{"message":"not found"}}')
        prompt = body["messages"][-1]["content"]
        queries = re.findall(r"Query:\s*(.+)", prompt)
        cls = queries[-1].strip() if queries else prompt
        m = re.search(r"list out (\d+)", prompt)
        k = int(m.group(1)) if m else 5
        if mode == "rate_limit":
            return self._send(429, b'{"error":{"message":"slow down"}}', headers={"retry-after": "0"})
        if mode == "error_500":
            return self._send(500, b'{"error":{"message":"boom"}}')
        if mode == "unauthorized":
            return self._send(401, b'{"error":{"message":"invalid api key"}}')
        if mode == "garbage":
            return self._send(200, b"<html>gateway says hello</html>", "text/html")
        if mode == "slow":
            time.sleep(srv.delay)
        content = {"messy": MESSY.format(cls=cls), "empty": ""}.get(mode)
        if content is None:
            content = srv.answers.get(cls) or default_answer(cls, k)
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema" and srv.structured == "unsupported":
            return self._send(400, b'{"error":{"message":"response_format json_schema is not supported"}}')
        if fmt.get("type") == "json_schema" and srv.structured == "supported" and cls not in srv.answers:
            content = json.dumps({"names": content.split(", ") if content else []})
        resp = {"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}}
        try:
            self._send(200, json.dumps(resp).encode())
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass


class FakeLLM:
    """Start with `with FakeLLM() as srv:`; `srv.url` is the base_url (ends in /v1)."""

    def __init__(self, mode: str = "good", delay: float = 1.0, answers: dict[str, str] | None = None,
                 structured: str = "supported") -> None:
        self.mode, self.delay, self.answers, self.structured = mode, delay, dict(answers or {}), structured
        self.active = self.peak = 0
        self.script: list[str] = []
        self.limited = False
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> "FakeLLM":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "FakeLLM":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":  # handy by hand: python tests/fake_llm.py [mode]
    import sys

    with FakeLLM(sys.argv[1] if len(sys.argv) > 1 else "good") as s:
        print(s.url, flush=True)
        threading.Event().wait()
