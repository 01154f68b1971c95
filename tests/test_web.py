"""The subscribers' side over real HTTP: a live uvicorn server on 127.0.0.1, a real SQLite file,
the outbox provider writing real .eml files, and SendGrid-signed webhook posts from the local
SendGrid-compatible server. Nothing of ours is mocked."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import http.client
import json
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
import uvicorn
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter import publish
from newsletter.providers import make_provider
from newsletter.records import DeliveryState, IssueStatus, RenderedIssue, SubscriberStatus
from newsletter.resources import sample_folder
from newsletter.settings import Settings, load_settings, write_default_config
from newsletter.store import Store
from newsletter.subscribers import add_subscriber, signing_secret
from newsletter.tokens import new_token
from newsletter.web import create_app
from newsletter.web.app import PAGE_CSP, SIGNUP_CSP
from newsletter.web.confirm import confirmation_path
from newsletter.web.events import PUBLIC_KEY_ENV, SIGNATURE_HEADER, TIMESTAMP_HEADER
from newsletter.web.ratelimit import SignupLimits
from tests.conftest import stub_issue

ACTIVE = SubscriberStatus.ACTIVE
BOUNCED = SubscriberStatus.BOUNCED
COMPLAINED = SubscriberStatus.COMPLAINED
ISSUE_CANCELLED = IssueStatus.CANCELLED
SENT = DeliveryState.SENT
UNCERTAIN = DeliveryState.UNCERTAIN
UNCONFIRMED = SubscriberStatus.UNCONFIRMED
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED

SAMPLE_ARTICLES = sample_folder()
ONE_CLICK = b"List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# One signing key per test run, shared by the local SendGrid server and the hand-signed
# malformed payloads, exactly as SendGrid signs (ECDSA P-256, SHA-256, base64 DER).
EVENT_KEY = ec.generate_private_key(ec.SECP256R1())


# --------------------------------------------------------------------------- live server


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


@dataclass
class LiveWeb:
    settings: Settings
    store: Store
    url: str

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> Reply:
        """One real HTTP request; redirects are NOT followed, so a 303 shows as a 303."""
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post_form(self, path: str, fields: dict[str, str]) -> Reply:
        return self.request("POST", path, urlencode(fields).encode(), FORM)

    def path_of(self, link: str) -> str:
        assert link.startswith(self.url + "/"), link
        return link[len(self.url) :]


@contextmanager
def serve_folder(
    folder: Path, *, env: dict[str, str] | None = None, limits: dict | None = None
) -> Iterator[LiveWeb]:
    """`newsletter serve` on an existing newsletter folder, on a free port, running for real
    under uvicorn in a background thread. The socket is bound first so base_url (the address
    in every link) is known before the settings are built. `limits` overrides the sign-up
    limits (SignupLimits keyword arguments)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = load_settings(
        folder / "newsletter.toml", env={"NEWSLETTER_BASE_URL": url, **(env or {})}
    )
    store = Store(settings.database_url)
    app = create_app(
        settings, store, limits=SignupLimits(store, **limits) if limits is not None else None
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield LiveWeb(settings, store, url)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        store.close()


@contextmanager
def live_web(tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[LiveWeb]:
    """A new newsletter folder in tmp_path (the default newsletter.toml), served live."""
    write_default_config(tmp_path)
    with serve_folder(tmp_path, env=env) as live:
        yield live


@pytest.fixture
def sendgrid():
    from newsletter.testing.sendgrid_server import SendGridServer

    with SendGridServer(event_private_key=EVENT_KEY) as server:
        yield server


@pytest.fixture
def web(tmp_path, monkeypatch, sendgrid) -> Iterator[LiveWeb]:
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    monkeypatch.setenv(PUBLIC_KEY_ENV, sendgrid.public_key_base64)
    with live_web(tmp_path) as live:
        yield live


# --------------------------------------------------------------------------- helpers


def read_eml(path: Path) -> email.message.EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def wait_for(path: Path, timeout: float = 5.0) -> Path:
    """The confirmation is written after the answer is sent (a background task)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return path


def status_of(store: Store, address: str) -> str:
    return store.subscribers.by_email(address).status


def confirmation_link(msg: email.message.EmailMessage, base_url: str) -> str:
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    links = re.findall(re.escape(base_url) + r"/confirm/[^\s\"<]+", text)
    assert len(links) == 1, text
    assert f'href="{links[0]}"' in html
    return links[0]


def publish_next(web: LiveWeb, article: str) -> int:
    """Queue one sample article and run one publication tick with the outbox provider."""
    publish.queue_add(web.store, web.settings, SAMPLE_ARTICLES / article)
    result = publish.publish_tick(
        publish.TickContext.of(web.store, web.settings, make_provider(web.settings))
    )
    assert result.issue_id is not None, result.errors
    assert result.report.ok, result.report
    return result.issue_id


def eml_for(web: LiveWeb, issue_id: int, subscriber_id: int) -> Path:
    return web.settings.outbox_path / f"issue-{issue_id}" / f"{subscriber_id:08d}.eml"


def uncertain_issue(store: Store, addresses: list[str]) -> tuple[int, dict[str, int]]:
    """An issue whose only batch was in flight when the sender died: all rows uncertain."""
    ids = {a: add_subscriber(store, a, a.split("@")[0]).id for a in addresses}
    issue_id = store.issues.create_issue(
        stub_issue("crashed-issue", "Crashed"),
        [],
    )
    assert store.deliveries.claim(issue_id, 1000) is not None
    assert store.deliveries.in_flight_to_uncertain(issue_id) == len(addresses)
    return issue_id, ids


def event(kind: str, address: str, **extra) -> dict:
    data = {
        "email": address,
        "timestamp": int(time.time()),
        "event": kind,
        "sg_event_id": base64.urlsafe_b64encode(f"{kind}:{address}:{extra}".encode()).decode(),
        "sg_message_id": "msg.filter0001.1.0",
    }
    data.update(extra)
    return data


def signed_post(web: LiveWeb, body: bytes, timestamp: str | None = None) -> Reply:
    """A payload signed exactly as SendGrid signs, for bodies post_events cannot make."""
    stamp = timestamp or str(int(time.time()))
    signature = EVENT_KEY.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return web.request(
        "POST",
        "/webhooks/sendgrid",
        body,
        {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
            TIMESTAMP_HEADER: stamp,
        },
    )


# --------------------------------------------------------------------------- sign-up


def assert_only_the_zone_script(web, page) -> None:
    """The sign-up form carries exactly one script: ours, by URL and integrity hash, empty
    inline; its policy is the public pages' own plus `script-src 'self'`, nothing else (every
    other public page has no script-src at all)."""
    tags = re.findall(r"<script\b[^>]*>(.*?)</script>", page.text, re.S)
    assert tags == [""]  # one tag, nothing inline
    [tag] = re.findall(r"<script\b[^>]*>", page.text)
    body = web.get("/static/timezone.js")
    assert body.status == 200 and body.headers["Content-Type"].startswith("text/javascript")
    digest = base64.b64encode(hashlib.sha384(body.text.encode("utf-8")).digest()).decode()
    assert tag == (f'<script src="{web.url}/static/timezone.js" integrity="sha384-{digest}" defer>')
    policy = page.headers["Content-Security-Policy"]
    assert (
        policy
        == SIGNUP_CSP
        == PAGE_CSP.replace("default-src 'none'; ", "default-src 'none'; script-src 'self'; ")
    )
    assert (
        "script-src" not in PAGE_CSP
        and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    )


def test_signup_sends_confirmation_and_the_link_activates(web):
    form = web.get("/subscribe")
    assert form.status == 200
    assert '<html lang="en">' in form.text and 'name="viewport"' in form.text
    assert '<label for="email">' in form.text and 'id="email" name="email"' in form.text
    assert '<form method="post">' in form.text
    assert_only_the_zone_script(web, form)

    reply = web.post_form("/subscribe", {"email": "Nina@Example.com", "name": "Nina\r\nBcc: x"})
    assert reply.status == 200 and "Check your inbox" in reply.text
    row = web.store.subscribers.by_email("nina@example.com")
    assert row.status == UNCONFIRMED and row.name == "Nina Bcc: x"

    msg = read_eml(wait_for(confirmation_path(web.settings, row.id)))
    assert msg["To"].addresses[0].addr_spec == "Nina@example.com"
    assert msg["Subject"] == "Confirm your subscription to Endings Explained"
    assert "Bcc" not in msg or msg["Bcc"] is None
    link = confirmation_link(msg, web.url)
    assert link == f"{web.url}/confirm/{row.token}"
    assert "nina" not in link.lower()  # the token holds an opaque id, not the address

    # Mail scanners prefetch GET links: the page only offers a button.
    page = web.get(web.path_of(link))
    assert page.status == 200 and '<form method="post">' in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert status_of(web.store, "nina@example.com") == UNCONFIRMED

    done = web.request("POST", web.path_of(link))
    assert done.status == 200 and "You are subscribed" in done.text
    assert status_of(web.store, "nina@example.com") == ACTIVE
    again = web.request("POST", web.path_of(link))
    assert again.status == 200 and again.text == done.text
    assert status_of(web.store, "nina@example.com") == ACTIVE


def test_signup_answers_the_same_and_never_resubscribes(web):
    store = web.store
    for address, status in [
        ("active@example.com", ACTIVE),
        ("left@example.com", UNSUBSCRIBED),
        ("bounced@example.com", BOUNCED),
        ("complained@example.com", COMPLAINED),
    ]:
        add_subscriber(store, address, "Known", status=status)
    fresh = web.post_form("/subscribe", {"email": "fresh@example.com", "name": ""})
    assert fresh.status == 200
    fresh_row = store.subscribers.by_email("fresh@example.com")
    sent = wait_for(confirmation_path(web.settings, fresh_row.id))
    first_write = sent.stat().st_mtime_ns

    for address in [
        "ACTIVE@example.com",
        "left@example.com",
        "bounced@example.com",
        "complained@example.com",
        "fresh@example.com",
    ]:
        reply = web.post_form("/subscribe", {"email": address, "name": "Someone Else"})
        assert (reply.status, reply.body) == (fresh.status, fresh.body), address

    assert status_of(store, "active@example.com") == ACTIVE
    assert status_of(store, "left@example.com") == UNSUBSCRIBED
    assert status_of(store, "bounced@example.com") == BOUNCED
    assert status_of(store, "complained@example.com") == COMPLAINED
    assert status_of(store, "fresh@example.com") == UNCONFIRMED
    assert store.subscribers.by_email("active@example.com").name == "Known"
    time.sleep(0.3)
    # Only the new address got an email, and only once (the form cannot flood an inbox).
    confirmations = list((web.settings.outbox_path / "confirmations").glob("*.eml"))
    assert confirmations == [sent] and sent.stat().st_mtime_ns == first_write

    bad = web.post_form("/subscribe", {"email": "not an address", "name": "x"})
    assert bad.status == 400 and 'aria-invalid="true"' in bad.text and "@-sign" in bad.text
    empty = web.request("POST", "/subscribe", b"\xff\xfe", FORM)
    assert empty.status == 400 and "Enter your email address." in empty.text
    assert store.subscribers.count(None) == 5


def test_unconfirmed_addresses_are_not_planned_for_an_issue(web):
    reply = web.post_form("/subscribe", {"email": "pending@example.com", "name": "P"})
    assert reply.status == 200
    pending = web.store.subscribers.by_email("pending@example.com")
    reader = add_subscriber(web.store, "reader@example.com", "Reader")

    issue_id = publish_next(web, "001_the-lighthouse-keepers-daughter.txt")
    assert web.store.deliveries.sent_emails(issue_id) == ["reader@example.com"]
    assert sum(web.store.deliveries.counts(issue_id).values()) == 1
    assert eml_for(web, issue_id, reader.id).exists()
    assert not eml_for(web, issue_id, pending.id).exists()


# --------------------------------------------------------------------------- unsubscribe


def test_unsubscribe_get_changes_nothing_and_post_is_one_click(web):
    row = add_subscriber(web.store, "reader@example.com", "Reader")
    path = f"/unsubscribe/{row.token}"

    page = web.get(path)
    assert page.status == 200 and '<form method="post">' in page.text
    assert "reader@example.com" not in page.text
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert status_of(web.store, "reader@example.com") == ACTIVE

    done = web.request("POST", path, ONE_CLICK, FORM)
    assert done.status == 200 and "You are unsubscribed" in done.text
    assert done.headers["Location"] is None and done.headers["Set-Cookie"] is None
    assert status_of(web.store, "reader@example.com") == UNSUBSCRIBED

    again = web.request("POST", path, ONE_CLICK, FORM)
    assert (again.status, again.body) == (200, done.body)
    # RFC 8058 allows the one-click body as multipart/form-data too.
    multipart = (
        b'--b0undary\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        b"One-Click\r\n--b0undary--\r\n"
    )
    boundary = {"Content-Type": "multipart/form-data; boundary=b0undary"}
    assert web.request("POST", path, multipart, boundary).status == 200
    wrong = web.request("PUT", path, ONE_CLICK, FORM)
    assert wrong.status == 405
    assert set(wrong.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}
    assert web.request("HEAD", path).status == 200
    assert web.get(path).status == 200
    assert status_of(web.store, "reader@example.com") == UNSUBSCRIBED

    # An unsubscribe never softens a bounce or a complaint.
    bounced = add_subscriber(web.store, "gone@example.com", "", status=BOUNCED)
    assert web.request("POST", f"/unsubscribe/{bounced.token}", ONE_CLICK, FORM).status == 200
    assert status_of(web.store, "gone@example.com") == BOUNCED


def test_every_bad_token_gets_the_same_400(web):
    row = add_subscriber(web.store, "reader@example.com", "Reader")
    other = add_subscriber(web.store, "other@example.com", "Other")
    token = row.token
    opaque, signature = token.split(".")
    flip = {"A": "B"}.get(signature[0], "A")
    bad_tokens = [
        f"{opaque}.{flip}{signature[1:]}",  # tampered signature
        f"{opaque[:-1]}{'x' if opaque[-1] != 'x' else 'y'}.{signature}",  # tampered id
        token[:-4],  # truncated by a mail program
        f"{opaque}.",
        opaque,
        token + "x",
        new_token("some other newsletter's secret"),  # foreign
        new_token(signing_secret(web.store)),  # well signed, but nobody's
        f"{token}/extra",
        "..%2F..%2Fetc%2Fpasswd",
        "%00",
        "x" * 5000,
        "%C3%BC.%C3%BC",
        "a.b.c",
        "",
    ]
    replies = []
    for bad in bad_tokens:
        for route in ("unsubscribe", "confirm"):
            replies.append(web.get(f"/{route}/{bad}"))
            replies.append(web.request("POST", f"/{route}/{bad}", ONE_CLICK, FORM))
    assert {r.status for r in replies} == {400}
    assert len({r.body for r in replies}) == 1
    assert "not valid" in replies[0].text and token not in replies[0].text
    assert status_of(web.store, "reader@example.com") == ACTIVE
    assert status_of(web.store, "other@example.com") == ACTIVE
    assert other.token != token


# --------------------------------------------------------------------------- archive


def test_archive_page_index_and_feed(web):
    add_subscriber(web.store, "reader@example.com", "Reader")
    issue_id = publish_next(web, "002_static-over-galveston.txt")
    issue = web.store.issues.get_issue(issue_id)
    hidden = web.store.issues.create_issue(
        RenderedIssue(
            slug="not-yet",
            subject="Held back",
            preheader="secret teaser",
            html="<p>x</p>",
            text="x",
            archive_html="<p>held</p>",
            placeholder_nonce="1" * 16,
            view_url="",
        ),
        [],
    )
    web.store.issues.set_issue_status(hidden, IssueStatus.PAUSED)

    page = web.get(f"/archive/{issue.slug}")
    assert page.status == 200 and page.text == issue.archive_html
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert "Unsubscribe" not in page.text  # the web edition carries nobody's link
    # ...and leads back to the archive (issue 25: the issue page had no way back).
    assert f'<a href="{web.url}/archive"' in page.text and ">All issues</a>" in page.text
    assert web.get("/archive/not-yet").status == 404
    web.store.issues.set_issue_status(hidden, ISSUE_CANCELLED)
    assert web.get("/archive/not-yet").status == 404
    assert web.get("/archive/no-such-issue").status == 404

    index = web.get("/archive")
    assert index.status == 200
    assert issue.subject.replace("'", "&#39;") in index.text
    assert issue.preheader.replace("'", "&#39;") in index.text
    assert f'href="{web.url}/archive/{issue.slug}"' in index.text
    local = issue.created_at.astimezone(web.settings.timezone)
    assert f"{local.day} {local:%B %Y}" in index.text
    assert "Held back" not in index.text

    feed = web.get("/feed.xml")
    assert feed.status == 200
    assert feed.headers["Content-Type"].startswith("application/atom+xml")
    atom = "{http://www.w3.org/2005/Atom}"
    root = ET.fromstring(feed.body)
    assert root.tag == f"{atom}feed"
    entries = root.findall(f"{atom}entry")
    # The issue, then its article at its own address (the held issue has neither).
    assert len(entries) == 2
    assert entries[0].findtext(f"{atom}title") == issue.subject
    assert entries[0].findtext(f"{atom}summary") == issue.preheader
    assert entries[0].find(f"{atom}link").get("href") == f"{web.url}/archive/{issue.slug}"
    assert entries[1].find(f"{atom}link").get("href").startswith(f"{web.url}/articles/static-")
    assert entries[1].findtext(f"{atom}summary") == issue.preheader  # the spoiler-free teaser
    assert root.find(f"{atom}link[@rel='self']").get("href") == f"{web.url}/feed.xml"


# --------------------------------------------------------------------------- webhook


def test_webhook_events_suppress_confirm_and_count_once(web, sendgrid):
    store = web.store
    issue_id, ids = uncertain_issue(
        store,
        [
            "one@example.com",
            "two@example.com",
            "three@example.com",
            "bounce@example.com",
            "drop@example.com",
            "spam@example.com",
            "unsub@example.com",
            "group@example.com",
            "blocked@example.com",
        ],
    )

    def args(address: str) -> dict[str, str]:
        """The custom_args the provider sends, which SendGrid copies into each event."""
        return {"issue_id": str(issue_id), "batch": "1", "subscriber_id": str(ids[address])}

    events = [
        event("processed", "one@example.com", **args("one@example.com")),
        event("delivered", "two@example.com", **args("two@example.com")),
        event("bounce", "BOUNCE@example.com", type="bounce", reason="550 5.1.1 unknown"),
        event("dropped", "drop@example.com", reason="Bounced Address"),
        event("spamreport", "spam@example.com"),
        event("unsubscribe", "unsub@example.com"),
        event("group_unsubscribe", "group@example.com", asm_group_id=1),
        event("bounce", "blocked@example.com", type="blocked", reason="IP blocked"),
        event("open", "three@example.com", **args("three@example.com")),
        event("open", "three@example.com", **args("three@example.com"), useragent="again"),
        event("click", "three@example.com", **args("three@example.com"), url="https://x.y/"),
        event("deferred", "three@example.com"),
    ]
    url = f"{web.url}/webhooks/sendgrid"

    def snapshot():
        issue = store.issues.get_issue(issue_id)
        subs = {row.email: row.status for row in store.subscribers.each()}
        return subs, store.deliveries.counts(issue_id), issue.opens, issue.clicks

    assert sendgrid.post_events(events, url=url) == 200
    subs, counts, opens, clicks = snapshot()
    assert subs["bounce@example.com"] == BOUNCED
    assert subs["drop@example.com"] == BOUNCED
    assert subs["spam@example.com"] == COMPLAINED
    assert subs["unsub@example.com"] == UNSUBSCRIBED
    assert subs["group@example.com"] == UNSUBSCRIBED
    assert subs["blocked@example.com"] == ACTIVE  # a block is not a dead address
    assert subs["one@example.com"] == subs["two@example.com"] == ACTIVE
    assert {r.email for r in store.deliveries.in_state(issue_id, SENT)} == {
        "one@example.com",
        "two@example.com",
    }
    assert counts[UNCERTAIN] == 7
    assert (opens, clicks) == (2, 1)

    # SendGrid redelivers for 24 hours: the same events again change nothing.
    before = snapshot()
    assert sendgrid.post_events(events, url=url) == 200
    assert snapshot() == before

    # A spam complaint later is worse than an unsubscribe and replaces it, never the reverse.
    assert sendgrid.post_events([event("spamreport", "unsub@example.com")], url=url) == 200
    assert sendgrid.post_events([event("unsubscribe", "spam@example.com")], url=url) == 200
    assert status_of(store, "unsub@example.com") == COMPLAINED
    assert status_of(store, "spam@example.com") == COMPLAINED


def test_webhook_refuses_unsigned_altered_stale_and_malformed(web, sendgrid):
    add_subscriber(web.store, "victim@example.com", "Victim")
    url = f"{web.url}/webhooks/sendgrid"
    attack = [event("spamreport", "victim@example.com")]
    body = json.dumps(attack).encode()

    unsigned = web.request("POST", "/webhooks/sendgrid", body, {"Content-Type": "application/json"})
    assert unsigned.status == 401
    half = web.request(
        "POST", "/webhooks/sendgrid", body, {TIMESTAMP_HEADER: str(int(time.time()))}
    )
    assert half.status == 401
    assert sendgrid.post_events(attack, url=url, tamper=True) == 403
    assert sendgrid.post_events(attack, url=url, timestamp=int(time.time()) - 600) == 403
    assert sendgrid.post_events(attack, url=url, timestamp=int(time.time()) + 600) == 403
    now = str(int(time.time()))
    for signature in [
        "!!!not base64!!!",
        "QUJD",
        base64.b64encode(b"\x30\x06\x02\x01\x01").decode(),
    ]:
        reply = web.request(
            "POST", "/webhooks/sendgrid", body, {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: now}
        )
        assert reply.status == 403, signature
    for stamp in ["soon", "", "1e9", "-5"]:
        reply = signed_post(web, body, timestamp=stamp or " ")
        assert reply.status in (401, 403), stamp
    from newsletter.testing.sendgrid_server import SendGridServer

    with SendGridServer() as stranger:  # a valid signature, but not with our key
        assert stranger.post_events(attack, url=url) == 403
    assert signed_post(web, b"\xff\xfe not utf-8").status == 403
    assert status_of(web.store, "victim@example.com") == ACTIVE

    assert signed_post(web, b'[{"event": "open",').status == 400
    assert signed_post(web, b'{"event": "spamreport"}').status == 400
    assert signed_post(web, b"[]").status == 200
    assert signed_post(web, body).status == 200
    assert status_of(web.store, "victim@example.com") == COMPLAINED


def test_webhook_without_a_public_key_refuses_everything(tmp_path, monkeypatch, sendgrid):
    monkeypatch.delenv(PUBLIC_KEY_ENV, raising=False)
    with live_web(tmp_path) as web:
        add_subscriber(web.store, "victim@example.com", "Victim")
        events = [event("spamreport", "victim@example.com")]
        assert sendgrid.post_events(events, url=f"{web.url}/webhooks/sendgrid") == 503
        assert status_of(web.store, "victim@example.com") == ACTIVE


# --------------------------------------------------------------------------- end to end


def test_unsubscribe_link_from_a_delivered_email_stops_the_next_issue(web):
    leaver = add_subscriber(web.store, "leaver@example.com", "Leaver")
    stayer = add_subscriber(web.store, "stayer@example.com", "Stayer")
    first = publish_next(web, "001_the-lighthouse-keepers-daughter.txt")
    assert sorted(web.store.deliveries.sent_emails(first)) == [
        "leaver@example.com",
        "stayer@example.com",
    ]

    msg = read_eml(eml_for(web, first, leaver.id))
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    header_link = msg["List-Unsubscribe"].strip().removeprefix("<").removesuffix(">")
    html = msg.get_body(("html",)).get_content()
    html_links = re.findall(r'href="([^"]*/unsubscribe/[^"]*)"', html)
    assert html_links == [header_link]
    assert header_link.startswith(f"{web.url}/unsubscribe/")

    # What Gmail's one-click button does: POST the header's URL with the RFC 8058 body.
    reply = web.request("POST", web.path_of(header_link), ONE_CLICK, FORM)
    assert reply.status == 200 and reply.headers["Location"] is None
    assert status_of(web.store, "leaver@example.com") == UNSUBSCRIBED

    second = publish_next(web, "002_static-over-galveston.txt")
    assert web.store.deliveries.sent_emails(second) == ["stayer@example.com"]
    assert eml_for(web, second, stayer.id).exists()
    assert not eml_for(web, second, leaver.id).exists()


def test_the_shipped_app_serves_no_file_an_environment_variable_names(tmp_path, monkeypatch):
    """The benchmark's trivial route is mounted by benchmarks/_trivial_serve.py around our
    app; `serve` itself has no such route, whatever the environment says."""
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    private = tmp_path / "private.txt"
    private.write_text("not for the web", encoding="utf-8")
    env = {"NEWSLETTER_BENCHMARK_TRIVIAL_FILE": str(private)}
    with live_web(tmp_path / "site", env=env) as web:
        answer = web.get("/_benchmark/trivial")
        assert answer.status == 404 and "not for the web" not in answer.text
