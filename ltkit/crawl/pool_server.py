"""A tiny local HTTP server over a captioned pool, so the real downloader runs offline.

`/pool/<j>.png` serves item j of the built-in world's pool (PNG-encoded on request); `/files/<path>`
serves a file under a folder (never outside it). Hit URLs name the host `ltkit-pool.invalid`
(`image_search.POOL_HOST`); `PoolServer.resolve` maps it to this server's address, and the
downloader's `allow_loopback` must be on (the server listens on 127.0.0.1 only).
"""
from __future__ import annotations

import io
import mimetypes
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np

from ltkit.crawl.image_search import POOL_HOST


def png_bytes(img: np.ndarray) -> bytes:
    """One uint8 HWC image as PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real image host
    server: "_Server"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body, ctype = self.server.lookup(unquote(urlsplit(self.path).path))
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # quiet: the crawl's manifest is the log
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, pool: np.ndarray | None, folder: Path | None) -> None:
        super().__init__(addr, _Handler)
        self.pool, self.folder = pool, folder

    def lookup(self, path: str) -> tuple[bytes | None, str]:
        """(body, content type) of a request path, or (None, '') for 404."""
        if self.pool is not None and path.startswith("/pool/") and path.endswith(".png"):
            j = path[len("/pool/"):-len(".png")]
            if j.isdigit() and int(j) < len(self.pool):
                return png_bytes(self.pool[int(j)]), "image/png"
        if self.folder is not None and path.startswith("/files/"):
            target = (self.folder / path[len("/files/"):]).resolve()
            if target.is_file() and target.is_relative_to(self.folder):
                return target.read_bytes(), mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return None, ""


class PoolServer:
    """Serve a world's pool and/or a folder on 127.0.0.1 from a background thread (a context manager)."""

    def __init__(self, world=None, folder: str | os.PathLike | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        pool = world.pool_images if world is not None else None
        self._server = _Server((host, port), pool, Path(folder).resolve() if folder is not None else None)
        self._thread = threading.Thread(target=self._server.serve_forever, name="ltkit-pool-server", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def resolve(self) -> dict[str, str]:
        """The downloader's `resolve` setting that sends pool URLs here."""
        return {POOL_HOST: self.address}

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "PoolServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
