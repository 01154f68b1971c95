"""The workspace's SQL on both backends (a SQLite file, then a throwaway PostgreSQL): editor
rows, the fixed-window counters behind sign-in throttling, the per-hour engagement upserts,
alert claims, queue moves and subscriber search."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newsletter.editors import add_editor, editor_for_session, remove_editor, start_session
from newsletter.exceptions import NewsletterError, NotFound
from newsletter.store import Store
from newsletter.subscribers import signing_secret
from newsletter.tokens import new_token
from newsletter.web.admin.session import PAIR_LIMIT, LoginThrottle


@pytest.fixture
def db(database_url):
    store = Store(database_url)
    yield store
    store.close()


def test_editor_rows(db):
    editor = add_editor(db, "Ed@Example.com", "correct horse battery", "Europe/Paris")
    assert db.editors.by_email("ed@example.com").id == editor.id
    with pytest.raises(NewsletterError, match="already exists"):
        add_editor(db, "ed@EXAMPLE.com", "correct horse battery")
    assert [e.email for e in db.editors.all()] == ["Ed@example.com"]
    remove_editor(db, "ED@example.com")
    with pytest.raises(NotFound):
        remove_editor(db, "ed@example.com")


def test_throttle_counters_are_shared_through_the_database(db, database_url):
    first, second = LoginThrottle(db), LoginThrottle(Store(database_url))  # two processes
    for _ in range(PAIR_LIMIT.amount - 1):
        first.failed("ed@example.com", "10.0.0.1")
    assert second.check("ed@example.com", "10.0.0.1").allowed
    second.failed("ed@example.com", "10.0.0.1")
    refused = first.check("ed@example.com", "10.0.0.1")
    assert not refused.allowed and refused.retry_after > 0
    # Another client, for the same account, is only slowed down; another account is free.
    other = first.check("ed@example.com", "10.0.0.3")
    assert other.allowed and other.delay > 0
    assert first.check("other@example.com", "10.0.0.1") == first.check("x@example.com", "a")
    second.succeeded("ed@example.com", "10.0.0.1")
    assert first.check("ed@example.com", "10.0.0.1").allowed


def test_sessions_are_rows_that_end_with_the_account_and_ids_are_not_reused(db):
    editor = add_editor(db, "ed@example.com", "correct horse battery")
    session = start_session(db, editor)
    assert editor_for_session(db, session) == editor
    remove_editor(db, "ed@example.com")
    assert editor_for_session(db, session) is None and db.editors.sessions_of(editor.id) == 0
    again = add_editor(db, "ed@example.com", "correct horse battery")
    assert again.id != editor.id and editor_for_session(db, session) is None


def test_engagement_hours_add_up_and_alerts_are_claimed_once(db):
    hour = datetime(2026, 11, 27, 9, tzinfo=UTC)
    db.engagement.add_hours([(7, "open", hour, 2), (7, "click", hour, 1)])
    db.engagement.add_hours([(7, "open", hour, 3)])
    assert sorted(db.engagement.series(7)) == [("click", hour, 1), ("open", hour, 5)]
    assert db.alerts.claim("paused:1") is True
    assert db.alerts.claim("paused:1") is False
    db.alerts.release("paused:1")
    assert db.alerts.claim("paused:1") is True


def test_queue_moves_and_search(db):
    for name in ("a.md", "b.md", "c.md"):
        db.articles.add_article(name, name, None)
    assert db.articles.swap_with_neighbour("c.md", up=True)
    assert not db.articles.swap_with_neighbour("a.md", up=True)
    assert [a.filename for a in db.articles.queued()] == ["a.md", "c.md", "b.md"]

    secret = signing_secret(db)
    db.subscribers.add(
        {"email": f"Reader{i:03d}@example.com", "name": f"Zoë {i:03d}", "token": new_token(secret)}
        for i in range(30)
    )
    page = db.subscribers.search("reader01", limit=5)
    assert [r.email for r in page.rows] == [f"Reader{i:03d}@example.com" for i in range(10, 15)]
    rest = db.subscribers.search("reader01", after=page.next_cursor, limit=5)
    assert [r.email for r in rest.rows] == [f"Reader{i:03d}@example.com" for i in range(15, 20)]
    named = db.subscribers.search("zoë 02", field="name", limit=100)
    assert [r.name for r in named.rows] == [f"Zoë {i:03d}" for i in range(20, 30)]
