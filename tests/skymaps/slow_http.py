"""A loopback HTTP server for what the shared sink cannot do: bodies without a length.

``StreamServer`` answers every GET with ``200`` and ``size`` bytes in chunks, with no
``Content-Length`` (the body ends when the connection closes, as HTTP/1.0 allows), so a
client can only enforce a byte cap by counting. It records how many requests arrived
and how many bytes it managed to send before the client hung up.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.services.procs import LOOPBACK


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        with owner.lock:
            owner.requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"\0" * 8192
        sent = 0
        try:
            while sent < owner.size:
                piece = chunk[: owner.size - sent]
                self.wfile.write(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with owner.lock:
                owner.bytes_sent = sent


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: StreamServer) -> None:
        self.owner = owner
        super().__init__((LOOPBACK, 0), _Handler)


class StreamServer:
    """Serve ``size`` zero bytes without Content-Length; use as a context manager."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.requests = 0
        self.bytes_sent = 0
        self.lock = threading.Lock()
        self._server = _Server(self)
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}/stream.fits"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> StreamServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(5)
        self._server.server_close()
