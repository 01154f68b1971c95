"""The local SendGrid server, driven by the real `sendgrid` library over real HTTP (no mocks)."""

from __future__ import annotations

import copy
import gzip
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sendgrid
from cryptography.hazmat.primitives.asymmetric import ec
from python_http_client.exceptions import (
    BadRequestsError,
    ForbiddenError,
    HTTPError,
    InternalServerError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.mail import (
    Category,
    CustomArg,
    From,
    Header,
    Mail,
    MailSettings,
    Personalization,
    SandBoxMode,
    Substitution,
    To,
)

from newsletter.testing.sendgrid_server import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SendGridServer,
    ServerConfig,
    ServerProcess,
    ServerStats,
    SinkServer,
    SinkWindow,
    validate_mail_send,
)
from newsletter.testing.sendgrid_server.sink import count_recipients

API_KEY = "SG.local-test-key"
MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def server() -> Iterator[SendGridServer]:
    with SendGridServer(api_key=API_KEY) as srv:
        yield srv


@pytest.fixture
def client(server: SendGridServer) -> sendgrid.SendGridAPIClient:
    return sendgrid.SendGridAPIClient(api_key=API_KEY, host=server.url)


def send(client: sendgrid.SendGridAPIClient, body: dict[str, Any]) -> Any:
    return client.client.mail.send.post(request_body=body)


def base_body() -> dict[str, Any]:
    """A valid two-personalization newsletter send, as raw JSON (for precise mutations)."""
    return {
        "from": {"email": "news@example.com", "name": "The Newsletter"},
        "subject": "Issue 7",
        "content": [
            {"type": "text/plain", "value": "Hello -name-"},
            {"type": "text/html", "value": "<p>Hello -name-</p>"},
        ],
        "personalizations": [
            {
                "to": [{"email": "alice@example.com", "name": "Alice"}],
                "substitutions": {"-name-": "Alice"},
                "custom_args": {"subscriber_id": "1"},
            },
            {
                "to": [{"email": "bob@example.com", "name": "Bob"}],
                "substitutions": {"-name-": "Bob"},
                "custom_args": {"subscriber_id": "2"},
            },
        ],
    }


