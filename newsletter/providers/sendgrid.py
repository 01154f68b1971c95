"""SendGrid v3 Mail Send through the official `sendgrid` library.

One request carries up to 1000 recipients, one personalization each. The issue's HTML and
text were rendered and inlined once; per-subscriber values travel as `substitutions`. Every
rule SendGrid would answer with a 400 for the whole request is checked here first, and each
answer is turned into one of the typed outcomes the delivery layer acts on.

The body is encoded by `_sendgrid_body`, not by the library: the part every request of an
issue shares (content, sender, subject, categories) once per issue, the personalizations
field by field for the whole batch, joined in one go.

The library's client is built as the library builds it (host, version, Authorization and
User-Agent headers) and its typed HTTP errors are what `_outcome_for` reads, but the request
itself goes out through one urllib opener kept for the provider's life. The library's own
`post` builds a new opener per request and formats the whole body into a debug log message
whether or not debug logging is on: about 4 ms of CPU per 1000-recipient request, more than
encoding the request costs.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import python_http_client.exceptions as http_errors
from sendgrid import SendGridAPIClient

from newsletter.exceptions import (
    ConfigError,
    CredentialsRefused,
    NotSent,
    ProviderError,
    RateLimited,
    Rejected,
    TooLarge,
    TransientError,
    Uncertain,
    Unreachable,
)
from newsletter.providers import Accepted, Message, OutgoingBatch
from newsletter.providers._sendgrid_body import (
    MAX_PERSONALIZATIONS,
    MAX_SUBSTITUTION_BYTES,
    RESERVED_HEADERS,
    BodyEncoder,
    BuiltRequest,
    display_name,
    sendable_address,
    validate_categories,
)
from newsletter.providers._sendgrid_body import compact as _compact
from newsletter.render import header_safe
from newsletter.settings import SendGridSettings, Settings, secret

__all__ = [
    "MAX_PERSONALIZATIONS",
    "MAX_SUBSTITUTION_BYTES",
    "RESERVED_HEADERS",
    "BuiltRequest",
    "SendGridProvider",
    "display_name",
    "sendable_address",
    "validate_categories",
]

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 30 * 1024 * 1024  # SendGrid's limit for the whole message
# The library JSON-encodes dict bodies only under exactly "application/json": with the charset
# named it posts our own encoded text unchanged (ASCII-only JSON, so the charset is true).
CONTENT_TYPE = "application/json; charset=utf-8"


class _RedactKey(logging.Filter):
    """python_http_client logs request headers (the Bearer key) at DEBUG: never let a record
    that carries the key through, at any level."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.key and self.key in message:
            record.msg, record.args = message.replace(self.key, "[redacted]"), None
        return True


def _guard_library_logging(key: str) -> None:
    library_log = logging.getLogger("python_http_client")
    library_log.setLevel(logging.INFO)  # its DEBUG lines hold headers and whole payloads
    if not any(isinstance(f, _RedactKey) and f.key == key for f in library_log.filters):
        library_log.addFilter(_RedactKey(key))


@dataclass(frozen=True)
class _Answer:
    """A 2xx answer: its status, body and headers (read before the connection closes)."""

    status: int
    body: bytes
    headers: Any


