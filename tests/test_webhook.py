"""SendGrid's signed Event Webhook under hostile and heavy input, over real HTTP against a live
server, on SQLite and on PostgreSQL, with real ECDSA signatures made with a generated key.

What is checked: headers are judged before a byte of the body is read; the body is cut at
the cap while it streams; a malformed POST is refused whole (an earlier, valid suppression in
the same POST is not applied); each sg_event_id acts once, across POSTs and when the same
batch is redelivered concurrently."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select, update

from newsletter.records import DeliveryState, SubscriberStatus
from newsletter.store.schema import subscribers, webhook_events
from newsletter.subscribers import add_subscriber
from newsletter.web.events import BODY_LIMIT, PUBLIC_KEY_ENV, SIGNATURE_HEADER, TIMESTAMP_HEADER
from tests.test_web import (
    EVENT_KEY,
    LiveWeb,
    event,
    live_web,
    signed_post,
    status_of,
    uncertain_issue,
)

PATH = "/webhooks/sendgrid"
ACTIVE, COMPLAINED = SubscriberStatus.ACTIVE, SubscriberStatus.COMPLAINED
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED
SENT, UNCERTAIN = DeliveryState.SENT, DeliveryState.UNCERTAIN


@pytest.fixture
def hook(tmp_path, monkeypatch, database_url) -> Iterator[LiveWeb]:
    """A live server on each backend, trusting EVENT_KEY."""
    der = EVENT_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    monkeypatch.setenv(PUBLIC_KEY_ENV, base64.b64encode(der).decode())
    with live_web(tmp_path, env={"NEWSLETTER_DATABASE_URL": database_url}) as live:
        yield live


def sign(body: bytes, stamp: str) -> str:
    signature = EVENT_KEY.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def post(web: LiveWeb, events: list) -> tuple[int, dict | str]:
    reply = signed_post(web, json.dumps(events).encode())
    try:
        return reply.status, json.loads(reply.body)
    except ValueError:
        return reply.status, reply.text


def raw_request(web: LiveWeb, head: str, body_parts: Iterable[bytes] = ()) -> bytes:
    """Send a request head and then body parts for as long as the server keeps reading,
    then return whatever it answered. Raw sockets: the point is what the server does with
    a body that is announced but never (fully) sent."""
    parts = urlsplit(web.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    answer = bytearray()
    try:
        sock.sendall(head.encode("latin-1"))
        sending = threading.Thread(target=_send_all, args=(sock, body_parts), daemon=True)
        sending.start()
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
            if b"\r\n\r\n" in answer:
                break
    finally:
        sock.close()
    return bytes(answer)


def _send_all(sock: socket.socket, parts: Iterable[bytes]) -> None:
    try:
        for part in parts:
            sock.sendall(part)
    except OSError:
        pass  # the server answered and closed: exactly what we wanted to see


def head(stamp: str, signature: str, extra: str) -> str:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{SIGNATURE_HEADER}: {signature}\r\n{TIMESTAMP_HEADER}: {stamp}\r\n{extra}\r\n"
    )


def status_line(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split()[1])


def fresh_stamp() -> str:
    return str(int(time.time()))


def webhook_event_count(web: LiveWeb) -> int:
    with web.store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(webhook_events))


# ----------------------------------------------------------------- before the body is read


def test_declared_oversize_body_is_refused_before_it_is_sent(hook):
    """15 MiB announced, nothing sent: the answer comes at once (the old code waited for it)."""
    stamp = fresh_stamp()
    answer = raw_request(
        hook, head(stamp, sign(b"[]", stamp), f"Content-Length: {15 * 1024 * 1024}\r\n")
    )
    assert status_line(answer) == 413


def test_stale_timestamp_is_refused_before_the_body(hook):
    """A body under the cap that never arrives: a stale or malformed timestamp, or a
    signature header that is not one, is refused from the headers alone."""
    size = f"Content-Length: {BODY_LIMIT - 1}\r\n"
    stale = str(int(time.time()) - 600)
    assert status_line(raw_request(hook, head(stale, sign(b"[]", stale), size))) == 403
    assert status_line(raw_request(hook, head("9" * 40, sign(b"[]", stale), size))) == 403
    assert status_line(raw_request(hook, head(fresh_stamp(), "QUJD", size))) == 403


def test_streamed_body_is_cut_at_the_cap(hook):
    """Chunked, with headers that look fresh and signed: the server reads up to the cap and
    answers 413 while the client still has megabytes to send (it stops after cap + 1 MiB
    and waits: the answer must come without the rest)."""
    stamp = fresh_stamp()
    chunk = b"[" + b" " * (256 * 1024 - 1)
    wire = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    count = BODY_LIMIT // len(chunk) + 4
    answer = raw_request(
        hook,
        head(stamp, sign(b"[]", stamp), "Transfer-Encoding: chunked\r\n"),
        iter([wire] * count),
    )
    assert status_line(answer) == 413


# ----------------------------------------------------------------- malformed: nothing applied

NESTED = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param('{"event": "open", "issue_id": 1180591620717411303424}', id="huge-int"),
        pytest.param('{"event": "open", "issue_id": "99999999999999999999"}', id="huge-str-int"),
        pytest.param('{"event": "open", "issue_id": 1' + "0" * 5000 + "}", id="5000-digit-int"),
        pytest.param('{"event": "delivered", "issue_id": 1, "subscriber_id": 0}', id="zero-id"),
        pytest.param('{"event": "open", "issue_id": [1]}', id="list-id"),
        pytest.param('{"event": "open", "issue_id": true}', id="bool-id"),
        pytest.param('{"event": 5}', id="event-not-text"),
        pytest.param('{"event": "bounce", "email": {"a": 1}}', id="email-not-text"),
        pytest.param('{"event": "bounce", "email": "x\\ud800@example.com"}', id="surrogate"),
        pytest.param('{"event": "open", "sg_event_id": "a\\u0000b", "issue_id": 1}', id="nul"),
        pytest.param('{"event": "open", "sg_event_id": 7, "issue_id": 1}', id="id-not-text"),
        pytest.param('{"event": "open", "sg_event_id": "' + "x" * 201 + '"}', id="long-id"),
        pytest.param(
            '{"event": "open", "sg_event_id": "t", "issue_id": 1, "timestamp": "soon"}',
            id="timestamp-not-a-number",
        ),
        pytest.param('{"event": "open", "deep": ' + NESTED + "}", id="deep-nesting"),
        pytest.param('"not an event"', id="not-an-object"),
        pytest.param('{"event": "open",', id="bad-json"),
    ],
)
def test_malformed_post_is_refused_whole(hook, bad):
    """A spam report first, then one bad event: 400, and the spam report was NOT applied
    (the old code answered 500 for some of these after applying it). Sent again without
    the bad event, the same batch then applies: nothing of it was recorded as seen."""
    add_subscriber(hook.store, "victim@example.com", "Victim")
    good = json.dumps(event("spamreport", "victim@example.com"))
    reply = signed_post(hook, f"[{good}, {bad}]".encode())
    assert reply.status == 400, reply.text
    assert status_of(hook.store, "victim@example.com") == ACTIVE
    assert webhook_event_count(hook) == 0
    assert signed_post(hook, f"[{good}]".encode()).status == 200
    assert status_of(hook.store, "victim@example.com") == COMPLAINED


# ----------------------------------------------------------------- exactly once


def test_each_event_id_acts_once_across_posts(hook):
    """Opens counted once per sg_event_id, within a POST and across POSTs; a redelivered
    unsubscribe does not undo a later re-subscription; confirmations only for the exact
    issue and subscriber the provider named."""
    store = hook.store
    issue_id, ids = uncertain_issue(store, ["a@example.com", "b@example.com", "c@example.com"])
    opens = [
        event("open", "a@example.com", issue_id=str(issue_id), n=n, sg_event_id=f"open-{n}")
        for n in range(10)
    ]
    leave = event("unsubscribe", "c@example.com", sg_event_id="leave-c")
    first = [
        *opens[:6],
        opens[0],  # the same id twice in one POST
        leave,
        event("delivered", "a@example.com", issue_id=issue_id, subscriber_id=ids["a@example.com"]),
        # a subscriber id from another issue: must not confirm b's row of this one
        event(
            "delivered", "b@example.com", issue_id=issue_id + 1, subscriber_id=ids["b@example.com"]
        ),
    ]
    status, summary = post(hook, first)
    assert status == 200, summary
    assert summary["opens"] == 6 and summary["duplicates"] == 1 and summary["confirmed"] == 1
    assert status_of(store, "c@example.com") == UNSUBSCRIBED
    assert {r.email for r in store.deliveries.in_state(issue_id, SENT)} == {"a@example.com"}
    assert store.deliveries.counts(issue_id)[UNCERTAIN] == 2

    with store.engine.begin() as conn:  # they came back (the editor re-activated them)
        conn.execute(
            update(subscribers)
            .where(subscribers.c.id == ids["c@example.com"])
            .values(status=ACTIVE)
        )
    status, summary = post(hook, [*opens, leave])  # SendGrid redelivers, plus 4 new opens
    assert status == 200, summary
    assert summary["opens"] == 4 and summary["duplicates"] == 7
    assert store.issues.get_issue(issue_id).opens == 10
    assert status_of(store, "c@example.com") == ACTIVE


def test_concurrent_redelivery_counts_once(hook):
    """The same 1,000-event batch posted 8 times at once (SendGrid retrying a POST it thinks
    timed out while the first is still being applied): every count exactly once."""
    store = hook.store
    addresses = [f"s{n}@example.com" for n in range(200)]
    issue_id, ids = uncertain_issue(store, addresses)
    batch = []
    for n, address in enumerate(addresses):
        args = {"issue_id": str(issue_id), "subscriber_id": str(ids[address])}
        batch.append(event("delivered", address, **args))
        batch += [event("open", address, **args, n=k) for k in range(3)]
        batch.append(event("click", address, **args, url="https://x.y/"))
        if n % 50 == 0:
            batch[-1] = event("spamreport", address)
    assert len(batch) == 1000
    body = json.dumps(batch).encode()
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: signed_post(hook, body), range(8)))
    assert [r.status for r in replies] == [200] * 8, [r.text for r in replies]
    summaries = [json.loads(r.body) for r in replies]
    issue = store.issues.get_issue(issue_id)
    assert (issue.opens, issue.clicks) == (600, 196)
    assert sum(s["opens"] for s in summaries) == 600
    assert sum(s["confirmed"] for s in summaries) == 200
    assert sum(s["suppressed"] for s in summaries) == 4
    assert sum(s["duplicates"] for s in summaries) == 7 * 1000
    assert store.deliveries.counts(issue_id)[SENT] == 200
    assert store.subscribers.count(COMPLAINED) == 4
    assert webhook_event_count(hook) == 1000
