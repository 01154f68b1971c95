"""The HTTP side both servers share: a threaded server on 127.0.0.1, keep-alive, and the checks
SendGrid makes before it reads a body (path, method, auth, length, size, encoding).

`BaseServer` owns the lifecycle (start, stop, connections), the counters (one `ServerStats`
under one lock) and the request log; a subclass answers an authorised mail send in
`answer(exchange, length)`. The handler only calls `BaseServer`'s public methods, and a
subclass only `Exchange`'s.
"""

from __future__ import annotations

import hmac
import socket
import socketserver
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from newsletter.testing.sendgrid_server.config import ServerConfig
from newsletter.testing.sendgrid_server.contract import MAIL_SEND_PATH
from newsletter.testing.sendgrid_server.rules import error, errors_body
from newsletter.testing.sendgrid_server.stats import RequestRecord, ServerStats

# Unread request bodies up to this size are drained after an early answer (401/413/...) so
# the client reads our status instead of a connection reset; beyond it we just close.
_DRAIN_LIMIT = 64 * 1024 * 1024

_UNAUTHORIZED = errors_body(
    error("The provided authorization grant is invalid, expired, or revoked", None, None)
)


def too_large(limit: int) -> bytes:
    return errors_body(
        error(
            f"content too large: the total message size may not exceed {limit} bytes.", None, None
        )
    )


class Exchange(BaseHTTPRequestHandler):
    """One connection's requests. A server's `answer` reads the body and answers through
    `read_body`, `send`, `header` and `drop`."""

    protocol_version = "HTTP/1.1"  # keep-alive for clients that reuse connections
    server_version = "SendGridLocal/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections give up after this
    server: _HTTPServer
    _started: float | None = None  # when the POST being answered arrived

    def setup(self) -> None:
        super().setup()
        self.server.owner.track(self.connection, alive=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner.track(self.connection, alive=False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.config.log_requests:  # request line + status: never headers
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    # -- what a server's `answer` uses

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def send(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        self.send_response(status)
        started, self._started = self._started, None
        if started is not None:
            self.server.owner.answered(started, status)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(body)

    def drop(self) -> None:
        """Close the connection without answering (the drop_after_accept fault)."""
        self.close_connection = True

    def read_body(self, length: int) -> bytes | None:
        """The decoded body, or None once an error was answered (or the client left)."""
        limit = self.server.owner.config.max_body_bytes
        raw = self.rfile.read(length)
        if len(raw) < length:  # client went away mid-body
            self.close_connection = True
            return None
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            try:
                inflater = zlib.decompressobj(wbits=31)
                raw = inflater.decompress(raw, limit + 1)
            except zlib.error:
                self.send(400, errors_body(error("The gzip body could not be decoded.", None)))
                return None
            if len(raw) > limit or inflater.unconsumed_tail:
                self.send(413, too_large(limit))
                return None
        elif encoding != "identity":
            self.send(415, errors_body(error("Content-Encoding must be gzip.", None, None)))
            return None
        return raw

    # -- routing

    def _send_early(self, status: int, body: bytes, length: int | None) -> None:
        """Answer before reading the body, then drain it so the client sees our status."""
        self.send(status, body, close=True)
        remaining = min(length or 0, _DRAIN_LIMIT)
        try:
            self.connection.settimeout(5)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass

    def _not_here(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == MAIL_SEND_PATH:
            status, message = 405, "method not allowed"
        else:
            status, message = 404, "not found"
        length = self.headers.get("Content-Length")
        self._send_early(
            status,
            errors_body(error(message, None, None)),
            int(length) if length and length.isdigit() else 0,
        )

    do_GET = do_PUT = do_PATCH = do_DELETE = _not_here

    def do_POST(self) -> None:
        self._started = time.monotonic()
        if self.path.split("?", 1)[0] != MAIL_SEND_PATH:
            self._not_here()
            return
        owner = self.server.owner
        raw_length = self.headers.get("Content-Length")
        length = int(raw_length) if raw_length and raw_length.isdigit() else None
        if not owner.authorized(self.headers.get("Authorization")):
            self._send_early(401, _UNAUTHORIZED, length)
            return
        if length is None:
            self._send_early(
                411, errors_body(error("Content-Length is required.", None, None)), None
            )
            return
        if length > owner.config.max_body_bytes:
            self._send_early(413, too_large(owner.config.max_body_bytes), length)
            return
        cpu_start = time.thread_time()
        try:
            owner.answer(self, length)
        finally:
            owner.count(ServerStats(cpu_seconds=time.thread_time() - cpu_start))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # listen backlog: the default 5 stalls concurrent benchmarks

    def __init__(self, address: tuple[str, int], owner: BaseServer) -> None:
        self.owner = owner
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Exchange)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse-DNS lookup that can
        # stall for seconds on machines without network; we know our own name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = (
            str(self.server_address[0]),
            int(self.server_address[1]),
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # the client gave up (timeouts in tests): nothing to report
        super().handle_error(request, client_address)


class BaseServer:
    """Lifecycle, authorisation, counters and the request log; `answer` is the subclass's.

    Use as a context manager (serves from a daemon thread) and pass ``server.url`` as the
    client's host: ``sendgrid.SendGridAPIClient(api_key=key, host=server.url)``.
    """

    def __init__(self, config: ServerConfig | None = None, **fields: Any) -> None:
        if config is not None and fields:
            raise TypeError("give a ServerConfig or its fields, not both")
        self.config = config if config is not None else ServerConfig(**fields)
        self._auth = f"Bearer {self.config.api_key}".encode()
        self.lock = threading.RLock()  # the counters, the log, a subclass's lists: one lock
        self.stopping = threading.Event()  # set by stop(): wakes a request sleeping in a fault
        self._stats = ServerStats()
        self._request_log: list[RequestRecord] = []
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never shows the key
        state = self.url if self._httpd else "stopped"
        return f"<{type(self).__name__} {state}>"

    def answer(self, exchange: Exchange, length: int) -> None:
        raise NotImplementedError

    # -- lifecycle

    def start(self) -> Self:
        """Bind (port 0 = ephemeral) and serve from a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self.stopping.clear()
        self._httpd = _HTTPServer((self.config.host, self.config.port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sendgrid-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and wake any request sleeping in a fault."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self.lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one when configured with port=0)."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL to use as SENDGRID_API_HOST / SendGridAPIClient(host=...)."""
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    # -- what was seen

    def stats(self) -> ServerStats:
        """Every counter at one instant."""
        with self.lock:
            return self._stats

    @property
    def request_log(self) -> list[RequestRecord]:
        """Every answered POST, in the order answered (not cleared by `clear`)."""
        with self.lock:
            return list(self._request_log)

    def clear(self) -> None:
        """Reset the counters (a subclass also forgets what it recorded)."""
        with self.lock:
            self._stats = ServerStats()

    # -- called by the handler and by subclasses

    def authorized(self, header: str | None) -> bool:
        return header is not None and hmac.compare_digest(header.encode(), self._auth)

    def track(self, conn: socket.socket, *, alive: bool) -> None:
        with self.lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def answered(self, started: float, status: int) -> None:
        record = RequestRecord(started=started, answered=time.monotonic(), status=status)
        with self.lock:
            self._request_log.append(record)

    def count(self, delta: ServerStats) -> None:
        with self.lock:
            self._stats = self._stats.plus(delta)
