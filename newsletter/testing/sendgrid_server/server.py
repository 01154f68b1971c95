"""The HTTP side: a threaded server answering POST /v3/mail/send like api.sendgrid.com.

Requests are checked in SendGrid's order (auth, length, size, encoding, type, faults, JSON,
contract) and accepted ones are counted and, unless ``record=False``, recorded. In sink mode
(``sink=True``) it only authenticates, counts recipients and answers 202: no contract, no
faults, no recording, so a benchmark measures the sender and not this server.
"""

from __future__ import annotations

import hmac
import itertools
import json
import re
import socket
import socketserver
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.testing.sendgrid_server.contract import MAIL_SEND_PATH, validators
from newsletter.testing.sendgrid_server.events import EventSigner, events_for
from newsletter.testing.sendgrid_server.faults import FAULT_ORDER, Faults, fault_answer
from newsletter.testing.sendgrid_server.messages import DeliveredMessage, expand, random_id
from newsletter.testing.sendgrid_server.rules import error, errors_body, validate_mail_send

# Unread request bodies up to this size are drained after an early answer (401/413/...) so
# the client reads our status instead of a connection reset; beyond it we just close.
_DRAIN_LIMIT = 64 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for clients that reuse connections
    server_version = "SendGridLocal/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections give up after this
    server: _HTTPServer
    _started: float | None = None  # when the POST being answered arrived

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.log_requests:  # request line + status only: never headers
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    # -- answering

    def _send(
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
            self.server.owner._log_request(started, status)
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

    def _send_early(self, status: int, body: bytes, length: int | None) -> None:
        """Answer before reading the body, then drain it so the client sees our status."""
        self._send(status, body, close=True)
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

    # -- routing

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
        if not owner._authorized(self.headers.get("Authorization")):
            self._send_early(401, _UNAUTHORIZED, length)
            return
        if length is None:
            self._send_early(
                411, errors_body(error("Content-Length is required.", None, None)), None
            )
            return
        if length > owner.max_body_bytes:
            self._send_early(413, _too_large(owner.max_body_bytes), length)
            return
        cpu_start = time.thread_time()
        try:
            if owner.sink:
                self._sink(owner, length)
            else:
                self._mail_send(owner, length)
        finally:
            owner._add_cpu(time.thread_time() - cpu_start)

    def _read_body(self, owner: SendGridServer, length: int) -> bytes | None:
        """The decoded body, or None once an error was answered (or the client left)."""
        raw = self.rfile.read(length)
        if len(raw) < length:  # client went away mid-body
            self.close_connection = True
            return None
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            try:
                inflater = zlib.decompressobj(wbits=31)
                raw = inflater.decompress(raw, owner.max_body_bytes + 1)
            except zlib.error:
                self._send(400, errors_body(error("The gzip body could not be decoded.", None)))
                return None
            if len(raw) > owner.max_body_bytes or inflater.unconsumed_tail:
                self._send(413, _too_large(owner.max_body_bytes))
                return None
        elif encoding != "identity":
            self._send(415, errors_body(error("Content-Encoding must be gzip.", None, None)))
            return None
        return raw

    def _sink(self, owner: SendGridServer, length: int) -> None:
        """Sink mode: count the `to` recipients and answer 202, checking nothing else."""
        started = time.time()
        raw = self._read_body(owner, length)
        if raw is None:
            return
        recipients = count_recipients(raw)
        if recipients is None:
            self._send(400, _NOT_A_MAIL_SEND)
            return
        # Counted before answering, so a client that saw its 202 finds it in the window.
        owner._count_sunk(recipients, started, time.time())
        self._send(202, headers={"X-Message-Id": f"sink{next(owner._sink_ids):018d}"})

    def _mail_send(self, owner: SendGridServer, length: int) -> None:
        raw = self._read_body(owner, length)
        if raw is None:
            return
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            self._send(
                415, errors_body(error("Content-Type should be application/json.", None, None))
            )
            return

        fault = owner._take_fault()
        if fault is not None and fault != "slow":
            self._send_fault(fault, owner)
            return
        if fault == "slow":  # (waiting uses no thread CPU, so server_cpu_seconds is fair)
            owner._stopping.wait(owner.faults.slow_seconds)

        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self._send(400, errors_body(error("Bad Request: the body is not valid JSON.", None)))
            return
        errors = validate_mail_send(body)
        if errors:
            owner._count_rejected()
            self._send(400, errors_body(*errors))
            return

        sandbox = (body.get("mail_settings") or {}).get("sandbox_mode", {}).get("enable") is True
        message_id = random_id()
        drop = owner._accept(body, message_id, sandbox, may_drop=fault is None)
        if drop:
            self.close_connection = True  # accepted and recorded, but never answered
            return
        if sandbox:
            self._send(200)
        else:
            self._send(202, headers={"X-Message-Id": message_id})

    def _send_fault(self, fault: str, owner: SendGridServer) -> None:
        answer = fault_answer(fault, owner.faults)
        self._send(
            answer.status, answer.body, content_type=answer.content_type, headers=answer.headers
        )


_UNAUTHORIZED = errors_body(
    error("The provided authorization grant is invalid, expired, or revoked", None, None)
)
_NOT_A_MAIL_SEND = errors_body(error("Bad Request: not a JSON mail send body.", None))
_AFTER_TO_KEY = re.compile(r"\s*:\s*\[")
_ARRAY = json.JSONDecoder()


def count_recipients(raw: bytes) -> int | None:
    """The `to` recipients of a mail send body, or None when it is not one: the sink's count.

    Decoding a 1000-personalization body whole costs about 5 ms, more than posting it; an
    ASCII body (the JSON every sender here writes) is searched for its `"to"` keys instead, and
    only each small `to` array is decoded. A key cannot be matched inside a string value: a
    quote in a JSON string is escaped, so `"to"` followed by a colon is always a key."""
    if not raw.isascii():
        try:
            return sum(len(p["to"]) for p in json.loads(raw)["personalizations"])
        except (ValueError, UnicodeDecodeError, KeyError, TypeError):
            return None
    text = raw.decode("ascii")
    if not text.lstrip().startswith("{") or '"personalizations"' not in text:
        return None
    count = 0
    at = text.find('"to"')
    try:
        while at != -1:
            after = _AFTER_TO_KEY.match(text, at + 4)
            if after is None or text[at - 1] == "\\":
                at = text.find('"to"', at + 4)
                continue
            recipients, end = _ARRAY.raw_decode(text, after.end() - 1)
            count += len(recipients)
            at = text.find('"to"', end)
    except ValueError:
        return None
    return count


def _too_large(limit: int) -> bytes:
    return errors_body(
        error(
            f"content too large: the total message size may not exceed {limit} bytes.", None, None
        )
    )


@dataclass(frozen=True)
class SinkWindow:
    """What a sink accepted since the last look: the sender's rate as the sink saw it, from
    the first request's arrival to the last one's answer (unix times; taken as the answer
    is sent)."""

    requests: int
    recipients: int
    first: float | None
    last: float | None

    @property
    def seconds(self) -> float:
        return (self.last - self.first) if self.first is not None and self.last else 0.0

    @property
    def rate(self) -> float:
        """Recipients per second over the window."""
        return self.recipients / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"window: {self.requests} requests / {self.recipients} recipients"
            f" first {self.first or 0:.6f} last {self.last or 0:.6f}"
        )

    @classmethod
    def parse(cls, line: str) -> SinkWindow:
        words = line.split()
        first, last = float(words[7]), float(words[9])
        return cls(int(words[1]), int(words[4]), first or None, last or None)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # listen backlog: the default 5 stalls concurrent benchmarks

    def __init__(self, address: tuple[str, int], owner: SendGridServer) -> None:
        self.owner = owner
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

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


