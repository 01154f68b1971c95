"""A local SendGrid-compatible server (v3 Mail Send) for tests, demos and benchmarks.

SendGrid cannot be reached from CI or from this machine, and a mock of the client would not
tell us whether our requests are acceptable to SendGrid. This server speaks real HTTP, so the
official `sendgrid` library runs end to end, and it enforces the official contract: Twilio's
OpenAPI file for ``POST /v3/mail/send`` (compiled once with fastjsonschema) plus the limits
SendGrid only states in prose, answering with SendGrid-shaped errors.

It also injects faults (429, 401 credits, 403, 500, 502, 503, slow, dropped connection) so
retry logic can be tested, and signs Event Webhook posts exactly like SendGrid (ECDSA P-256)
so webhook receivers can be tested with the official verification helper.

Run it by hand with ``python -m newsletter.testing.sendgrid_server --port 8025``.
"""

from __future__ import annotations

import argparse
import base64
import copy
import functools
import hmac
import json
import math
import os
import secrets
import socket
import socketserver
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import fastjsonschema
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "DeliveredMessage",
    "Faults",
    "SendGridServer",
    "main",
    "validate_mail_send",
]

MAIL_SEND_PATH = "/v3/mail/send"
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS_PER_PERSONALIZATION = 1000
MAX_SUBSTITUTIONS_BYTES = 10_000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_SEND_AT_AHEAD_SECONDS = 72 * 3600
RATE_LIMIT = 600  # value of X-RateLimit-Limit on injected 429s
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)
HELP_URL = "https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
SPEC_ENV_VAR = "SENDGRID_OPENAPI_SPEC"
# Unread request bodies up to this size are drained after an early answer (401/413/...) so
# the client reads our status instead of a connection reset; beyond it we just close.
_DRAIN_LIMIT = 64 * 1024 * 1024

Error = dict[str, Any]


# --------------------------------------------------------------------------- public types


@dataclass
class Faults:
    """Fault injection, mutable at runtime so a test can arm a fault between two requests.

    Each count is the number of upcoming authorised mail-send requests to affect (0 = off).
    A request consumes at most one fault, the first non-zero one in field order;
    ``drop_after_accept`` is only consumed by a request that is valid and accepted.
    """

    rate_limit: int = 0  # 429 + X-RateLimit-Limit/-Remaining: 0/-Reset (epoch s)
    rate_limit_reset_after: float = 1.0
    credits_exceeded: int = 0  # 401 "Maximum credits exceeded"
    forbidden: int = 0  # 403 sender identity not verified
    server_error: int = 0  # 500 with a JSON error body
    bad_gateway: int = 0  # 502 with an HTML (non-JSON) body
    unavailable: int = 0  # 503 with a JSON error body
    slow: int = 0  # sleep slow_seconds, then answer normally (message IS accepted)
    slow_seconds: float = 5.0
    drop_after_accept: int = 0  # accept + record, then close without any HTTP response


_FAULT_ORDER = (
    "rate_limit",
    "credits_exceeded",
    "forbidden",
    "server_error",
    "bad_gateway",
    "unavailable",
    "slow",
)


@dataclass(frozen=True)
class DeliveredMessage:
    """One accepted message as one recipient would get it (substitutions applied)."""

    to: str
    to_name: str | None
    from_email: str
    subject: str
    text: str | None
    html: str | None
    headers: dict[str, str]
    custom_args: dict[str, str]
    categories: list[str]
    message_id: str  # the X-Message-Id answered for the request
    sandbox: bool
    from_name: str | None = None
    reply_to: str | None = None
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    send_at: int | None = None
    index: int = 0  # position of this recipient in its request (the n of sg_message_id)

    @property
    def sg_message_id(self) -> str:
        """The id SendGrid puts in events for this recipient: ``<X-Message-Id>.<n>``."""
        return f"{self.message_id}.{self.index}"


# --------------------------------------------------------------------------- schema


def _spec_candidates() -> Iterator[Path]:
    env = os.environ.get(SPEC_ENV_VAR)
    if env:
        yield Path(env)
    # the copy shipped with the package, then the project's shared/ folder beside the repo
    yield Path(__file__).resolve().parent / "contract" / "tsg_mail_v3.json"
    yield Path(__file__).resolve().parents[3] / "shared" / "sendgrid" / "tsg_mail_v3.json"


