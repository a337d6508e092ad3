"""HTTP servers on 127.0.0.x that misbehave on purpose, and count what they see (requests, connections).

Each `FaultServer` listens on one loopback address (127.0.0.2, .3, ...: separate hosts for the
downloader's per-host limits) and maps paths to `Route`s. It records every request (path, start,
end) and the most connections it ever had open at once.
"""
from __future__ import annotations

import io
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import numpy as np
from PIL import Image


def image_bytes(fmt: str = "JPEG", size: int = 24, seed: int = 0) -> bytes:
    """A small distinct image (random blocks) in a format."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, fmt)
    return buf.getvalue()


def bomb_png(side: int = 6000) -> bytes:
    """A 1-bit PNG of side x side pixels that compresses to a few KB."""
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Route:
    """What a path answers: status, headers, body; or a `handler(request)` that writes everything itself."""

    body: bytes = b""
    status: int = 200
    ctype: str = "image/jpeg"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    length: bool = True  # send Content-Length (else the body ends when the connection closes)
    handler: Callable[["_Handler"], None] | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "FaultServer"

    def setup(self) -> None:
        super().setup()
        self.server.connection_opened()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.connection_closed()

    def do_GET(self) -> None:  # noqa: N802
        t0 = time.monotonic()
        route = self.server.routes.get(self.path.split("?")[0])
        try:
            if route is None:
                self._send(404, b"not found", "text/plain", {}, True)
            elif route.handler is not None:
                route.handler(self)
            else:
                if route.delay:
                    time.sleep(route.delay)
                self._send(route.status, route.body, route.ctype, route.headers, route.length)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            self.server.log_request_done(self.path, t0, time.monotonic())

    def _send(self, status: int, body: bytes, ctype: str, headers: dict, length: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in headers.items():
            self.send_header(k, v)
        if length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class FaultServer(ThreadingHTTPServer):
    """One misbehaving host; use as a context manager."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.2", routes: dict[str, Route] | None = None) -> None:
        super().__init__((host, 0), _Handler)
        self.routes: dict[str, Route] = routes or {}
        self.stop = threading.Event()
        self.requests: list[tuple[str, float, float]] = []
        self.open_connections = self.max_connections = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def connection_opened(self) -> None:
        with self._lock:
            self.open_connections += 1
            self.max_connections = max(self.max_connections, self.open_connections)

    def connection_closed(self) -> None:
        with self._lock:
            self.open_connections -= 1

    def log_request_done(self, path: str, t0: float, t1: float) -> None:
        with self._lock:
            self.requests.append((path, t0, t1))

    def count(self, path: str) -> int:
        return sum(p == path for p, _, _ in self.requests)

    def close(self) -> None:
        self.stop.set()
        self.shutdown()
        self.server_close()

    def __enter__(self) -> "FaultServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# handlers that need more than a canned answer


def hang(req: _Handler) -> None:
    """Accept the request and never answer (until the server stops)."""
    req.server.stop.wait(30)


def drip(req: _Handler) -> None:
    """Headers, then one byte every 50 ms, for ever: no read timeout ever fires."""
    req.send_response(200)
    req.send_header("Content-Type", "image/jpeg")
    req.send_header("Connection", "close")
    req.end_headers()
    req.close_connection = True
    while not req.server.stop.wait(0.05):
        req.wfile.write(b"\xff")
        req.wfile.flush()


def fail_then(first: Route, then: Route, times: int = 1) -> Callable[[_Handler], None]:
    """Answer `first` for the first `times` requests to the path, then `then`."""
    seen = {"n": 0}

    def handler(req: _Handler) -> None:
        seen["n"] += 1
        r = first if seen["n"] <= times else then
        req._send(r.status, r.body, r.ctype, r.headers, r.length)

    return handler


def free_port_nobody_listens(host: str = "127.0.0.9") -> int:
    """A port on `host` that refuses connections."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
