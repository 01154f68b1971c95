"""The editors' workspace over real HTTP (a live uvicorn server, a real SQLite file): who gets
in and who does not. No session, a wrong password, throttling, missing or foreign CSRF
tokens, the session of a removed editor or of a changed password, tampered and expired
cookies; plus the pages' headers and the webhook's per-hour engagement behind the chart."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from newsletter import publish
from newsletter.editors import add_editor, change_password, remove_editor
from newsletter.web.admin.session import ACCOUNT_FREE, CLIENT_LIMIT, PAIR_LIMIT
from tests.test_web import (
    FORM,
    SAMPLE_ARTICLES,
    LiveWeb,
    Reply,
    event,
    live_web,
    publish_next,
    uncertain_issue,
)

PASSWORD = "correct horse battery"


@pytest.fixture
def web(tmp_path, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    with live_web(tmp_path) as live:
        add_editor(live.store, "ed@example.com", PASSWORD)
        yield live


class Browser:
    """A cookie jar over LiveWeb's raw requests (redirects are not followed)."""

    def __init__(self, web: LiveWeb, client: str | None = None) -> None:
        self.web = web
        self.cookies: dict[str, str] = {}
        self.last_set_cookie: list[str] = []
        # The client address as a trusted proxy (127.0.0.1, uvicorn's default) forwards it.
        self.extra: dict[str, str] = {"X-Forwarded-For": client} if client else {}

    def request(
        self, method: str, path: str, fields: dict | None = None, headers: dict | None = None
    ) -> Reply:
        headers = {**self.extra, **(dict(FORM) if fields is not None else {}), **(headers or {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = urlencode(fields).encode() if fields is not None else None
        reply = self.web.request(method, path, body, headers)
        self.last_set_cookie = reply.headers.get_all("set-cookie") or []
        for header in self.last_set_cookie:
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or not morsel.value.strip('"'):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, fields: dict, headers: dict | None = None) -> Reply:
        return self.request("POST", path, fields, headers)

    def login_form(self) -> str:
        reply = self.get("/admin/login")
        assert reply.status == 200
        return csrf_of(reply)

    def sign_in(self, email: str = "ed@example.com", password: str = PASSWORD) -> Reply:
        token = self.login_form()
        return self.post(
            "/admin/login", {"csrf_token": token, "email": email, "password": password}
        )


def csrf_of(reply: Reply) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', reply.text)
    assert match, reply.text[:500]
    return match.group(1)


def queue_one(web: LiveWeb) -> int:
    publish.queue_add(web.store, web.settings, SAMPLE_ARTICLES / "003_the-orchard-accounts.md")
    return web.store.articles.queued()[0].id


def test_nothing_under_admin_without_a_session(web):
    article_id = queue_one(web)
    for path in (
        "/admin/queue",
        "/admin/issues",
        "/admin/issues/1/counts.json",
        "/admin/schedule",
        "/admin/subscribers",
        "/admin/subscribers/export",
        f"/admin/queue/{article_id}/preview",
        f"/admin/queue/{article_id}/email",
    ):
        reply = web.get(path)
        assert reply.status == 303, path
        assert reply.headers["location"].startswith("/admin/login?next="), path
        assert b"orchard" not in reply.body.lower()
    reply = web.post_form(f"/admin/queue/{article_id}/remove", {"csrf_token": "x"})
    assert reply.status == 303 and reply.headers["location"].startswith("/admin/login")
    assert [a.id for a in web.store.articles.queued()] == [article_id]


def test_sign_in_sets_a_safe_cookie_and_a_wrong_password_does_not(web):
    browser = Browser(web)
    reply = browser.sign_in(password="not the password")
    assert reply.status == 401 and "Wrong email address or password" in reply.text
    assert "nl_admin" not in browser.cookies
    reply = browser.sign_in(email="nobody@example.com")
    assert reply.status == 401 and "nl_admin" not in browser.cookies

    reply = browser.sign_in()
    assert reply.status == 303 and reply.headers["location"] == "/admin/queue"
    session = next(c for c in browser.last_set_cookie if c.startswith("nl_admin="))
    attributes = {part.strip().lower() for part in session.split(";")[1:]}
    assert {"httponly", "path=/admin", "samesite=lax"} <= attributes
    assert "secure" not in attributes  # base_url is plain http here
    page = browser.get("/admin/queue")
    assert page.status == 200 and "ed@example.com" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    # Signing out ends the session in the browser.
    assert browser.post("/admin/logout", {"csrf_token": csrf_of(page)}).status == 303
    assert browser.get("/admin/queue").status == 303


def test_cookies_are_secure_when_base_url_is_https(tmp_path, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    with live_web(tmp_path, env={"NEWSLETTER_BASE_URL": "https://news.example.com"}) as web:
        # live_web's own URL is still the local one: only the settings say https.
        web.settings = web.settings
        add_editor(web.store, "ed@example.com", PASSWORD)
        browser = Browser(web)
        reply = browser.sign_in()
        assert reply.status == 303
        session = next(c for c in browser.last_set_cookie if c.startswith("nl_admin="))
        assert "secure" in session.lower()


def test_a_redirect_after_sign_in_never_leaves_the_workspace(web):
    browser = Browser(web)
    token = browser.login_form()
    reply = browser.post(
        "/admin/login",
        {
            "csrf_token": token,
            "email": "ed@example.com",
            "password": PASSWORD,
            "next": "https://evil.example/admin/",
        },
    )
    assert reply.status == 303 and reply.headers["location"] == "/admin/queue"


def test_failed_sign_ins_are_throttled_per_client_and_never_lock_the_account(web, caplog):
    """Security 3: wrong passwords from anywhere used to lock the account for everyone (the
    right password from a new address got 429 for 15 minutes)."""
    attackers = [Browser(web, f"203.0.113.{n}") for n in range(1, 4)]
    for attacker in attackers[:2]:
        for _ in range(PAIR_LIMIT.amount):
            assert attacker.sign_in(password="wrong password!").status == 401
    # That client, for that account, is refused, right password or not...
    reply = attackers[0].sign_in()
    assert reply.status == 429 and "Too many failed sign-ins" in reply.text
    assert int(reply.headers["retry-after"]) > 0 and "nl_admin" not in attackers[0].cookies
    # ...but the editor from an address that has not failed gets in, only more slowly.
    caplog.set_level("WARNING", logger="newsletter.web.admin.session")
    editor = Browser(web, "198.51.100.7")
    assert editor.sign_in().status == 303 and "nl_admin" in editor.cookies
    assert editor.get("/admin/queue").status == 200
    assert "waiting" in caplog.text and "failed sign-ins" in caplog.text
    # The counts live in the database, where every `serve` process reads them.
    failures, ends = web.store.rate_limits.get(
        next(k for k in _rate_keys(web) if k.startswith("LIMITER/account/"))
    )
    assert failures == 2 * PAIR_LIMIT.amount and ends > time.time()

    # The editor was emailed once about it (through the provider, as alerts go), not once
    # per wrong password.
    assert attackers[2].sign_in(password="wrong again!!!").status == 401
    warned = list((web.settings.outbox_path / "alerts").glob("*.eml"))
    assert len(warned) == 1
    mail = warned[0].read_text()
    assert "To: ed@example.com" in mail and "Wrong passwords for your account" in mail
    assert f"{ACCOUNT_FREE} wrong passwords" in mail.replace("=\n", "")

    # Per client: many accounts tried from one address.
    spray = Browser(web, "192.0.2.50")
    for n in range(CLIENT_LIMIT.amount):
        assert spray.sign_in(email=f"guess{n}@example.com").status == 401
    add_editor(web.store, "second@example.com", PASSWORD)
    assert spray.sign_in(email="second@example.com").status == 429
    assert Browser(web, "192.0.2.51").sign_in(email="second@example.com").status == 303


def _rate_keys(web: LiveWeb) -> list[str]:
    from sqlalchemy import select

    from newsletter.store.schema import rate_limits

    with web.store.transaction(write=False) as conn:
        return list(conn.scalars(select(rate_limits.c.key)))


def test_state_changes_need_the_sessions_csrf_token(web):
    article_id = queue_one(web)
    # The sign-in form itself: no token, or a token without its cookie, is refused.
    anonymous = Browser(web)
    token = anonymous.login_form()
    reply = anonymous.post("/admin/login", {"email": "ed@example.com", "password": PASSWORD})
    assert reply.status == 403
    stranger = Browser(web)
    reply = stranger.post(
        "/admin/login", {"csrf_token": token, "email": "ed@example.com", "password": PASSWORD}
    )
    assert reply.status == 403 and "nl_admin" not in stranger.cookies

    alice, bob = Browser(web), Browser(web)
    assert alice.sign_in().status == 303 and bob.sign_in().status == 303
    alice_token = csrf_of(alice.get("/admin/queue"))
    bob_token = csrf_of(bob.get("/admin/queue"))
    assert alice_token != bob_token
    remove = f"/admin/queue/{article_id}/remove"
    assert alice.post(remove, {}).status == 403
    assert alice.post(remove, {"csrf_token": ""}).status == 403
    assert alice.post(remove, {"csrf_token": bob_token}).status == 403
    tampered = alice_token[:-1] + ("1" if alice_token.endswith("0") else "0")  # always differs
    assert alice.post(remove, {"csrf_token": tampered}).status == 403
    assert [a.id for a in web.store.articles.queued()] == [article_id]
    reply = alice.post(remove, {"csrf_token": alice_token})
    assert reply.status == 303 and web.store.articles.queued() == []


def test_removed_editor_and_changed_password_end_sessions(web):
    add_editor(web.store, "leaving@example.com", PASSWORD)
    leaving, staying = Browser(web), Browser(web)
    assert leaving.sign_in("leaving@example.com").status == 303
    assert staying.sign_in().status == 303
    assert leaving.get("/admin/queue").status == 200
    remove_editor(web.store, "leaving@example.com")
    reply = leaving.get("/admin/queue")
    assert reply.status == 303 and reply.headers["location"].startswith("/admin/login")

    assert staying.get("/admin/issues").status == 200
    change_password(web.store, "ed@example.com", "a brand new password")
    assert staying.get("/admin/issues").status == 303
    assert Browser(web).sign_in(password="a brand new password").status == 303


def test_tampered_foreign_and_expired_cookies_are_no_session(web):
    browser = Browser(web)
    assert browser.sign_in().status == 303
    good = browser.cookies["nl_admin"]
    payload, stamp, signature = good.split(".")
    for bad in (
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        payload.replace(payload[2], "x" if payload[2] != "x" else "y") + f".{stamp}.{signature}",
        "WzEsMSwieCJd.abc.def",
        "",
    ):
        browser.cookies["nl_admin"] = bad
        assert browser.get("/admin/queue").status == 303, bad

    secret = web.store.meta.secret_key()

    class LongAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 13 * 3600

    salt = "newsletter.admin-session-id"
    session_id = URLSafeTimedSerializer(secret, salt=salt).loads(good)
    expired = URLSafeTimedSerializer(secret, salt=salt, signer=LongAgo).dumps(session_id)
    browser.cookies["nl_admin"] = expired
    assert browser.get("/admin/queue").status == 303
    # A well-signed cookie names a session only if the database has it.
    made_up = URLSafeTimedSerializer(secret, salt=salt).dumps("x" * 43)
    browser.cookies["nl_admin"] = made_up
    assert browser.get("/admin/queue").status == 303
    browser.cookies["nl_admin"] = good  # the real one, in time: accepted
    assert browser.get("/admin/queue").status == 200


def test_engagement_is_recorded_per_hour_and_drawn(tmp_path, monkeypatch):
    from newsletter.testing.sendgrid_server import SendGridServer
    from newsletter.web.events import PUBLIC_KEY_ENV

    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    with SendGridServer() as sendgrid:
        monkeypatch.setenv(PUBLIC_KEY_ENV, sendgrid.public_key_base64)
        with live_web(tmp_path) as web:
            add_editor(web.store, "ed@example.com", PASSWORD)
            from newsletter.subscribers import add_subscriber

            add_subscriber(web.store, "reader@example.com", "Reader")
            issue_id = publish_next(web, "003_the-orchard-accounts.md")
            hour = int(time.time()) // 3600 * 3600
            events = [
                event("open", "reader@example.com", issue_id=issue_id, timestamp=hour - 7200),
                event("open", "a@example.com", issue_id=issue_id, timestamp=hour - 3500),
                event("click", "reader@example.com", issue_id=issue_id, timestamp=hour - 3500),
            ]
            url = f"{web.url}/webhooks/sendgrid"
            assert sendgrid.post_events(events, url=url) == 200
            assert sendgrid.post_events(events, url=url) == 200  # a redelivery counts once
            series = web.store.engagement.series(issue_id)
            # Tallied by the hour each reader opened or clicked (SendGrid's timestamp), not
            # the hour the webhook received them.
            two_hours_ago = datetime.fromtimestamp(hour - 7200, UTC)
            last_hour = datetime.fromtimestamp(hour - 3600, UTC)
            assert sorted(series) == [
                ("click", last_hour, 1),
                ("open", two_hours_ago, 1),
                ("open", last_hour, 1),
            ]
            browser = Browser(web)
            assert browser.sign_in().status == 303
            page = browser.get(f"/admin/issues/{issue_id}")
            assert page.status == 200
            assert "<svg" in page.text and "opens 2" in page.text and "clicks 1" in page.text


def test_uncertain_rows_are_listed_and_resolved_one_by_one(web):
    issue_id, ids = uncertain_issue(web.store, ["u1@example.com", "u2@example.com"])
    browser = Browser(web)
    assert browser.sign_in().status == 303
    page = browser.get(f"/admin/issues/{issue_id}")
    assert "u1@example.com" in page.text and "u2@example.com" in page.text
    reply = browser.post(
        f"/admin/issues/{issue_id}/resolve",
        {
            "csrf_token": csrf_of(page),
            "action": "mark-sent",
            "subscriber_id": str(ids["u1@example.com"]),
        },
    )
    assert reply.status == 303
    counts = web.store.deliveries.counts(issue_id)
    assert counts["uncertain"] == 1 and counts["sent"] == 1
    counts_json = browser.get(f"/admin/issues/{issue_id}/counts.json")
    assert counts_json.status == 200 and '"uncertain":1' in counts_json.text


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "----admin-test-boundary"
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, (filename, content) in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: text/csv\r\n\r\n'.encode()
            + content
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def finished_import(browser: Browser, location: str, timeout: float = 60) -> Reply:
    """The progress page once the import worker has finished the job."""
    deadline = time.monotonic() + timeout
    while True:
        page = browser.get(location)
        assert page.status == 200, page.text[:300]
        state = re.search(r'id="import-state"[^>]*>(\w+)<', page.text).group(1)
        if state in ("done", "failed"):
            return page
        assert time.monotonic() < deadline, f"the import is still {state}"
        time.sleep(0.1)


def test_import_report_export_and_unsubscribe(web):
    browser = Browser(web)
    assert browser.sign_in().status == 303
    token = csrf_of(browser.get("/admin/subscribers"))
    bad = b"email,name\nann@example.com,Ann\nnot-an-address,Bad\nbob@example.com,Bob\n"
    body, content_type = multipart({"csrf_token": token}, {"file": ("list.csv", bad)})
    headers = {
        "Content-Type": content_type,
        "Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items()),
    }
    reply = web.request("POST", "/admin/subscribers/import", body, headers)
    assert reply.status == 303, reply.text[:300]
    assert re.fullmatch(r"/admin/subscribers/imports/\d+", reply.headers["location"])
    page = finished_import(browser, reply.headers["location"])
    # A bad row refuses the whole file, naming the line; nothing is imported.
    assert "list.csv:line 3: not-an-address" in page.text and "nothing was imported" in page.text
    assert web.store.subscribers.count() == 0
    good = bad.replace(b"not-an-address,Bad\n", b"")
    body, content_type = multipart({"csrf_token": token}, {"file": ("list.csv", good)})
    reply = web.request(
        "POST", "/admin/subscribers/import", body, {**headers, "Content-Type": content_type}
    )
    assert reply.status == 303
    page = finished_import(browser, reply.headers["location"])
    assert "added 2, updated 0, skipped 0" in page.text
    # Without the token the same upload is refused.
    body, content_type = multipart({}, {"file": ("list.csv", good)})
    refused = web.request(
        "POST", "/admin/subscribers/import", body, {**headers, "Content-Type": content_type}
    )
    assert refused.status == 403

    export = browser.get("/admin/subscribers/export")
    assert export.status == 200 and export.headers["content-type"].startswith("text/csv")
    assert "ann@example.com" in export.text and "bob@example.com" in export.text
    ann = web.store.subscribers.by_email("ann@example.com")
    reply = browser.post(f"/admin/subscribers/{ann.id}/unsubscribe", {"csrf_token": token})
    assert reply.status == 303
    assert web.store.subscribers.by_email("ann@example.com").status == "unsubscribed"
    found = browser.get("/admin/subscribers?q=bob")
    assert '<td class="email">bob@example.com' in found.text
    assert '<td class="email">ann@example.com' not in found.text


def test_not_before_is_read_in_the_editors_time_zone(web):
    from datetime import UTC, datetime

    add_editor(web.store, "ny@example.com", PASSWORD, timezone="America/New_York")
    article_id = queue_one(web)
    browser = Browser(web)
    assert browser.sign_in("ny@example.com").status == 303
    token = csrf_of(browser.get("/admin/queue"))
    reply = browser.post(
        f"/admin/queue/{article_id}/not-before",
        {"csrf_token": token, "not_before": "2030-12-24T09:00"},
    )
    assert reply.status == 303
    assert web.store.articles.queued()[0].not_before == datetime(2030, 12, 24, 14, 0, tzinfo=UTC)
    page = browser.get("/admin/queue")
    assert 'value="2030-12-24T09:00"' in page.text and "EST" in page.text
    reply = browser.post(
        f"/admin/queue/{article_id}/not-before", {"csrf_token": token, "clear": "1"}
    )
    assert reply.status == 303 and web.store.articles.queued()[0].not_before is None
    bad = browser.post(
        f"/admin/queue/{article_id}/not-before", {"csrf_token": token, "not_before": "soon"}
    )
    assert bad.status == 400 and "is not a date and time" in bad.text


def test_the_cadence_form_writes_newsletter_toml(web):
    import tomllib

    browser = Browser(web)
    assert browser.sign_in().status == 303
    token = csrf_of(browser.get("/admin/schedule"))
    reply = browser.post(
        "/admin/schedule",
        {
            "csrf_token": token,
            "day_mon": "1",
            "day_wed": "1",
            "time": "07:15",
            "articles_per_issue": "2",
        },
    )
    assert reply.status == 303
    written = tomllib.loads((web.settings.root / "newsletter.toml").read_text())["schedule"]
    assert written["days"] == ["mon", "wed"] and written["time"] == "07:15"
    page = browser.get("/admin/schedule")
    assert "<strong>mon, wed</strong> at <strong>07:15</strong>" in page.text
    assert "Wed" in page.text
    bad = browser.post(
        "/admin/schedule",
        {"csrf_token": token, "time": "25:00", "articles_per_issue": "1", "day_mon": "1"},
    )
    assert bad.status == 400 and "[schedule] time" in bad.text


# -- issue 25, security: sessions that end, ids never reused, limits, bounds, origins -----------
def _age_sessions(web: LiveWeb, **moved: timedelta) -> None:
    """Move every session's times into the past, as hours of real time would."""
    from sqlalchemy import select, update

    from newsletter.store.schema import editor_sessions

    table = editor_sessions
    with web.store.transaction() as conn:
        for row in conn.execute(select(table)).all():
            values = {name: getattr(row, name) - delta for name, delta in moved.items()}
            conn.execute(update(table).where(table.c.id_hash == row.id_hash).values(values))


def test_a_removed_editors_session_never_comes_back(web):
    """Security 1: removing the newest editor, then adding anyone, revived the old cookie
    (SQLite reused the id and the session version restarted at 1)."""
    add_editor(web.store, "leaving@example.com", PASSWORD)
    old = Browser(web)
    assert old.sign_in("leaving@example.com").status == 303
    kept = dict(old.cookies)
    leaving_id = web.store.editors.by_email("leaving@example.com").id
    remove_editor(web.store, "leaving@example.com")
    assert old.get("/admin/queue").status == 303
    newcomer = add_editor(web.store, "new@example.com", PASSWORD)
    again = add_editor(web.store, "leaving@example.com", "another long password")
    assert leaving_id not in (newcomer.id, again.id)  # ids are never given twice
    old.cookies = dict(kept)
    reply = old.get("/admin/queue")
    assert reply.status == 303 and reply.headers["location"].startswith("/admin/login")
    assert "new@example.com" not in reply.text


def test_sign_out_ends_the_session_for_every_copy_of_the_cookie(web):
    """Security 2: a copy of the cookie kept working for 12 hours after signing out."""
    article_id = queue_one(web)
    browser = Browser(web)
    assert browser.sign_in().status == 303
    token = csrf_of(browser.get("/admin/queue"))
    copy = Browser(web)
    copy.cookies = dict(browser.cookies)
    assert copy.get("/admin/subscribers/export").status == 200
    assert browser.post("/admin/logout", {"csrf_token": token}).status == 303
    for path in ("/admin/queue", "/admin/issues", "/admin/subscribers/export"):
        assert copy.get(path).status == 303, path
    reply = copy.post(f"/admin/queue/{article_id}/remove", {"csrf_token": token})
    assert reply.status == 303 and reply.headers["location"].startswith("/admin/login")
    assert [a.id for a in web.store.articles.queued()] == [article_id]
    editor_id = web.store.editors.by_email("ed@example.com").id
    assert web.store.editors.sessions_of(editor_id) == 0


def test_sessions_expire_when_idle_and_when_old(web):
    from newsletter.editors import SESSION_IDLE, SESSION_MAX_AGE

    browser = Browser(web)
    assert browser.sign_in().status == 303
    assert browser.get("/admin/queue").status == 200
    # Used within the idle time, however often: alive; idle longer: gone.
    _age_sessions(web, seen_at=SESSION_IDLE - timedelta(minutes=5))
    assert browser.get("/admin/queue").status == 200
    _age_sessions(web, seen_at=SESSION_IDLE + timedelta(minutes=1))
    assert browser.get("/admin/queue").status == 303
    # In use all along, but signed in longer ago than the maximum age: gone too.
    browser = Browser(web)
    assert browser.sign_in().status == 303
    _age_sessions(web, created_at=SESSION_MAX_AGE + timedelta(minutes=1))
    assert browser.get("/admin/queue").status == 303


def test_sign_out_everywhere_and_a_password_change_end_every_session(web):
    laptop, phone = Browser(web), Browser(web)
    assert laptop.sign_in().status == 303 and phone.sign_in().status == 303
    page = laptop.get("/admin/queue")
    assert 'action="/admin/logout-everywhere"' in page.text
    assert laptop.post("/admin/logout-everywhere", {"csrf_token": csrf_of(page)}).status == 303
    assert laptop.get("/admin/queue").status == 303 and phone.get("/admin/queue").status == 303

    assert phone.sign_in().status == 303
    change_password(web.store, "ed@example.com", "a brand new password")
    assert phone.get("/admin/queue").status == 303
    editor_id = web.store.editors.by_email("ed@example.com").id
    assert web.store.editors.sessions_of(editor_id) == 0


def test_out_of_range_values_answer_400_or_404_not_500(web):
    """Security 6: year 1, 30-digit ids in a form and in paths ended in OverflowError."""
    article_id = queue_one(web)
    issue_id, _ = uncertain_issue(web.store, ["u1@example.com"])
    browser = Browser(web)
    assert browser.sign_in().status == 303
    token = csrf_of(browser.get("/admin/queue"))
    huge = "9" * 30
    for value in ("0001-01-01T00:00", "9999-12-31T23:59"):
        reply = browser.post(
            f"/admin/queue/{article_id}/not-before", {"csrf_token": token, "not_before": value}
        )
        assert reply.status == 400 and "the year must be between" in reply.text, value
    assert web.store.articles.queued()[0].not_before is None
    reply = browser.post(
        f"/admin/issues/{issue_id}/resolve",
        {"csrf_token": token, "action": "mark-sent", "subscriber_id": huge},
    )
    assert reply.status == 400 and "is not a subscriber id" in reply.text
    assert web.store.deliveries.counts(issue_id)["uncertain"] == 1  # not all of them either
    assert (
        browser.post(f"/admin/subscribers/{huge}/unsubscribe", {"csrf_token": token}).status == 404
    )
    assert browser.get(f"/admin/issues/{huge}").status == 404
    assert browser.get(f"/admin/issues/{huge}/counts.json").status == 404
    assert browser.get(f"/admin/queue/{huge}/preview").status == 404


def test_test_sends_are_limited_per_editor(web):
    """Security 7: 30 test sends in 0.7 s made 30 provider requests."""
    from newsletter.web.admin.session import PROOFS_PER_EDITOR

    allowed = int(PROOFS_PER_EDITOR.split(";")[0].split("/")[0])
    article_id = queue_one(web)
    browser = Browser(web)
    assert browser.sign_in().status == 303
    token = csrf_of(browser.get(f"/admin/queue/{article_id}/preview"))
    proof = web.settings.outbox_path / "issue-0" / "00000000.eml"
    for _ in range(allowed):
        proof.unlink(missing_ok=True)
        assert (
            browser.post(f"/admin/queue/{article_id}/send-test", {"csrf_token": token}).status
            == 303
        )
        assert proof.exists()
    proof.unlink()
    reply = browser.post(f"/admin/queue/{article_id}/send-test", {"csrf_token": token})
    assert reply.status == 429 and "Too many test sends" in reply.text
    assert "Try again in" in reply.text and int(reply.headers["retry-after"]) > 0
    assert not proof.exists()  # no request reached the provider
    # Per editor: another editor still can.
    add_editor(web.store, "other@example.com", PASSWORD)
    other = Browser(web)
    assert other.sign_in("other@example.com").status == 303
    token = csrf_of(other.get(f"/admin/queue/{article_id}/preview"))
    assert other.post(f"/admin/queue/{article_id}/send-test", {"csrf_token": token}).status == 303


def test_a_valid_token_from_another_origin_is_refused(web):
    """Security 10: Origin is checked as a second line behind the CSRF token."""
    article_id = queue_one(web)
    browser = Browser(web)
    assert browser.sign_in().status == 303
    token = csrf_of(browser.get("/admin/queue"))
    remove = f"/admin/queue/{article_id}/remove"
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Origin": web.url, "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},  # a browser that left Origin out
    ):
        reply = browser.post(remove, {"csrf_token": token}, headers)
        assert reply.status == 403, headers
    assert [a.id for a in web.store.articles.queued()] == [article_id]
    # The sign-in form too.
    stranger = Browser(web)
    login = stranger.login_form()
    reply = stranger.post(
        "/admin/login",
        {"csrf_token": login, "email": "ed@example.com", "password": PASSWORD},
        {"Origin": "https://evil.example"},
    )
    assert reply.status == 403 and "nl_admin" not in stranger.cookies
    # A page with Referrer-Policy: no-referrer (ours) makes browsers send Origin: null; then
    # Sec-Fetch-Site says whether the form was this site's.
    assert [a.id for a in web.store.articles.queued()] == [article_id]
    # The site's own origin, as a browser sends it, passes.
    reply = browser.post(
        remove, {"csrf_token": token}, {"Origin": web.url, "Sec-Fetch-Site": "same-origin"}
    )
    assert reply.status == 303 and web.store.articles.queued() == []


def test_the_queue_runs_dry_notice_is_said_once(web):
    queue_one(web)  # one article, a cadence of several ticks ahead: the queue runs dry
    browser = Browser(web)
    browser.sign_in()
    page = browser.get("/admin/queue")
    assert page.status == 200
    assert page.text.count("the queue runs dry") == 1
    assert page.text.count("Nothing to send at") == 1 and "ticks after it" in page.text


def test_parallel_cadence_saves_all_succeed_and_keep_the_file_whole(web):
    """20 saves at once (security point 5: one temporary name per process, shared by the
    server's threads, answered 500 with FileNotFoundError): each save holds the lock, writes
    its own temporary file, and the file keeps its mode."""
    import os
    import stat
    import threading
    import tomllib

    config = web.settings.root / "newsletter.toml"
    config.chmod(0o640)
    signed_in = Browser(web)
    assert signed_in.sign_in().status == 303
    token = csrf_of(signed_in.get("/admin/schedule"))
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    start = threading.Barrier(20)
    replies: dict[int, Reply] = {}

    def save(i: int) -> None:
        browser = Browser(web)
        browser.cookies = dict(signed_in.cookies)
        fields = {
            "csrf_token": token,
            f"day_{days[i % 7]}": "1",
            "time": f"{i:02d}:30",
            "articles_per_issue": str(i % 5 + 1),
        }
        start.wait()
        replies[i] = browser.post("/admin/schedule", fields)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(replies) == list(range(20))
    assert {i: r.status for i, r in replies.items()} == {i: 303 for i in range(20)}
    written = tomllib.loads(config.read_text(encoding="utf-8"))["schedule"]
    # One of the 20 saves, whole: its day, time and count belong together.
    i = int(written["time"][:2])
    assert written == {**written, "days": [days[i % 7]], "articles_per_issue": i % 5 + 1}
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert not [p for p in os.listdir(config.parent) if p.endswith(".tmp")]


def test_the_cadence_form_refuses_a_huge_count(web):
    """Security point 8: a 400-digit articles_per_issue was written to newsletter.toml."""
    config = web.settings.root / "newsletter.toml"
    before = config.read_text(encoding="utf-8")
    browser = Browser(web)
    assert browser.sign_in().status == 303
    token = csrf_of(browser.get("/admin/schedule"))
    for count in ("9" * 400, "51"):
        reply = browser.post(
            "/admin/schedule",
            {"csrf_token": token, "day_mon": "1", "time": "09:00", "articles_per_issue": count},
        )
        assert reply.status == 400 and "[schedule] articles_per_issue" in reply.text
    assert config.read_text(encoding="utf-8") == before