def rejected(client: sendgrid.SendGridAPIClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(BadRequestsError) as info:
        send(client, body)
    assert info.value.status_code == 400
    errors = json.loads(info.value.body)["errors"]
    assert errors, "a 400 must list at least one error"
    for error in errors:
        assert set(error) == {"message", "field", "help"}
        assert isinstance(error["message"], str) and error["message"]
    return errors


def raw_post(server: SendGridServer, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/v3/mail/send", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for(predicate: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# --------------------------------------------------------------------------- success paths


def test_accepted_mail_is_recorded_per_recipient_with_substitutions(server, client):
    mail = Mail(
        from_email=From("news@example.com", "The Newsletter"),
        subject="Issue 7 for -name-",
        plain_text_content="Hi -name-, read -link-",
        html_content='<p>Hi -name-</p><a href="-link-">read</a>',
    )
    first = Personalization()
    first.add_to(To("alice@example.com", "Alice"))
    first.add_to(To("bob@example.com", "Bob"))
    first.add_substitution(Substitution("-name-", "friends"))
    first.add_substitution(Substitution("-link-", "https://example.com/a"))
    first.add_header(Header("X-Pers", "p0"))
    first.add_custom_arg(CustomArg("subscriber_id", "s0"))
    mail.add_personalization(first)
    second = Personalization()
    second.add_to(To("carol@example.com"))
    second.subject = "Special for -name-"
    second.add_substitution(Substitution("-name-", "Carol"))
    second.add_header(Header("X-Top", "override"))
    second.add_custom_arg(CustomArg("campaign", "c7-carol"))
    mail.add_personalization(second, index=1)  # the library inserts at 0 by default
    mail.add_header(Header("X-Top", "top"))
    mail.add_custom_arg(CustomArg("campaign", "c7"))
    mail.add_category(Category("newsletter"))
    mail.add_category(Category("issue-7"))

    response = client.send(mail)

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert MESSAGE_ID.match(message_id)
    alice, bob, carol = server.messages
    assert (alice.to, alice.to_name, bob.to, carol.to, carol.to_name) == (
        "alice@example.com",
        "Alice",
        "bob@example.com",
        "carol@example.com",
        None,
    )
    assert alice.subject == bob.subject == "Issue 7 for friends"
    assert alice.text == "Hi friends, read https://example.com/a"
    assert alice.html == '<p>Hi friends</p><a href="https://example.com/a">read</a>'
    assert carol.subject == "Special for Carol"
    assert carol.text == "Hi Carol, read -link-"  # keys without a value stay literal
    assert alice.headers == {"X-Top": "top", "X-Pers": "p0"}
    assert carol.headers == {"X-Top": "override"}
    assert alice.custom_args == {"campaign": "c7", "subscriber_id": "s0"}
    assert carol.custom_args == {"campaign": "c7-carol"}
    assert alice.categories == mail.get()["categories"] == ["issue-7", "newsletter"]
    assert (alice.from_email, alice.from_name) == ("news@example.com", "The Newsletter")
    assert {m.message_id for m in server.messages} == {message_id}
    assert [m.sg_message_id for m in server.messages] == [
        f"{message_id}.0",
        f"{message_id}.1",
        f"{message_id}.2",
    ]
    assert not any(m.sandbox for m in server.messages)
    assert (server.stats().requests_accepted, server.stats().recipients_accepted) == (1, 3)

    server.clear()
    assert (
        server.messages == []
        and server.stats().requests_accepted == server.stats().recipients_accepted == 0
    )


def test_each_accepted_request_gets_a_fresh_message_id(server, client):
    ids = {send(client, base_body()).headers["X-Message-Id"] for _ in range(3)}
    assert len(ids) == 3 and all(MESSAGE_ID.match(i) for i in ids)


def test_sandbox_mode_answers_200_and_delivers_nothing(server, client):
    mail = Mail(
        from_email="news@example.com",
        to_emails="alice@example.com",
        subject="Sandboxed",
        plain_text_content="hi",
    )
    mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))

    response = client.send(mail)

    assert response.status_code == 200
    assert response.body == b""
    assert server.messages == []
    assert server.stats().requests_accepted == 0
    assert server.stats().sandbox_requests == 1
    assert [m.sandbox for m in server.sandbox_messages] == [True]


def test_rules_that_must_not_reject_valid_sends(server, client):
    body = base_body()
    body["personalizations"][0]["to"][0]["name"] = '"Doe, Alice"'  # quoted: allowed
    body["personalizations"][1]["send_at"] = int(time.time()) + 71 * 3600
    body["send_at"] = int(time.time()) - 3600  # past: SendGrid sends right away
    body["headers"] = {"List-Unsubscribe": "<https://example.com/u>"}
    body["categories"] = [f"c{i}" for i in range(10)]
    assert send(client, body).status_code == 202

    template = base_body()  # a template supplies subject and content
    del template["subject"], template["content"]
    template["template_id"] = "d-0123456789abcdef"
    assert send(client, template).status_code == 202


def test_gzip_body_and_keep_alive_connection(server):
    body = json.dumps(base_body()).encode()
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/v3/mail/send", body=body, headers=headers)
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        conn.request(
            "POST",
            "/v3/mail/send",
            body=gzip.compress(body),
            headers={**headers, "Content-Encoding": "gzip"},
        )
        second = conn.getresponse()
        second.read()
        assert conn.sock is sock, "HTTP/1.1 keep-alive should reuse the connection"
    finally:
        conn.close()
    assert (first.status, second.status) == (202, 202)
    assert server.stats().requests_accepted == 2