class SendGridProvider:
    name = "sendgrid"
    max_batch = MAX_PERSONALIZATIONS

    def __init__(self, settings: Settings, api_key: str, config: SendGridSettings | None = None):
        self.settings = settings
        self.config = config or settings.sendgrid
        self.categories = validate_categories(tuple(self.config.categories))
        _guard_library_logging(api_key)
        self.client = SendGridAPIClient(api_key=api_key, host=self.config.api_host.rstrip("/"))
        # The library sets no timeout, and socket.setdefaulttimeout does not reach urllib here.
        self.client.client.timeout = self.config.timeout_seconds
        # One dict shared by every client the library derives for a call (mail.send, ...).
        self.client.client.request_headers["Content-Type"] = CONTENT_TYPE
        # Mail Send's URL and headers as the library would send them; one opener (with the
        # environment's proxies, read once) for every request.
        self._send_url = f"{self.client.client.host}/v3/mail/send"
        self._opener = urllib.request.build_opener()
        self._bodies = BodyEncoder(settings, self.categories)

    @classmethod
    def from_settings(cls, settings: Settings) -> SendGridProvider:
        key = secret("SENDGRID_API_KEY")
        if not key:
            raise ConfigError(
                "provider is sendgrid but SENDGRID_API_KEY is not set in the environment"
            )
        return cls(settings, key)

    def __repr__(self) -> str:  # never shows the key
        return f"SendGridProvider(host={self.config.api_host!r})"

    # -- building the request ----------------------------------------------------------
    def build_request(self, batch: OutgoingBatch) -> BuiltRequest:
        """The v3 Mail Send body for a batch, minus recipients SendGrid would refuse
        (`_sendgrid_body`: the shared part once per issue, the readers by columns)."""
        return self._bodies.build(batch)

    # -- sending -----------------------------------------------------------------------
    def send(self, batch: OutgoingBatch) -> Accepted:
        try:
            built = self.build_request(batch)
        except (ProviderError, ConfigError):
            raise
        except Exception as exc:  # a bug or bad data: nothing was written
            raise NotSent(
                f"the SendGrid request could not be built ({type(exc).__name__}: {exc})"
            ) from exc
        if not built.personalizations:
            return Accepted(message_ids={}, rejected=built.skipped)
        if built.size > MAX_REQUEST_BYTES:
            raise TooLarge(f"request of {built.size:,} bytes is over SendGrid's 30 MB limit")
        batch.ready()  # the last check for a stop (refused key, pause, cancel)
        response = self._post(built.encoded)
        message_id = response.headers.get("X-Message-Id") or ""
        return Accepted(message_ids=message_id, rejected=built.skipped)

    def send_message(self, message: Message) -> str:
        to = {"email": message.to_email}
        if name := display_name(message.to_name):
            to["name"] = name
        body: dict[str, Any] = {
            "personalizations": [{"to": [to]}],
            "from": {"email": self.settings.from_email},
            "subject": header_safe(message.subject),
            "content": [
                {"type": "text/plain", "value": message.text},
                {"type": "text/html", "value": message.html},
            ],
            "categories": [message.category],
        }
        if message.unsubscribe_url:
            body["headers"] = {
                "List-Unsubscribe": f"<{message.unsubscribe_url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
        if from_name := display_name(self.settings.from_name):
            body["from"]["name"] = from_name
        return self._post(_compact(body)).headers.get("X-Message-Id") or ""

    def _post(self, encoded: str):
        """POST an encoded body to Mail Send with the library's headers, through the kept
        opener; an error answer becomes the library's typed HTTPError, then our outcome."""
        request = urllib.request.Request(
            self._send_url,
            data=encoded.encode("utf-8"),
            headers=self.client.client.request_headers,
            method="POST",
        )
        try:
            with self._opener.open(request, timeout=self.config.timeout_seconds) as response:
                return _Answer(response.status, response.read(), response.headers)
        except urllib.error.HTTPError as exc:
            raise _outcome_for(http_errors.handle_error(exc)) from None
        except (ValueError, TypeError, http.client.InvalidURL) as exc:
            # Raised while the request is prepared (an illegal header value, an unencodable
            # body or URL), before anything is written. The message is not shown: it may
            # quote the Authorization header, key and all.
            raise NotSent(
                f"the SendGrid request could not be prepared ({type(exc).__name__}); nothing "
                "was sent. Check SENDGRID_API_KEY and sendgrid.api_host"
            ) from None
        except urllib.error.URLError as exc:
            # urllib raises URLError while connecting or writing the request: SendGrid cannot
            # have taken it, so trying again is safe; it is no refusal either.
            raise Unreachable(self.config.api_host, _unreachable_reason(exc.reason)) from None
        except TimeoutError as exc:
            raise Uncertain(
                f"no answer from SendGrid within {self.config.timeout_seconds:g}s after the "
                "request was sent: it may or may not have been accepted"
            ) from exc
        except (http.client.RemoteDisconnected, ConnectionError, http.client.HTTPException) as exc:
            raise Uncertain(
                f"connection lost after the request was sent ({type(exc).__name__}): "
                "it may or may not have been accepted"
            ) from exc


def _unreachable_reason(reason: object) -> str:
    """Why a connection could not be made, in words (urllib wraps the socket's error)."""
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return f"the name does not resolve (DNS: {reason.strerror or reason})"
    if isinstance(reason, TimeoutError | socket.timeout):
        return "no connection before the timeout"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror[:1].lower() + reason.strerror[1:]
    return str(reason)


def _error_messages(exc: http_errors.HTTPError) -> list[str]:
    """SendGrid's own `errors[].message` (and field), or the raw body when it is not JSON."""
    raw = exc.body or b""
    try:
        errors = json.loads(raw.decode("utf-8", "replace")).get("errors", [])
        return [
            f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
            for e in errors
        ]
    except (ValueError, AttributeError):
        text = raw.decode("utf-8", "replace").strip()
        return [text[:200]] if text else []


def _outcome_for(exc: http_errors.HTTPError) -> Exception:
    status = exc.status_code
    messages = _error_messages(exc)
    detail = "; ".join(messages) or str(exc.reason)
    if status == 429:
        reset = (exc.headers or {}).get("X-RateLimit-Reset")
        retry_at = float(reset) if reset and reset.replace(".", "", 1).isdigit() else None
        return RateLimited(f"SendGrid rate limit reached (429): {detail}", retry_at)
    if status == 401:
        return CredentialsRefused(
            f"SendGrid refused the API key (401): {detail}. Check SENDGRID_API_KEY; a 401 can "
            "also mean the account's credits ran out. Nothing more will be sent for this issue."
        )
    if status == 403:
        return CredentialsRefused(
            f"SendGrid refused the request (403): {detail}. The key may lack the Mail Send "
            "permission or the sender address is not a verified sender identity. Nothing more "
            "will be sent for this issue."
        )
    if status == 413:
        return TooLarge(f"SendGrid says the request is too large (413): {detail}")
    if status == 400:
        return Rejected("SendGrid rejected the batch (400)", messages)
    if status >= 500 or status == 408:
        return TransientError(f"SendGrid answered {status}: {detail}")
    return Rejected(f"SendGrid answered {status}", messages)
