"""The workspace's SQL on both backends (a SQLite file, then a throwaway PostgreSQL): editor
rows, the fixed-window counters behind sign-in throttling, the per-hour engagement upserts,
alert claims, queue moves and subscriber search."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newsletter.editors import add_editor, remove_editor
from newsletter.exceptions import NewsletterError, NotFound
from newsletter.store import Store
from newsletter.subscribers import signing_secret
from newsletter.tokens import new_token
from newsletter.web.admin.session import ACCOUNT_LIMIT, LoginThrottle


@pytest.fixture
def db(database_url):
    store = Store(database_url)
    yield store
    store.close()


def test_editor_rows(db):
    editor = add_editor(db, "Ed@Example.com", "correct horse battery", "Europe/Paris")
    assert db.workspace.editor_by_email("ed@example.com").id == editor.id
    with pytest.raises(NewsletterError, match="already exists"):
        add_editor(db, "ed@EXAMPLE.com", "correct horse battery")
    assert [e.email for e in db.workspace.all_editors()] == ["Ed@example.com"]
    remove_editor(db, "ED@example.com")
    with pytest.raises(NotFound):
        remove_editor(db, "ed@example.com")


def test_throttle_counters_are_shared_through_the_database(db, database_url):
    first, second = LoginThrottle(db), LoginThrottle(Store(database_url))  # two processes
    for _ in range(ACCOUNT_LIMIT.amount - 1):
        first.failed("ed@example.com", "10.0.0.1")
    assert second.allowed("ed@example.com", "10.0.0.2")
    second.failed("ed@example.com", "10.0.0.2")
    assert not first.allowed("ed@example.com", "10.0.0.3")
    assert first.retry_after("ed@example.com", "10.0.0.3") > 0
    assert first.allowed("other@example.com", "10.0.0.1")
    second.succeeded("ed@example.com")
    assert first.allowed("ed@example.com", "10.0.0.3")


def test_engagement_hours_add_up_and_alerts_are_claimed_once(db):
    hour = datetime(2026, 11, 27, 9, tzinfo=UTC)
    db.workspace.add_engagement_hours([(7, "open", hour, 2), (7, "click", hour, 1)])
    db.workspace.add_engagement_hours([(7, "open", hour, 3)])
    assert sorted(db.workspace.engagement_series(7)) == [("click", hour, 1), ("open", hour, 5)]
    assert db.workspace.claim_alert("paused:1") is True
    assert db.workspace.claim_alert("paused:1") is False
    db.workspace.release_alert("paused:1")
    assert db.workspace.claim_alert("paused:1") is True


def test_queue_moves_and_search(db):
    for name in ("a.md", "b.md", "c.md"):
        db.articles.add_article(name, name, None)
    assert db.workspace.swap_with_neighbour("c.md", up=True)
    assert not db.workspace.swap_with_neighbour("a.md", up=True)
    assert [a.filename for a in db.articles.queued()] == ["a.md", "c.md", "b.md"]

    secret = signing_secret(db)
    db.subscribers.add(
        {"email": f"Reader{i:03d}@example.com", "name": f"Zoë {i:03d}", "token": new_token(secret)}
        for i in range(30)
    )
    page = db.workspace.search_subscribers("reader01", limit=5)
    assert [r.email for r in page.rows] == [f"Reader{i:03d}@example.com" for i in range(10, 15)]
    rest = db.workspace.search_subscribers("reader01", after=page.next_cursor, limit=5)
    assert [r.email for r in rest.rows] == [f"Reader{i:03d}@example.com" for i in range(15, 20)]
    named = db.workspace.search_subscribers("zoë 02", field="name", limit=100)
    assert [r.name for r in named.rows] == [f"Zoë {i:03d}" for i in range(20, 30)]