def test_concurrent_clients_are_all_counted(server):
    ids: list[str] = []

    def worker() -> None:
        own = sendgrid.SendGridAPIClient(api_key=API_KEY, host=server.url)
        for _ in range(5):
            ids.append(send(own, base_body()).headers["X-Message-Id"])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 40
    assert server.stats().requests_accepted == 40
    assert len(server.messages) == server.stats().recipients_accepted == 80


def test_record_false_keeps_counters_only_for_a_benchmark_sized_request():
    html = "<p>" + "Hello -name-, the news. " * 1250 + "</p>"  # ~30 KB shared html
    body = base_body()
    body["content"][1]["value"] = html
    body["personalizations"] = [
        {
            "to": [{"email": f"user{i}@example.com", "name": f"User {i}"}],
            "substitutions": {"-name-": f"User {i}", "-id-": str(i), "-unsub-": f"u/{i}"},
            "headers": {"List-Unsubscribe": f"<https://example.com/u/{i}>", "X-Issue": "7"},
            "custom_args": {"campaign": "c7", "subscriber_id": str(i), "issue": "7"},
        }
        for i in range(1000)
    ]
    started = time.perf_counter()
    assert validate_mail_send(body) == []
    validate_ms = (time.perf_counter() - started) * 1000

    with SendGridServer(api_key=API_KEY, record=False) as srv:
        response = send(sendgrid.SendGridAPIClient(api_key=API_KEY, host=srv.url), body)
        assert response.status_code == 202
        assert srv.messages == []
        assert (srv.stats().requests_accepted, srv.stats().recipients_accepted) == (1, 1000)
        with pytest.raises(RuntimeError):
            srv.events_for_accepted()
        print(
            f"\n1000-personalization request: validate {validate_ms:.1f} ms, "
            f"server CPU {srv.stats().cpu_seconds * 1000:.1f} ms"
        )


# --------------------------------------------------------------------------- auth and size


def test_wrong_or_missing_api_key_is_401_without_echoing_it(server):
    wrong = sendgrid.SendGridAPIClient(api_key="SG.wrong", host=server.url)
    with pytest.raises(UnauthorizedError) as info:
        send(wrong, base_body())
    assert json.loads(info.value.body) == {
        "errors": [
            {
                "message": "The provided authorization grant is invalid, expired, or revoked",
                "field": None,
                "help": None,
            }
        ]
    }
    assert b"SG." not in info.value.body

    status, body = raw_post(
        server, json.dumps(base_body()).encode(), {"Content-Type": "application/json"}
    )
    assert status == 401 and json.loads(body)["errors"][0]["field"] is None
    assert server.messages == [] and server.stats().requests_accepted == 0


@pytest.mark.parametrize("size", [5_000, 3_000_000], ids=["small", "bigger-than-buffers"])
def test_body_over_max_body_bytes_is_413(size):
    with SendGridServer(api_key=API_KEY, max_body_bytes=2_000) as srv:
        body = base_body()
        body["content"][1]["value"] = "<p>" + "x" * size + "</p>"
        client = sendgrid.SendGridAPIClient(api_key=API_KEY, host=srv.url)
        with pytest.raises(PayloadTooLargeError) as info:
            send(client, body)
        assert info.value.status_code == 413
        assert "errors" in json.loads(info.value.body)
        assert srv.messages == []
        assert send(client, base_body()).status_code == 202  # the server is still fine


