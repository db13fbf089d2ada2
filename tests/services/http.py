"""A recording HTTP sink on loopback: Slack webhooks and static files (e.g. sky maps).

* Every request is recorded as a :class:`RecordedRequest` (method, path, headers, body bytes,
  parsed JSON when the body is JSON).
* Queued responses (:meth:`HttpSink.queue_response`, :meth:`HttpSink.queue_rate_limit`) answer
  the next requests, optionally only those to one path: e.g. two 429s with ``Retry-After: 1``.
* Files added with :meth:`HttpSink.add_file` are served to GET/HEAD, optionally slowly
  (``delay`` before the answer, ``chunk_delay`` between chunks) or truncated (``truncate_at``:
  the full ``Content-Length`` is announced, fewer bytes are sent, the connection is closed).
* Any other POST/PUT/PATCH is answered ``200 ok`` (``text/plain``), as Slack does.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.services.procs import LOOPBACK

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedRequest:
    """One request received by the sink."""

    method: str
    path: str
    """The request target as sent (path plus query string)."""
    headers: dict[str, str]
    """Header names lower-cased (a repeated header keeps its last value)."""
    body: bytes
    json: Any | None
    """The body parsed as JSON, or ``None`` if it is empty or not JSON."""

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return a header by case-insensitive name."""
        return self.headers.get(name.lower(), default)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (errors replaced)."""
        return self.body.decode(errors="replace")


@dataclass
class QueuedResponse:
    """A canned answer for the next matching request."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    path: str | None = None
    """Only requests to this path (query string ignored) match; ``None`` matches any."""
    delay: float = 0.0
    """Seconds to wait before answering."""