@dataclass(frozen=True)
class RequestRecord:
    """One answered POST: when its headers had arrived and when its status line was
    written (time.monotonic() of this process), and the status."""

    started: float
    answered: float
    status: int


class SendGridServer:
    """Local stand-in for api.sendgrid.com: POST /v3/mail/send plus Event Webhook posts.

    Use as a context manager (starts a background thread) and pass ``server.url`` as the
    client's host: ``sendgrid.SendGridAPIClient(api_key=key, host=server.url)``.
    ``sink=True`` answers every authorised mail send 202 after counting its recipients, with
    no contract check, fault or recording: the cheapest server, to measure a sender's ceiling.
    """

    def __init__(
        self,
        api_key: str = "SG.test-key",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        record: bool = True,
        sink: bool = False,
        max_body_bytes: int = 30 * 1024 * 1024,
        event_webhook_url: str | None = None,
        event_private_key: ec.EllipticCurvePrivateKey | bytes | str | None = None,
        log_requests: bool = False,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if not sink:
            validators()  # load + compile the contract now, so a missing spec fails early
        self._auth = f"Bearer {api_key}".encode()
        self.host = host
        self._port = port
        self.sink = sink
        self.record = record and not sink
        self._sink_ids = itertools.count()
        self.max_body_bytes = max_body_bytes
        self.event_webhook_url = event_webhook_url
        self.log_requests = log_requests
        self.faults = Faults()
        self._signer = EventSigner(event_private_key)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._messages: list[DeliveredMessage] = []
        self._sandbox_messages: list[DeliveredMessage] = []
        self._requests_accepted = 0
        self._recipients_accepted = 0
        self._sandbox_requests = 0
        self._requests_rejected = 0
        self._cpu_seconds = 0.0
        self._request_log: list[RequestRecord] = []
        self._window = SinkWindow(0, 0, None, None)

    def __repr__(self) -> str:  # never shows the key
        state = self.url if self._httpd else "stopped"
        mode = "sink" if self.sink else f"record={self.record}"
        return f"<SendGridServer {state} {mode}>"

    # -- lifecycle

    def start(self) -> Self:
        """Bind (port 0 = ephemeral) and serve from a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self._port), self)
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
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
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
        """The bound port (the ephemeral one when constructed with port=0)."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL to use as SENDGRID_API_HOST / SendGridAPIClient(host=...)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- what was received

    @property
    def messages(self) -> list[DeliveredMessage]:
        """Snapshot of accepted (non-sandbox) messages, one per `to` recipient."""
        with self._lock:
            return list(self._messages)

    @property
    def sandbox_messages(self) -> list[DeliveredMessage]:
        """Snapshot of sandbox-mode messages: validated and answered 200, never delivered."""
        with self._lock:
            return list(self._sandbox_messages)

    @property
    def requests_accepted(self) -> int:
        """Requests answered 202 (or accepted then dropped by the drop_after_accept fault)."""
        with self._lock:
            return self._requests_accepted

    @property
    def recipients_accepted(self) -> int:
        """`to` recipients in accepted requests, counted even when record=False."""
        with self._lock:
            return self._recipients_accepted

    @property
    def sandbox_requests(self) -> int:
        """Valid requests in sandbox mode (answered 200)."""
        with self._lock:
            return self._sandbox_requests

    @property
    def request_log(self) -> list[RequestRecord]:
        """Every answered POST, in the order answered (not cleared by `clear`)."""
        with self._lock:
            return list(self._request_log)

    @property
    def requests_rejected(self) -> int:
        """Requests refused with 400 by validation."""
        with self._lock:
            return self._requests_rejected

    @property
    def server_cpu_seconds(self) -> float:
        """Thread CPU time spent reading, validating and recording mail sends.

        Lets a benchmark show the server is not its bottleneck.
        """
        with self._lock:
            return self._cpu_seconds

    def clear(self) -> None:
        """Forget recorded messages and reset counters (faults are left as they are)."""
        with self._lock:
            self._messages.clear()
            self._sandbox_messages.clear()
            self._requests_accepted = self._recipients_accepted = 0
            self._sandbox_requests = self._requests_rejected = 0
            self._cpu_seconds = 0.0

    # -- event webhook

    @property
    def public_key_pem(self) -> str:
        """PEM public key matching the signatures of post_events."""
        return self._signer.public_key_pem

    @property
    def public_key_base64(self) -> str:
        """Base64 DER public key, the form SendGrid shows and EventWebhook expects."""
        return self._signer.public_key_base64

    def events_for_accepted(self, kind: str = "delivered") -> list[dict[str, Any]]:
        """SendGrid-style events for every accepted recipient (needs record=True).

        Custom args become top-level keys, as in SendGrid's Event Webhook.
        """
        if not self.record:
            raise RuntimeError("events_for_accepted needs a server created with record=True")
        return events_for(self.messages, kind)

    def post_events(
        self,
        events: list[dict[str, Any]],
        url: str | None = None,
        *,
        timestamp: int | None = None,
        tamper: bool = False,
    ) -> int:
        """POST events as SendGrid's Signed Event Webhook does; return the HTTP status.

        ``tamper=True`` changes the body after signing, so a correct receiver must refuse it.
        """
        target = url or self.event_webhook_url
        if not target:
            raise ValueError("no url given and no event_webhook_url configured")
        return self._signer.post(events, target, timestamp=timestamp, tamper=tamper)

    # -- internals used by the handler

    def _authorized(self, header: str | None) -> bool:
        return header is not None and hmac.compare_digest(header.encode(), self._auth)

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _take_fault(self) -> str | None:
        with self._lock:
            faults = self.faults
            for name in FAULT_ORDER:
                left = getattr(faults, name)
                if left > 0:
                    setattr(faults, name, left - 1)
                    return name
        return None

    def _log_request(self, started: float, status: int) -> None:
        record = RequestRecord(started, time.monotonic(), status)
        with self._lock:
            self._request_log.append(record)

    def _add_cpu(self, seconds: float) -> None:
        with self._lock:
            self._cpu_seconds += seconds

    def _count_sunk(self, recipients: int, started: float, answered: float) -> None:
        with self._lock:
            self._requests_accepted += 1
            self._recipients_accepted += recipients
            w = self._window
            self._window = SinkWindow(
                w.requests + 1,
                w.recipients + recipients,
                started if w.first is None else min(w.first, started),
                answered if w.last is None else max(w.last, answered),
            )

    def take_window(self) -> SinkWindow:
        """Sink mode: what was accepted since the last call (or the start), then start anew."""
        with self._lock:
            window, self._window = self._window, SinkWindow(0, 0, None, None)
        return window

    def _count_rejected(self) -> None:
        with self._lock:
            self._requests_rejected += 1

    def _accept(
        self,
        body: dict[str, Any],
        message_id: str,
        sandbox: bool,
        *,
        may_drop: bool,
    ) -> bool:
        """Count (and record) a valid request; True if it must be dropped unanswered."""
        recipients = sum(len(p["to"]) for p in body["personalizations"])
        expanded = expand(body, message_id, sandbox) if self.record else []
        with self._lock:
            if sandbox:
                self._sandbox_requests += 1
                self._sandbox_messages.extend(expanded)
            else:
                self._requests_accepted += 1
                self._recipients_accepted += recipients
                self._messages.extend(expanded)
            if may_drop and self.faults.drop_after_accept > 0:
                self.faults.drop_after_accept -= 1
                return True
        return False