def test_unknown_path_and_wrong_method(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/v3/mail/send")
        response = conn.getresponse()
        assert response.status == 405
        response.read()
    finally:
        conn.close()
    status, _ = raw_post_path(server, "/v3/mail/batch")
    assert status == 404


def raw_post_path(server: SendGridServer, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", path, body=b"{}", headers={"Authorization": f"Bearer {API_KEY}"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- 400 rules


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Mutation setting a dotted path (list indexes as numbers) in the body."""

    def mutate(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _delete(*keys: str) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        for key in keys:
            del body[key]

    return mutate


def _many_personalizations(body: dict[str, Any]) -> None:
    body["personalizations"] = [{"to": [{"email": f"user{i}@example.com"}]} for i in range(1001)]


def _many_recipients(body: dict[str, Any]) -> None:
    pers = body["personalizations"][0]
    pers["to"] = [{"email": f"to{i}@example.com"} for i in range(600)]
    pers["bcc"] = [{"email": f"bcc{i}@example.com"} for i in range(401)]


def _in_hours(hours: float) -> int:
    return int(time.time() + hours * 3600)


def _html_then_text(body: dict[str, Any]) -> None:
    body["content"].reverse()


def _subject_only_in_first(body: dict[str, Any]) -> None:
    del body["subject"]
    body["personalizations"][0]["subject"] = "Only here"


REJECTIONS = [
    # (id, mutation, field SendGrid names)
    ("schema-missing-from", _delete("from"), "from"),
    (
        "schema-bad-email",
        _set("personalizations.0.to.0.email", "not-an-address"),
        "personalizations.0.to.0.email",
    ),
    (
        "schema-string-boolean-sandbox",
        _set("mail_settings.sandbox_mode.enable", "true"),
        "mail_settings.sandbox_mode.enable",
    ),
    (
        "schema-string-boolean-tracking",
        _set("tracking_settings.open_tracking.enable", "false"),
        "tracking_settings.open_tracking.enable",
    ),
    ("schema-too-many-personalizations", _many_personalizations, "personalizations"),
    ("schema-too-many-categories", _set("categories", [f"c{i}" for i in range(11)]), "categories"),
    ("schema-category-too-long", _set("categories", ["x" * 256]), "categories.0"),
    ("schema-duplicate-categories", _set("categories", ["news", "news"]), "categories"),
    ("schema-empty-content-value", _set("content.0.value", ""), "content.0.value"),
    ("schema-header-value-not-string", _set("headers", {"X-Count": 3}), "headers.X-Count"),
    (
        "schema-custom-arg-not-string",
        _set("personalizations.0.custom_args", {"n": 1}),
        "personalizations.0.custom_args.n",
    ),
    (
        "schema-personalization-without-to",
        _set("personalizations.1", {"subject": "x"}),
        "personalizations.1.to",
    ),
    (
        "duplicate-address-same-personalization",
        _set("personalizations.0.cc", [{"email": "ALICE@example.com"}]),
        "personalizations.0.cc.0.email",
    ),
    (
        "duplicate-address-across-personalizations",
        _set("personalizations.1.to.0.email", "Alice@Example.COM"),
        "personalizations.1.to.0.email",
    ),
    ("too-many-recipients-in-personalization", _many_recipients, "personalizations.0"),
    (
        "substitutions-too-big",
        _set("personalizations.0.substitutions", {"-big-": "x" * 10_000}),
        "personalizations.0.substitutions",
    ),
    ("custom-args-too-big", _set("custom_args", {"blob": "x" * 10_001}), "custom_args"),
    (
        "reserved-header-message-level",
        _set("headers", {"DKIM-Signature": "forged"}),
        "headers.DKIM-Signature",
    ),
    (
        "reserved-header-personalization",
        _set("personalizations.1.headers", {"reply-to": "a@b.c"}),
        "personalizations.1.headers.reply-to",
    ),
    ("content-html-before-text", _html_then_text, "content.1.type"),
    ("content-missing", _delete("content"), "content"),
    ("send-at-beyond-72h", _set("send_at", _in_hours(73)), "send_at"),
    (
        "personalization-send-at-beyond-72h",
        _set("personalizations.0.send_at", _in_hours(100)),
        "personalizations.0.send_at",
    ),
    (
        "name-with-comma",
        _set("personalizations.0.to.0.name", "Doe, Alice"),
        "personalizations.0.to.0.name",
    ),
    (
        "name-with-semicolon",
        _set("personalizations.1.to.0.name", "Bob; admin"),
        "personalizations.1.to.0.name",
    ),
    ("subject-missing-in-a-personalization", _subject_only_in_first, "subject"),
    ("no-personalizations", _set("personalizations", []), "personalizations"),
    ("empty-to", _set("personalizations.0.to", []), "personalizations.0.to"),
    (
        "reply-to-and-reply-to-list",
        _set("reply_to_list", [{"email": "r@example.com"}]),
        "reply_to_list",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "field"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_invalid_body_is_rejected_with_the_field_named(server, client, mutate, field):
    body = base_body()
    body["reply_to"] = {"email": "replies@example.com"}
    mutate(body)

    errors = rejected(client, body)

    assert field in [e["field"] for e in errors], errors
    assert server.messages == [] and server.stats().requests_accepted == 0
    assert server.stats().requests_rejected == 1


def test_all_problems_are_listed_not_just_the_first(client):
    body = base_body()
    del body["from"]
    body["personalizations"][0]["to"][0]["email"] = "nope"
    body["mail_settings"] = {"sandbox_mode": {"enable": "yes"}}
    fields = {e["field"] for e in rejected(client, body)}
    assert {"from", "personalizations.0.to.0.email", "mail_settings.sandbox_mode.enable"} <= fields

    body = base_body()
    body["headers"] = {"To": "x@example.com"}
    body["personalizations"][1]["to"][0]["email"] = "ALICE@example.com"
    body["personalizations"][1]["to"][0]["name"] = "Smith, Bob"
    fields = {e["field"] for e in rejected(client, body)}
    assert fields == {"headers.To", "personalizations.1.to.0.email", "personalizations.1.to.0.name"}


def test_body_that_is_not_a_json_object_is_400(server):
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    for raw in (b"{not json", b"[1, 2]"):
        status, body = raw_post(server, raw, headers)
        assert status == 400
        assert json.loads(body)["errors"][0]["field"] is None


def test_validate_mail_send_works_offline():
    assert validate_mail_send(base_body()) == []
    body = base_body()
    body["send_at"] = 1_000_000
    assert validate_mail_send(body, now=0.0)[0]["field"] == "send_at"


# --------------------------------------------------------------------------- faults


def test_rate_limit_fault_sends_429_with_reset_in_the_future(server, client):
    server.faults.rate_limit = 1
    server.faults.rate_limit_reset_after = 30
    with pytest.raises(TooManyRequestsError) as info:
        send(client, base_body())
    headers = info.value.headers
    assert int(headers["X-RateLimit-Limit"]) > 0
    assert headers["X-RateLimit-Remaining"] == "0"
    assert int(headers["X-RateLimit-Reset"]) > time.time()
    assert server.faults.rate_limit == 0 and server.messages == []
    assert send(client, base_body()).status_code == 202


@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        ("credits_exceeded", UnauthorizedError, 401),
        ("forbidden", ForbiddenError, 403),
        ("server_error", InternalServerError, 500),
        ("unavailable", ServiceUnavailableError, 503),
    ],
)
def test_json_error_faults(server, client, fault, error, status):
    setattr(server.faults, fault, 1)
    with pytest.raises(error) as info:
        send(client, base_body())
    assert info.value.status_code == status
    errors = json.loads(info.value.body)["errors"]
    if fault == "credits_exceeded":
        assert errors[0]["message"] == "Maximum credits exceeded"
    assert server.messages == []
    assert send(client, base_body()).status_code == 202  # one request only
    assert server.stats().requests_accepted == 1


def test_bad_gateway_fault_has_a_non_json_body(server, client):
    server.faults.bad_gateway = 1
    with pytest.raises(HTTPError) as info:
        send(client, base_body())
    assert info.value.status_code == 502
    assert info.value.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        json.loads(info.value.body)
    assert server.messages == []


def test_faults_are_consumed_in_precedence_order(server, client):
    server.faults.server_error = 1
    server.faults.rate_limit = 2
    server.faults.unavailable = 1
    seen = []
    for _ in range(5):
        try:
            seen.append(send(client, base_body()).status_code)
        except HTTPError as exc:
            seen.append(exc.status_code)
    assert seen == [429, 429, 500, 503, 202]


def test_slow_fault_times_the_client_out_but_the_message_is_accepted(server, client):
    server.faults.slow = 1
    server.faults.slow_seconds = 1.5
    client.client.timeout = 1  # python_http_client passes it to urllib's urlopen
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        send(client, base_body())
    assert wait_for(lambda: server.stats().requests_accepted == 1, 3)
    assert [m.to for m in server.messages] == ["alice@example.com", "bob@example.com"]


def test_drop_after_accept_raises_in_the_client_but_the_message_is_recorded(server, client):
    server.faults.drop_after_accept = 1
    with pytest.raises((ConnectionError, http.client.HTTPException, urllib.error.URLError)):
        send(client, base_body())
    assert server.stats().requests_accepted == 1
    assert [m.to for m in server.messages] == ["alice@example.com", "bob@example.com"]
    assert server.faults.drop_after_accept == 0
    assert send(client, base_body()).status_code == 202


def test_one_fault_per_request_even_with_slow_and_drop_armed(server, client):
    server.faults.slow, server.faults.slow_seconds = 1, 0.05
    server.faults.drop_after_accept = 1
    assert send(client, base_body()).status_code == 202  # slow (answered), not dropped
    assert server.faults.drop_after_accept == 1
    with pytest.raises((ConnectionError, http.client.HTTPException, urllib.error.URLError)):
        send(client, base_body())
    assert server.stats().requests_accepted == 2


def test_invalid_request_does_not_consume_drop_after_accept(server, client):
    server.faults.drop_after_accept = 1
    body = base_body()
    del body["from"]
    rejected(client, body)
    assert server.faults.drop_after_accept == 1


# --------------------------------------------------------------------------- event webhook


class _Receiver(ThreadingHTTPServer):
    """A webhook endpoint that checks signatures with the official SendGrid helper."""

    daemon_threads = True

    def __init__(self, public_key_base64: str) -> None:
        self.verifier = EventWebhook(public_key_base64)
        self.received: list[tuple[bool, list[dict[str, Any]]]] = []
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        payload = self.rfile.read(int(self.headers["Content-Length"])).decode()
        ok = self.server.verifier.verify_signature(
            payload,
            self.headers[SIGNATURE_HEADER],
            self.headers[TIMESTAMP_HEADER],
        )
        self.server.received.append((ok, json.loads(payload)))
        self.send_response(204 if ok else 403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver(server: SendGridServer) -> Iterator[_Receiver]:
    httpd = _Receiver(server.public_key_base64)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_signed_events_verify_with_the_official_helper_and_tampering_fails(
    server,
    client,
    receiver,
):
    message_id = send(client, base_body()).headers["X-Message-Id"]
    events = server.events_for_accepted("delivered")
    assert [e["email"] for e in events] == ["alice@example.com", "bob@example.com"]
    assert [e["subscriber_id"] for e in events] == ["1", "2"]  # custom_args at top level
    assert [e["sg_message_id"] for e in events] == [f"{message_id}.0", f"{message_id}.1"]
    assert len({e["sg_event_id"] for e in events}) == 2
    assert all(e["event"] == "delivered" and isinstance(e["timestamp"], int) for e in events)

    url = f"http://127.0.0.1:{receiver.server_address[1]}/events"
    assert server.post_events(events, url) == 204
    assert server.post_events(events, url, tamper=True) == 403
    assert (
        server.post_events(server.events_for_accepted("open"), url, timestamp=1_700_000_000) == 204
    )
    assert [ok for ok, _ in receiver.received] == [True, False, True]
    assert receiver.received[0][1] == events
    assert receiver.received[1][1] != events


def test_event_key_can_be_supplied_and_is_exposed_in_both_forms(receiver):
    private = ec.generate_private_key(ec.SECP256R1())
    with SendGridServer(
        api_key=API_KEY, event_private_key=private, event_webhook_url="http://127.0.0.1:1/unused"
    ) as srv:
        public = private.public_key()
        assert srv.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
        assert (
            EventWebhook(srv.public_key_base64).public_key.public_numbers()
            == public.public_numbers()
        )
        # The receiver trusts another server's key, so this server's posts must fail.
        url = f"http://127.0.0.1:{receiver.server_address[1]}/events"
        assert srv.post_events([{"event": "processed", "email": "a@example.com"}], url) == 403
    with pytest.raises(ValueError):
        SendGridServer(event_private_key=ec.generate_private_key(ec.SECP384R1()))


# --------------------------------------------------------------------------- command line


def test_command_line_runs_until_ctrl_c_and_prints_its_url():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "newsletter.testing.sendgrid_server",
            "--port",
            "0",
            "--api-key",
            API_KEY,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert re.match(r"^http://127\.0\.0\.1:\d+$", url), url
        client = sendgrid.SendGridAPIClient(api_key=API_KEY, host=url)
        assert send(client, copy.deepcopy(base_body())).status_code == 202
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "1 requests / 2 recipients accepted" in out
    assert "POST /v3/mail/send" in err  # request log lines...
    assert API_KEY not in out + err  # ...that never show the key


def test_sink_mode_counts_recipients_and_checks_nothing_else():
    invalid = base_body()
    del invalid["from"]  # the contract would refuse this; the sink does not look
    invalid["personalizations"][1]["to"].append({"email": "carol@example.com"})
    with SinkServer(api_key=API_KEY) as srv:
        assert not hasattr(srv, "faults")  # nor can it inject faults
        client = sendgrid.SendGridAPIClient(api_key=API_KEY, host=srv.url)
        first, second = send(client, invalid), send(client, copy.deepcopy(base_body()))
        assert (first.status_code, second.status_code) == (202, 202)
        assert MESSAGE_ID.match(first.headers["X-Message-Id"])
        assert first.headers["X-Message-Id"] != second.headers["X-Message-Id"]
        assert (srv.stats().requests_accepted, srv.stats().recipients_accepted) == (2, 5)
        assert not hasattr(srv, "messages") and srv.stats().requests_rejected == 0  # keeps none
        wrong = sendgrid.SendGridAPIClient(api_key="SG.wrong", host=srv.url)
        with pytest.raises(UnauthorizedError):
            send(wrong, base_body())
        status, _ = raw_post(srv, b"[1, 2]", {"Authorization": f"Bearer {API_KEY}"})
        assert status == 400 and srv.stats().requests_accepted == 2
        # The window a benchmark reads: accepted requests, first arrival to last answer.
        window = srv.take_window()
        assert (window.requests, window.recipients) == (2, 5)
        assert window.first is not None and 0 < window.seconds < 60 and window.rate > 0
        assert window.cpu_seconds > 0  # what serving them cost the sink's process
        after = srv.take_window()  # a new window begins
        assert (after.requests, after.recipients, after.first) == (0, 0, None)
        assert after == SinkWindow(cpu_seconds=after.cpu_seconds)


def test_sink_counts_to_recipients_without_decoding_the_whole_body():
    body = base_body()
    body["personalizations"][1]["to"].append({"email": "carol@example.com", "name": "C [to]"})
    # A value that looks like a "to" key: escaped inside its string, so not counted.
    body["subject"] = 'Re: "to": ["nobody"]'
    body["personalizations"][0]["substitutions"] = {"-x-": '"to":[{"email":"a@b.c"}]'}
    expected = sum(len(p["to"]) for p in body["personalizations"])
    assert expected == 3
    for encoded in (json.dumps(body), json.dumps(body, separators=(",", ":"))):
        assert count_recipients(encoded.encode()) == expected
    body["subject"] = "Caf\u00e9"  # not ASCII when sent raw: decoded whole, same answer
    assert count_recipients(json.dumps(body, ensure_ascii=False).encode()) == expected
    for bad in (b"[1, 2]", b'{"personalizations": [{"to": [oops]}]}', b"\xff{"):
        assert count_recipients(bad) is None


def test_sink_process_prints_its_window_on_request():
    server = ServerProcess(API_KEY, sink=True)
    try:
        client = sendgrid.SendGridAPIClient(api_key=API_KEY, host=server.url)
        assert send(client, base_body()).status_code == 202
        window = server.window()
        assert (window.requests, window.recipients) == (1, 2) and window.seconds > 0
        assert server.window().requests == 0
    finally:
        assert server.stop() == 2
    assert server.stats == ServerStats(
        requests_accepted=1, recipients_accepted=2, cpu_seconds=server.stats.cpu_seconds
    )


def test_server_process_speaks_json_records_not_words():
    """The child writes one JSON object per line; the parent builds typed records from them."""
    server = ServerProcess(API_KEY, record=True)
    try:
        assert server.url.startswith("http://127.0.0.1:") and server.public_key_base64
        client = sendgrid.SendGridAPIClient(api_key=API_KEY, host=server.url)
        body = base_body()
        body["mail_settings"] = {"sandbox_mode": {"enable": True}}
        assert send(client, body).status_code == 200
        assert send(client, base_body()).status_code == 202
        del body["subject"], body["mail_settings"]
        with pytest.raises(BadRequestsError):
            send(client, body)
    finally:
        assert server.stop() == 2
    stats = server.stats
    assert (stats.requests_accepted, stats.sandbox_requests, stats.requests_rejected) == (1, 1, 1)
    assert ServerStats.from_json(json.loads(json.dumps(stats.as_json()))) == stats


def test_one_stats_snapshot_and_a_config_that_hides_the_key(server, client):
    send(client, base_body())
    before = server.stats()
    send(client, base_body())
    assert before == ServerStats(
        requests_accepted=1, recipients_accepted=2, cpu_seconds=before.cpu_seconds
    )
    assert server.stats().requests_accepted == 2  # a snapshot: `before` did not move
    config = ServerConfig(api_key="SG.secret-key", record=False)
    assert "secret" not in repr(config)
    with SendGridServer(config) as srv:
        assert srv.config is config and "secret" not in repr(srv)
    with pytest.raises(TypeError):
        SendGridServer(config, record=True)
    with pytest.raises(ValueError):
        ServerConfig(api_key="")


def test_newsletter_sendgrid_server_command_runs_the_sink():
    newsletter = Path(sys.executable).parent / "newsletter"
    proc = subprocess.Popen(
        [str(newsletter), "sendgrid-server", "--port", "0", "--api-key", API_KEY, "--sink"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert re.match(r"^http://127\.0\.0\.1:\d+$", url), url
        body = base_body()
        del body["subject"]  # not checked in sink mode
        client = sendgrid.SendGridAPIClient(api_key=API_KEY, host=url)
        assert send(client, body).status_code == 202
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "1 requests / 2 recipients accepted" in out


def test_production_modules_do_not_import_the_test_server():
    code = (
        "import importlib, pkgutil, sys\n"
        "def load(package):\n"
        "    for m in pkgutil.iter_modules(importlib.import_module(package).__path__):\n"
        "        name = f'{package}.{m.name}'\n"
        "        if name not in ('newsletter.testing', 'newsletter.migrations')"
        " and m.name != '__main__':\n"
        "            load(name) if m.ispkg else importlib.import_module(name)\n"
        "load('newsletter')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('newsletter.testing'))\n"
        "print(loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