def _find_spec() -> Path:
    for path in _spec_candidates():
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"SendGrid OpenAPI file tsg_mail_v3.json not found; set {SPEC_ENV_VAR} to its path"
    )


_ANNOTATIONS = frozenset({"description", "example", "examples", "title", "default", "nullable"})
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    """Inline local $refs (merging siblings, as 2020-12 does) and drop annotations.

    ``default`` is dropped too, otherwise fastjsonschema would write defaults into the body.
    """
    if isinstance(node, list):
        return [_resolve(item, root) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    ref = node.get("$ref")
    if ref is not None:
        if not ref.startswith("#/"):
            raise ValueError(f"only local $refs are supported, got {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        out.update(_resolve(target, root))
    for key, value in node.items():
        if key == "$ref" or key in _ANNOTATIONS:
            continue
        if key == "properties":  # property *names* may collide with keywords
            out[key] = {name: _resolve(sub, root) for name, sub in value.items()}
        else:
            out[key] = _resolve(value, root)
    return out


def _mail_send_schema(spec: dict[str, Any]) -> dict[str, Any]:
    """The request schema of POST /v3/mail/send, adapted to what SendGrid really accepts."""
    body = spec["paths"][MAIL_SEND_PATH]["post"]["requestBody"]
    schema = _resolve(body, spec)["content"]["application/json"]["schema"]
    props = schema["properties"]
    pers = props["personalizations"]["items"]["properties"]
    # The file types message-level custom_args as "string", but the API and the official
    # library use an object of strings (the personalization one is an object already).
    props["custom_args"] = dict(_STRING_MAP)
    pers["custom_args"] = {**pers["custom_args"], **_STRING_MAP}
    # Header values must be strings (SendGrid rejects numbers/objects there).
    props["headers"] = dict(_STRING_MAP)
    pers["headers"] = dict(_STRING_MAP)
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return schema


@dataclass(frozen=True)
class _Validators:
    fast: Callable[[Any], Any]  # first error only, no details: the hot path
    full: Callable[[Any], Any]  # collects every error: only run on invalid bodies


@functools.lru_cache(maxsize=1)
def _validators() -> _Validators:
    spec = json.loads(_find_spec().read_text(encoding="utf-8"))
    schema = _mail_send_schema(spec)
    return _Validators(
        fast=fastjsonschema.compile(schema, use_default=False, detailed_exceptions=False),
        full=fastjsonschema.compile(schema, use_default=False, fast_fail=False),
    )


# --------------------------------------------------------------------------- validation


def _error(message: str, field_path: str | None, help_: str | None = HELP_URL) -> Error:
    return {"message": message, "field": field_path, "help": help_}


def _errors_body(*errors: Error) -> bytes:
    return json.dumps({"errors": list(errors)}).encode()


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


_REQUIRED_MESSAGES = {
    "from": (
        "The from object must be provided for every email send. It is an object that "
        "requires the email parameter, but may also contain a name parameter."
    ),
    "personalizations": (
        "The personalizations field is required and must have at least one personalization."
    ),
    "to": (
        "The to array is required for all personalization objects, and must have at least "
        "one email object with a valid email address."
    ),
}


def _join(*parts: object) -> str:
    return ".".join(str(p) for p in parts if p != "")


def _schema_errors(exc: fastjsonschema.JsonSchemaValueException) -> list[Error]:
    """Turn one fastjsonschema error into SendGrid-style errors with dotted field paths."""
    path = _join(*exc.path[1:])  # drop the leading "data"
    rule, limit, value = exc.rule, exc.rule_definition, exc.value
    if rule == "required":
        missing = [k for k in limit if not isinstance(value, dict) or k not in value]
        return [
            _error(
                _REQUIRED_MESSAGES.get(k, f"The {_join(path, k)} field is required."),
                _join(path, k),
            )
            for k in missing
        ]
    if rule == "type":
        expected = limit if isinstance(limit, str) else " or ".join(limit)
        message = f"Invalid type. Expected: {expected}, given: {_json_type(value)}."
    elif rule == "format":
        message = "Does not contain a valid address."
    elif rule == "minLength":
        message = f"The {path} must be a string at least {limit} character(s) in length."
    elif rule == "maxLength":
        message = f"The {path} may not be longer than {limit} characters."
    elif rule == "maxItems":
        message = f"The {path} array may not contain more than {limit} items."
    elif rule == "uniqueItems":
        message = f"The {path} array must not contain duplicate items."
    elif rule == "maxProperties":
        message = f"The {path} object may not have more than {limit} properties."
    elif rule == "enum":
        message = f"The {path} must be one of: {', '.join(map(str, limit))}."
    else:
        message = exc.message.replace("data.", "", 1)
    return [_error(message, path or None)]


def _kv_bytes(mapping: dict[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in mapping.items())


def _check_headers(headers: dict[str, str] | None, where: str, add: Callable[[Error], None]):
    if not headers:
        return
    for name in headers:
        if name.lower() in RESERVED_HEADERS:
            add(
                _error(
                    f"The {name} header is reserved and cannot be set in headers. Reserved headers:"
                    " x-sg-id, x-sg-eid, received, dkim-signature, Content-Type,"
                    " Content-Transfer-Encoding, To, From, Subject, Reply-To, CC, BCC.",
                    f"{where}.{name}",
                )
            )


def _check_send_at(send_at: int | None, where: str, limit: float, add: Callable[[Error], None]):
    if send_at is not None and (send_at < 0 or send_at > limit):
        add(
            _error(
                "The send_at parameter must be a unix timestamp no more than 72 hours in the future.",
                where,
            )
        )


def _check_content(content: list[dict[str, str]], add: Callable[[Error], None]) -> None:
    types = [item["type"].lower() for item in content]
    html_slot = 1 if types and types[0] == "text/plain" else 0
    for i, kind in enumerate(types):
        if (kind == "text/plain" and i != 0) or (kind == "text/html" and i != html_slot):
            add(
                _error(
                    "If present, text/plain content must be first and appear once, followed by"
                    " text/html (once), followed by any other content type.",
                    f"content.{i}.type",
                )
            )


def _check_name(name: str | None, where: str, add: Callable[[Error], None]) -> None:
    if (
        name
        and (";" in name or "," in name)
        and not (len(name) >= 2 and name[0] == '"' and name[-1] == '"')
    ):
        add(
            _error(
                "A name containing ';' or ',' must be enclosed in double quotes.",
                where,
            )
        )


def _check_rules(body: dict[str, Any], now: float) -> list[Error]:
    """The rules SendGrid states in prose, checked for every personalization.

    Only called on schema-valid bodies, so types are known to be right.
    """
    errors: list[Error] = []
    add = errors.append
    send_at_limit = now + MAX_SEND_AT_AHEAD_SECONDS
    template = body.get("template_id")

    _check_headers(body.get("headers"), "headers", add)
    _check_send_at(body.get("send_at"), "send_at", send_at_limit, add)
    top_args = body.get("custom_args") or {}
    top_args_bytes = _kv_bytes(top_args)
    if top_args_bytes > MAX_CUSTOM_ARGS_BYTES:
        add(_error(f"The custom_args may not exceed {MAX_CUSTOM_ARGS_BYTES} bytes.", "custom_args"))
    if "reply_to" in body and "reply_to_list" in body:
        add(_error("You can use either reply_to or reply_to_list but not both.", "reply_to_list"))
    content = body.get("content")
    if content:
        _check_content(content, add)
    elif not template:
        add(
            _error(
                "Unless a valid template_id is provided, the content parameter is required."
                " There must be at least one defined content block.",
                "content",
            )
        )

    personalizations = body["personalizations"]
    if not personalizations:
        add(_error(_REQUIRED_MESSAGES["personalizations"], "personalizations"))
    subject_needed = not body.get("subject") and not template
    missing_subject: int | None = None
    seen: dict[str, tuple[int, str]] = {}  # lowercased address -> (personalization, field)
    for i, pers in enumerate(personalizations):
        count = 0
        for kind in ("to", "cc", "bcc"):
            recipients = pers.get(kind)
            if recipients is None:
                continue
            if kind == "to" and not recipients:
                add(_error(_REQUIRED_MESSAGES["to"], f"personalizations.{i}.to"))
            count += len(recipients)
            for j, recipient in enumerate(recipients):
                address = recipient["email"].lower()
                first = seen.get(address)
                if first is None:
                    seen[address] = (i, f"personalizations.{i}.{kind}.{j}.email")
                else:
                    where = f"personalizations.{i}.{kind}.{j}.email"
                    if first[0] == i:
                        message = (
                            "Each email address in the personalization block should be unique"
                            " between to, cc, and bcc. We found the first duplicate instance of"
                            f" [{recipient['email']}] in the personalizations.{i}.{kind} field."
                        )
                    else:
                        message = (
                            "Each email address should be unique across the request (compared"
                            f" case-insensitively): [{recipient['email']}] already appears at"
                            f" {first[1]}."
                        )
                    add(_error(message, where))
                name = recipient.get("name")
                if name:
                    _check_name(name, f"personalizations.{i}.{kind}.{j}.name", add)
        if count > MAX_RECIPIENTS_PER_PERSONALIZATION:
            add(
                _error(
                    f"A personalization may not have more than {MAX_RECIPIENTS_PER_PERSONALIZATION}"
                    " recipients in total across to, cc and bcc.",
                    f"personalizations.{i}",
                )
            )
        subs = pers.get("substitutions")
        if subs and _kv_bytes(subs) > MAX_SUBSTITUTIONS_BYTES:
            add(
                _error(
                    f"The total size of substitutions may not exceed {MAX_SUBSTITUTIONS_BYTES}"
                    " bytes per personalization.",
                    f"personalizations.{i}.substitutions",
                )
            )
        args = pers.get("custom_args")
        if args:
            size = _kv_bytes({**top_args, **args}) if top_args else _kv_bytes(args)
            if size > MAX_CUSTOM_ARGS_BYTES:
                add(
                    _error(
                        f"The custom_args (message level and personalization combined) may not"
                        f" exceed {MAX_CUSTOM_ARGS_BYTES} bytes.",
                        f"personalizations.{i}.custom_args",
                    )
                )
        if subject_needed and missing_subject is None and not pers.get("subject"):
            missing_subject = i
        _check_headers(pers.get("headers"), f"personalizations.{i}.headers", add)
        _check_send_at(pers.get("send_at"), f"personalizations.{i}.send_at", send_at_limit, add)
    if missing_subject is not None:
        add(
            _error(
                "The subject is required. You can get around this requirement if you use a template"
                " with a subject defined or if every personalization has a subject defined"
                f" (personalizations.{missing_subject} has none).",
                "subject",
            )
        )
    return errors


def validate_mail_send(body: Any, *, now: float | None = None) -> list[Error]:
    """Check a decoded /v3/mail/send body; return SendGrid-style errors ([] if valid).

    Public so benchmarks can time validation alone and tests can check bodies offline.
    """
    if not isinstance(body, dict):
        return [_error("The request body must be a JSON object.", None)]
    validators = _validators()
    try:
        validators.fast(body)
    except fastjsonschema.JsonSchemaValueException:
        try:
            validators.full(body)
        except fastjsonschema.JsonSchemaValuesException as exc:
            return [e for err in exc.errors for e in _schema_errors(err)]
        except fastjsonschema.JsonSchemaValueException as exc:  # raised by trial subschemas
            return _schema_errors(exc)
        return [_error("invalid request", None)]  # unreachable: both compile the same schema
    return _check_rules(body, time.time() if now is None else now)


# --------------------------------------------------------------------------- recording


def _substitute(text: str | None, subs: dict[str, str] | None) -> str | None:
    if text is None or not subs:
        return text
    for key, value in subs.items():
        text = text.replace(key, value)
    return text


def _expand(body: dict[str, Any], message_id: str, sandbox: bool) -> list[DeliveredMessage]:
    """One DeliveredMessage per `to` recipient, as SendGrid would render it."""
    text = html = None
    for item in body.get("content") or ():
        kind = item["type"].lower()
        if kind == "text/plain" and text is None:
            text = item["value"]
        elif kind == "text/html" and html is None:
            html = item["value"]
    top_headers = body.get("headers") or {}
    top_args = body.get("custom_args") or {}
    categories = list(body.get("categories") or ())
    top_reply = (body.get("reply_to") or {}).get("email")
    if top_reply is None and body.get("reply_to_list"):
        top_reply = body["reply_to_list"][0]["email"]
    out: list[DeliveredMessage] = []
    index = 0
    for pers in body["personalizations"]:
        subs = pers.get("substitutions")
        sender = pers.get("from") or body["from"]
        subject = _substitute(pers.get("subject") or body.get("subject") or "", subs)
        pers_text, pers_html = _substitute(text, subs), _substitute(html, subs)
        headers = {**top_headers, **(pers.get("headers") or {})}
        args = {**top_args, **(pers.get("custom_args") or {})}
        cc = tuple(r["email"] for r in pers.get("cc") or ())
        bcc = tuple(r["email"] for r in pers.get("bcc") or ())
        send_at = pers.get("send_at", body.get("send_at"))
        for recipient in pers["to"]:
            out.append(
                DeliveredMessage(
                    to=recipient["email"],
                    to_name=recipient.get("name"),
                    from_email=sender["email"],
                    subject=subject,
                    text=pers_text,
                    html=pers_html,
                    headers=dict(headers),
                    custom_args=dict(args),
                    categories=list(categories),
                    message_id=message_id,
                    sandbox=sandbox,
                    from_name=sender.get("name"),
                    reply_to=top_reply,
                    cc=cc,
                    bcc=bcc,
                    send_at=send_at,
                    index=index,
                )
            )
            index += 1
    return out


def _random_id() -> str:
    """22 url-safe characters, the shape of SendGrid's X-Message-Id."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


_EVENT_EXTRAS: dict[str, dict[str, Any]] = {
    "processed": {},
    "delivered": {"response": "250 2.0.0 OK", "ip": "127.0.0.1", "tls": 1},
    "deferred": {"response": "421 try again later", "attempt": "1"},
    "bounce": {"reason": "550 5.1.1 user unknown", "status": "5.1.1", "type": "bounce"},
    "dropped": {"reason": "Bounced Address", "status": "5.0.0"},
    "open": {"useragent": "Mozilla/5.0", "ip": "127.0.0.1", "sg_machine_open": False},
    "click": {"useragent": "Mozilla/5.0", "ip": "127.0.0.1", "url": "https://example.com/"},
}


# --------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for clients that reuse connections
    server_version = "SendGridLocal/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections give up after this
    server: _HTTPServer

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
            _errors_body(_error(message, None, None)),
            int(length) if length and length.isdigit() else 0,
        )

    do_GET = do_PUT = do_PATCH = do_DELETE = _not_here

    def do_POST(self) -> None:
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
                411, _errors_body(_error("Content-Length is required.", None, None)), None
            )
            return
        if length > owner.max_body_bytes:
            self._send_early(413, _too_large(owner.max_body_bytes), length)
            return
        cpu_start = time.thread_time()
        try:
            self._mail_send(owner, length)
        finally:
            owner._add_cpu(time.thread_time() - cpu_start)

    def _mail_send(self, owner: SendGridServer, length: int) -> None:
        raw = self.rfile.read(length)
        if len(raw) < length:  # client went away mid-body
            self.close_connection = True
            return
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            try:
                inflater = zlib.decompressobj(wbits=31)
                raw = inflater.decompress(raw, owner.max_body_bytes + 1)
            except zlib.error:
                self._send(400, _errors_body(_error("The gzip body could not be decoded.", None)))
                return
            if len(raw) > owner.max_body_bytes or inflater.unconsumed_tail:
                self._send(413, _too_large(owner.max_body_bytes))
                return
        elif encoding != "identity":
            self._send(415, _errors_body(_error("Content-Encoding must be gzip.", None, None)))
            return
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            self._send(
                415, _errors_body(_error("Content-Type should be application/json.", None, None))
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
            self._send(400, _errors_body(_error("Bad Request: the body is not valid JSON.", None)))
            return
        errors = validate_mail_send(body)
        if errors:
            owner._count_rejected()
            self._send(400, _errors_body(*errors))
            return

        sandbox = (body.get("mail_settings") or {}).get("sandbox_mode", {}).get("enable") is True
        message_id = _random_id()
        drop = owner._accept(body, message_id, sandbox, may_drop=fault is None)
        if drop:
            self.close_connection = True  # accepted and recorded, but never answered
            return
        if sandbox:
            self._send(200)
        else:
            self._send(202, headers={"X-Message-Id": message_id})

    def _send_fault(self, fault: str, owner: SendGridServer) -> None:
        faults = owner.faults
        if fault == "rate_limit":
            reset = math.ceil(time.time() + max(faults.rate_limit_reset_after, 0.001))
            self._send(
                429,
                _errors_body(_error("too many requests", None, None)),
                headers={
                    "X-RateLimit-Limit": str(RATE_LIMIT),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(reset),
                },
            )
        elif fault == "credits_exceeded":
            self._send(401, _errors_body(_error("Maximum credits exceeded", None, None)))
        elif fault == "forbidden":
            self._send(
                403,
                _errors_body(
                    _error(
                        "The from address does not match a verified Sender Identity. Mail cannot be"
                        " sent until this error is resolved.",
                        "from",
                        None,
                    )
                ),
            )
        elif fault == "server_error":
            self._send(500, _errors_body(_error("internal server error", None, None)))
        elif fault == "bad_gateway":
            self._send(502, _BAD_GATEWAY_HTML, content_type="text/html")
        else:
            self._send(503, _errors_body(_error("service unavailable", None, None)))


_UNAUTHORIZED = _errors_body(
    _error("The provided authorization grant is invalid, expired, or revoked", None, None)
)
_BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


def _too_large(limit: int) -> bytes:
    return _errors_body(
        _error(
            f"content too large: the total message size may not exceed {limit} bytes.", None, None
        )
    )


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
        self.server_name, self.server_port = self.server_address[0], self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # the client gave up (timeouts in tests): nothing to report
        super().handle_error(request, client_address)


# --------------------------------------------------------------------------- server


class SendGridServer:
    """Local stand-in for api.sendgrid.com: POST /v3/mail/send plus Event Webhook posts.

    Use as a context manager (starts a background thread) and pass ``server.url`` as the
    client's host: ``sendgrid.SendGridAPIClient(api_key=key, host=server.url)``.
    """

    def __init__(
        self,
        api_key: str = "SG.test-key",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        record: bool = True,
        max_body_bytes: int = 30 * 1024 * 1024,
        event_webhook_url: str | None = None,
        event_private_key: ec.EllipticCurvePrivateKey | bytes | str | None = None,
        log_requests: bool = False,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        _validators()  # load + compile the contract now, so a missing spec fails early
        self._auth = f"Bearer {api_key}".encode()
        self.host = host
        self._port = port
        self.record = record
        self.max_body_bytes = max_body_bytes
        self.event_webhook_url = event_webhook_url
        self.log_requests = log_requests
        self.faults = Faults()
        self._private_key = _load_private_key(event_private_key)
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

    def __repr__(self) -> str:  # never shows the key
        state = self.url if self._httpd else "stopped"
        return f"<SendGridServer {state} record={self.record}>"

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
        return (
            self._private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
            .decode()
        )

    @property
    def public_key_base64(self) -> str:
        """Base64 DER public key, the form SendGrid shows and EventWebhook expects."""
        der = self._private_key.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        return base64.b64encode(der).decode()

    def events_for_accepted(self, kind: str = "delivered") -> list[dict[str, Any]]:
        """SendGrid-style events for every accepted recipient (needs record=True).

        Custom args become top-level keys, as in SendGrid's Event Webhook.
        """
        if not self.record:
            raise RuntimeError("events_for_accepted needs a server created with record=True")
        now = int(time.time())
        extras = _EVENT_EXTRAS.get(kind, {})
        events = []
        for message in self.messages:
            event: dict[str, Any] = dict(message.custom_args)
            event.update(extras)
            event.update(
                {
                    "email": message.to,
                    "timestamp": now,
                    "event": kind,
                    "smtp-id": f"<{message.message_id}@sendgrid.local>",
                    "sg_message_id": message.sg_message_id,
                    "sg_event_id": _random_id(),
                }
            )
            if message.categories:
                event["category"] = list(message.categories)
            events.append(event)
        return events

    def post_events(
        self,
        events: list[dict[str, Any]],
        url: str | None = None,
        *,
        timestamp: int | None = None,
        tamper: bool = False,
    ) -> int:
        """POST events as SendGrid's Signed Event Webhook does; return the HTTP status.

        The signature is base64(DER ECDSA-P256-SHA256(timestamp + raw body)). ``tamper=True``
        changes the body after signing, so a correct receiver must refuse it.
        """
        target = url or self.event_webhook_url
        if not target:
            raise ValueError("no url given and no event_webhook_url configured")
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        body = json.dumps(events).encode()
        signature = self._private_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        if tamper:
            altered = copy.deepcopy(events) or [{}]
            altered[0]["email"] = "attacker@example.invalid"
            body = json.dumps(altered).encode()
        request = urllib.request.Request(
            target,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "SendGrid Event API",
                SIGNATURE_HEADER: base64.b64encode(signature).decode(),
                TIMESTAMP_HEADER: stamp,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code

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
            for name in _FAULT_ORDER:
                left = getattr(faults, name)
                if left > 0:
                    setattr(faults, name, left - 1)
                    return name
        return None

    def _add_cpu(self, seconds: float) -> None:
        with self._lock:
            self._cpu_seconds += seconds

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
        expanded = _expand(body, message_id, sandbox) if self.record else []
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


def _load_private_key(
    key: ec.EllipticCurvePrivateKey | bytes | str | None,
) -> ec.EllipticCurvePrivateKey:
    if key is None:
        return ec.generate_private_key(ec.SECP256R1())
    if isinstance(key, str):
        key = key.encode()
    if isinstance(key, bytes):
        try:
            loaded = serialization.load_pem_private_key(key, password=None)
        except ValueError:
            loaded = serialization.load_der_private_key(key, password=None)
        key = loaded
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("event_private_key must be an ECDSA private key (object, PEM or DER)")
    if key.curve.name != ec.SECP256R1.name:
        raise ValueError("event_private_key must use the P-256 curve, as SendGrid does")
    return key


# --------------------------------------------------------------------------- CLI


class ServerProcess:
    """The server in a process of its own (benchmarks: it then has a core to itself instead
    of sharing the sender's interpreter). `stop()` returns the recipients it accepted."""

    def __init__(self, api_key: str, *, record: bool = False) -> None:
        import subprocess

        args = [sys.executable, "-m", __name__, "--port", "0", "--api-key", api_key, "--quiet"]
        self.process = subprocess.Popen(
            args + ([] if record else ["--no-record"]), stdout=subprocess.PIPE, text=True
        )
        self.url = self.process.stdout.readline().strip()
        self.process.stdout.readline()  # the webhook public key line

    def stop(self) -> int:
        self.process.send_signal(2)  # SIGINT: prints "stopped: N requests / M recipients ..."
        out, _ = self.process.communicate(timeout=60)
        last = out.strip().splitlines()[-1]
        return int(last.split("/")[1].split()[0])


def main(argv: list[str] | None = None) -> None:
    """Run the server in the foreground until Ctrl-C (demos, manual runs, benchmarks)."""
    parser = argparse.ArgumentParser(
        prog="python -m newsletter.testing.sendgrid_server",
        description="Local SendGrid-compatible v3 Mail Send server.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025, help="0 picks a free port")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("SENDGRID_API_KEY", "SG.test-key"),
        help="key clients must send (default: $SENDGRID_API_KEY or SG.test-key)",
    )
    parser.add_argument(
        "--no-record", action="store_true", help="keep counters only (large benchmarks)"
    )
    parser.add_argument("--max-body-bytes", type=int, default=30 * 1024 * 1024)
    parser.add_argument("--event-webhook-url", default=None)
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    server = SendGridServer(
        args.api_key,
        args.host,
        args.port,
        record=not args.no_record,
        max_body_bytes=args.max_body_bytes,
        event_webhook_url=args.event_webhook_url,
        log_requests=not args.quiet,
    )
    with server:
        print(server.url, flush=True)
        print(f"event webhook public key: {server.public_key_base64}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    print(
        f"stopped: {server.requests_accepted} requests / {server.recipients_accepted}"
        f" recipients accepted",
        flush=True,
    )


if __name__ == "__main__":
    main()