@dataclass
class StaticFile:
    """A file served to GET/HEAD."""

    data: bytes
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before sending the status line."""
    chunk_size: int = 64 * 1024
    chunk_delay: float = 0.0
    """Seconds to wait after each chunk of ``chunk_size`` bytes (a slow download)."""
    truncate_at: int | None = None
    """Send only this many body bytes, then close the connection (a cut-off download)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        body = self._read_body() if self.command not in ("GET", "HEAD") else b""
        if self.command in ("GET", "HEAD") and self.headers.get("Content-Length"):
            body = self._read_body()
        parsed: Any | None = None
        if body:
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                parsed = None
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            json=parsed,
        )
        sink = self.server.sink
        sink._record(request)
        path = urlsplit(self.path).path
        queued = sink._pop_queued(path)
        if queued is not None:
            if queued.delay:
                time.sleep(queued.delay)
            self._send(queued.status, queued.body, queued.headers)
            return
        static = sink._file(self.path, path)
        if static is not None and self.command in ("GET", "HEAD"):
            self._send_file(static)
            return
        if self.command in ("POST", "PUT", "PATCH"):
            self._send(sink.default_status, sink.default_body,
                       {"Content-Type": "text/plain; charset=utf-8"})
            return
        self._send(404, b"not found", {"Content-Type": "text/plain"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_file(self, static: StaticFile) -> None:
        if static.delay:
            time.sleep(static.delay)
        self.send_response(200)
        self.send_header("Content-Type", static.content_type)
        for name, value in static.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(static.data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        data = static.data
        if static.truncate_at is not None:
            data = data[: static.truncate_at]
            self.close_connection = True
        try:
            for start in range(0, len(data), max(1, static.chunk_size)):
                self.wfile.write(data[start : start + static.chunk_size])
                self.wfile.flush()
                if static.chunk_delay:
                    time.sleep(static.chunk_delay)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            logger.debug("client went away during %s", self.path)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sink: HttpSink, address: tuple[str, int]) -> None:
        self.sink = sink
        super().__init__(address, _Handler)


class HttpSink:
    """A threaded ``http.server`` on 127.0.0.1 and a free port.

    Attributes: ``host``, ``port``, ``url`` (``http://127.0.0.1:<port>``), ``requests``
    (snapshot list of :class:`RecordedRequest`), ``default_status`` / ``default_body``
    (the answer to unqueued POSTs, ``200`` / ``b"ok"``).
    """

    def __init__(self) -> None:
        self.host = LOOPBACK
        self._server = _Server(self, (self.host, 0))
        self.port: int = self._server.server_address[1]
        self.url = f"http://{self.host}:{self.port}"
        self.default_status = 200
        self.default_body = b"ok"
        self._cond = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._queue: list[QueuedResponse] = []
        self._files: dict[str, StaticFile] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={
            "poll_interval": 0.1}, name=f"http-sink-{self.port}", daemon=True)
        self._thread.start()
        logger.info("HTTP sink on %s", self.url)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def url_for(self, path: str) -> str:
        """Return the absolute URL of ``path`` (which starts with ``/``)."""
        return f"{self.url}{path}"

    # -- recording ---------------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received since the last :meth:`reset`."""
        with self._cond:
            return list(self._requests)

    def posts(self, path: str | None = None) -> list[RecordedRequest]:
        """The POST requests received, optionally only those to ``path``."""
        return [r for r in self.requests
                if r.method == "POST" and (path is None or urlsplit(r.path).path == path)]

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[RecordedRequest]:
        """Wait until at least ``count`` requests were received; return them all.

        Raises ``TimeoutError`` listing what was received so far.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"expected {count} HTTP requests within {timeout} s, got "
                        f"{[(r.method, r.path) for r in self._requests]}")
                self._cond.wait(remaining)
            return list(self._requests)

    # -- canned answers ----------------------------------------------------------------

    def queue_response(self, status: int, body: bytes | str = b"",
                       headers: dict[str, str] | None = None, *, count: int = 1,
                       path: str | None = None, delay: float = 0.0) -> None:
        """Answer the next ``count`` requests (to ``path``, if given) with ``status``/``body``."""
        data = body.encode() if isinstance(body, str) else body
        with self._cond:
            for _ in range(count):
                self._queue.append(QueuedResponse(status, data, dict(headers or {}), path, delay))

    def queue_rate_limit(self, count: int = 1, retry_after: int = 1,
                         path: str | None = None) -> None:
        """Answer the next ``count`` requests ``429`` with ``Retry-After`` (as Slack does)."""
        self.queue_response(429, b"rate_limited",
                            {"Retry-After": str(retry_after), "Content-Type": "text/plain"},
                            count=count, path=path)

    def queue_error(self, status: int = 500, count: int = 1, path: str | None = None) -> None:
        """Answer the next ``count`` requests with a server error."""
        self.queue_response(status, b"internal_error", {"Content-Type": "text/plain"},
                            count=count, path=path)

    def _pop_queued(self, path: str) -> QueuedResponse | None:
        with self._cond:
            for index, queued in enumerate(self._queue):
                if queued.path is None or queued.path == path:
                    return self._queue.pop(index)
        return None

    @property
    def queued(self) -> int:
        """How many queued responses are still unused."""
        with self._cond:
            return len(self._queue)

    # -- static files ------------------------------------------------------------------

    def add_file(self, path: str, data: bytes, content_type: str = "application/octet-stream",
                 *, headers: dict[str, str] | None = None, delay: float = 0.0,
                 chunk_size: int = 64 * 1024, chunk_delay: float = 0.0,
                 truncate_at: int | None = None) -> str:
        """Serve ``data`` at ``path`` (exact match with query, else path alone); return its URL."""
        with self._cond:
            self._files[path] = StaticFile(data, content_type, dict(headers or {}), delay,
                                           chunk_size, chunk_delay, truncate_at)
        return self.url_for(path)

    def add_files(self, files: dict[str, bytes]) -> None:
        """Serve several files at once (path → bytes)."""
        for path, data in files.items():
            self.add_file(path, data)

    def remove_file(self, path: str) -> None:
        """Stop serving ``path`` (404 afterwards)."""
        with self._cond:
            self._files.pop(path, None)

    def _file(self, target: str, path: str) -> StaticFile | None:
        with self._cond:
            return self._files.get(target) or self._files.get(path)

    def reset(self) -> None:
        """Forget requests, queued responses and files; restore the default answer."""
        with self._cond:
            self._requests.clear()
            self._queue.clear()
            self._files.clear()
            self.default_status = 200
            self.default_body = b"ok"
