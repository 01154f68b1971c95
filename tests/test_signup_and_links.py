"""Sign-up abuse limits and links that outlive key changes, over real HTTP (a live uvicorn
server on 127.0.0.1, real SQLite files, the outbox provider) and the real `newsletter` CLI."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from limits import parse
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import update

from newsletter.records import SubscriberStatus, utcnow
from newsletter.resources import sample_articles
from newsletter.settings import load_settings, write_default_config
from newsletter.store import Store
from newsletter.store.schema import subscribers
from newsletter.subscribers import add_subscriber
from newsletter.web.confirm import confirmation_path
from newsletter.web.ratelimit import DatabaseStorage
from tests.conftest import run_cli, write
from tests.test_web import (
    FORM,
    ONE_CLICK,
    SAMPLE_ARTICLES,
    LiveWeb,
    read_eml,
    serve_folder,
    wait_for,
)

ARTICLES = [p.name for p in sample_articles()]
ACTIVE, UNCONFIRMED, UNSUBSCRIBED = (
    SubscriberStatus.ACTIVE,
    SubscriberStatus.UNCONFIRMED,
    SubscriberStatus.UNSUBSCRIBED,
)


@pytest.fixture
def web(tmp_path, monkeypatch) -> Iterator[LiveWeb]:
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    write_default_config(tmp_path)
    with serve_folder(tmp_path) as live:
        yield live


def confirmations(settings) -> list[Path]:
    return sorted((settings.outbox_path / "confirmations").glob("*.eml"))


def settle(settings, expected: int) -> list[Path]:
    """Confirmations are written after the answer (a background task): wait for `expected`,
    then a moment more, so an extra one would show."""
    deadline = time.monotonic() + 5
    while len(confirmations(settings)) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    return confirmations(settings)


# --------------------------------------------------------------------------- key rotation


def unsubscribe_token(eml: Path) -> str:
    header = read_eml(eml)["List-Unsubscribe"]
    match = re.search(r"/unsubscribe/([^>\s,]+)>", header)
    assert match, header
    return match.group(1)


def test_links_keep_working_when_the_key_is_set_and_then_rotated(tmp_path, monkeypatch):
    """Send, set a key, send, rotate to a new key, send: every link of every issue still
    unsubscribes with one click, and each change of key is announced without the key."""
    first, second = "first-key-0123456789abcdef", "second-key-fedcba9876543210"
    phases = [("ann", None), ("bob", first), ("carl", f"{second},{first}")]
    assert run_cli(["init", "."], tmp_path).returncode == 0
    outputs = []
    for (name, key), article in zip(phases, ARTICLES, strict=True):
        env = {"NEWSLETTER_SECRET_KEY": key} if key else {}
        write(tmp_path / f"{name}.csv", f"email,name\n{name}@example.com,{name.title()}\n")
        outputs.append(run_cli(["subscribers", "import", f"{name}.csv"], tmp_path, env))
        assert outputs[-1].returncode == 0, outputs[-1].stderr
        queued = run_cli(["queue", "add", str(SAMPLE_ARTICLES / article)], tmp_path, env)
        assert queued.returncode == 0, queued.stderr
        sent = run_cli(["run", "--once"], tmp_path, env)
        assert sent.returncode == 0 and "sent" in sent.stdout, sent.stdout + sent.stderr
        outputs.append(sent)
    assert "NEWSLETTER_SECRET_KEY changed" in outputs[2].stderr  # first key set
    assert "NEWSLETTER_SECRET_KEY changed" in outputs[4].stderr  # rotated
    # Dropping a key that signed links is announced by its fingerprint, never its value.
    write(tmp_path / "dora.csv", "email,name\ndora@example.com,Dora\n")
    dropped = run_cli(
        ["subscribers", "import", "dora.csv"], tmp_path, {"NEWSLETTER_SECRET_KEY": second}
    )
    assert dropped.returncode == 0 and "no longer lists key" in dropped.stderr
    for out in [*outputs, dropped]:
        assert first not in out.stdout + out.stderr and second not in out.stdout + out.stderr

    issues = sorted((tmp_path / "outbox").glob("issue-*"))
    assert len(issues) == 3
    store = Store(load_settings(tmp_path / "newsletter.toml", env={}).database_url)
    ids = {n: store.subscribers.by_email(f"{n}@example.com").id for n, _ in phases}
    store.close()

    def link(issue: Path, name: str) -> str:
        return unsubscribe_token(issue / f"{ids[name]:08d}.eml")

    assert link(issues[0], "ann") == link(issues[2], "ann")  # a subscriber's link is stable
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", f"{second},{first}")
    with serve_folder(tmp_path) as live:
        # ann's link was signed with the database's key, bob's with the first, carl's with the
        # second: all three still unsubscribe.
        for issue, name in [(issues[0], "ann"), (issues[1], "bob"), (issues[2], "carl")]:
            reply = live.request("POST", f"/unsubscribe/{link(issue, name)}", ONE_CLICK, FORM)
            assert reply.status == 200, (name, reply.status)
            assert live.store.subscribers.by_email(f"{name}@example.com").status == UNSUBSCRIBED
        assert live.store.subscribers.by_email("dora@example.com").status == ACTIVE


# --------------------------------------------------------------------------- sign-up abuse


def test_one_mailbox_gets_one_confirmation_whatever_the_spelling(web):
    for address in [
        "victim+1@example.com",
        "victim+2@example.com",
        "Victim@Example.com",
        "VICTIM+news@example.com",
    ]:
        reply = web.post_form("/subscribe", {"email": address, "name": ""})
        assert reply.status == 200 and "Check your inbox" in reply.text
    assert len(settle(web.settings, 1)) == 1


def test_the_confirmation_email_carries_nothing_the_visitor_wrote(web):
    words = "Win a prize at http://evil.example/claim now"
    reply = web.post_form("/subscribe", {"email": "nina@example.com", "name": words})
    assert reply.status == 200
    row = web.store.subscribers.by_email("nina@example.com")
    eml = wait_for(confirmation_path(web.settings, row.id))
    raw = eml.read_bytes()
    assert b"evil" not in raw and b"prize" not in raw
    assert read_eml(eml)["To"].addresses[0].display_name == ""
    assert row.name == words  # kept for the issues, once confirmed


def test_one_client_address_is_limited(web):
    for i in range(10):
        reply = web.post_form("/subscribe", {"email": f"reader{i}@example{i}.com", "name": ""})
        assert reply.status == 200, i
    refused = web.post_form("/subscribe", {"email": "one-more@example.org", "name": ""})
    assert refused.status == 429 and refused.headers["Retry-After"] == "3600"
    assert "Too many sign-ups" in refused.text
    assert web.store.subscribers.by_email("one-more@example.org") is None


def test_sign_up_stores_the_same_address_as_an_import_would(web):
    reply = web.post_form("/subscribe", {"email": "Nia@Bücher.example", "name": ""})
    assert reply.status == 200
    row = web.store.subscribers.by_email("nia@xn--bcher-kva.example")
    assert row is not None and row.email == "Nia@xn--bcher-kva.example"
    eml = wait_for(confirmation_path(web.settings, row.id))
    assert read_eml(eml)["To"].addresses[0].addr_spec == "Nia@xn--bcher-kva.example"


def test_the_hourly_cap_is_shared_by_several_serve_processes(tmp_path):
    assert run_cli(["init", "."], tmp_path).returncode == 0
    limits = {"per_hour": "3/hour", "per_client": "100/hour"}
    with serve_folder(tmp_path, limits=limits) as one, serve_folder(tmp_path, limits=limits) as two:
        for i in range(6):
            server = one if i % 2 else two
            reply = server.post_form("/subscribe", {"email": f"r{i}@example.com", "name": ""})
            assert reply.status == 200
        assert len(settle(one.settings, 3)) == 3
        assert one.store.subscribers.count(UNCONFIRMED) == 6


def test_the_limit_counters_are_atomic_on_both_backends(database_url):
    """Several processes' stores hammering one counter: exactly `limit` hits pass."""
    stores = [Store(database_url), Store(database_url)]
    try:
        limiters = [FixedWindowRateLimiter(DatabaseStorage(s)) for s in stores]
        item = parse("30/hour")
        passed: list[bool] = []

        def hammer(limiter: FixedWindowRateLimiter) -> None:
            for _ in range(10):
                passed.append(limiter.hit(item, "shared"))

        threads = [threading.Thread(target=hammer, args=(limiters[i % 2],)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert passed.count(True) == 30 and len(passed) == 50
        assert limiters[1].get_window_stats(item, "shared").remaining == 0
        limiters[0].clear(item, "shared")
        assert limiters[1].test(item, "shared")
    finally:
        for s in stores:
            s.close()


def test_unconfirmed_sign_ups_expire(web):
    reply = web.post_form("/subscribe", {"email": "stale@example.com", "name": ""})
    assert reply.status == 200
    old_reader = add_subscriber(web.store, "reader@example.com", "Reader")
    long_ago = utcnow() - timedelta(hours=49)
    with web.store.engine.begin() as conn:
        conn.execute(
            update(subscribers)
            .where(subscribers.c.email_key.in_(["stale@example.com", "reader@example.com"]))
            .values(created_at=long_ago)
        )
    assert web.post_form("/subscribe", {"email": "fresh@example.com", "name": ""}).status == 200
    assert web.store.subscribers.by_email("stale@example.com") is None
    assert web.store.subscribers.by_email("fresh@example.com").status == UNCONFIRMED
    assert web.store.subscribers.by_email("reader@example.com").id == old_reader.id


@pytest.mark.parametrize("host", ["2001:db8::1", "2001:db8::2"])
def test_ipv6_clients_are_counted_by_their_64(host):
    from newsletter.web.ratelimit import client_key

    assert client_key(host) == "2001:db8::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("192.0.2.1") == "192.0.2.1"
