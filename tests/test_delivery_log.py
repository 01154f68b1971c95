"""The delivery log keeps batches, not recipients (issue 22): planning writes a definition, a
claim one batch row, a recipient a row of their own only where their story differs from their
batch's -- and every answer stays exact. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from newsletter.records import RenderedIssue, SubscriberStatus
from newsletter.store import Store
from newsletter.store.deliveries import decode_excluded, encode_excluded
from newsletter.store.schema import deliveries, delivery_batches, delivery_plans
from tests.pg import database_url, fresh_postgres_url, postgres_url  # noqa: F401


def rendered(slug: str) -> RenderedIssue:
    return RenderedIssue(
        slug=slug,
        subject=slug,
        preheader="p",
        html="<p>x</p>",
        text="x",
        archive_html="<p>x</p>",
        placeholder_nonce="n0nce",
        view_url="",
    )


def rows(store: Store, table) -> int:
    with store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(table)) or 0


def readers(store: Store, count: int, start: int = 0) -> None:
    store.subscribers.add(
        {"email": f"r{i:05d}@example.com", "name": f"R {i}", "token": f"tok{i}"}
        for i in range(start, start + count)
    )


def test_planning_writes_a_definition_and_a_sent_issue_a_row_per_batch(database_url):  # noqa: F811
    store = Store(database_url)
    readers(store, 5000)
    issue = store.issues.create_issue(rendered("one"), [], None)
    assert rows(store, deliveries) == 0 and rows(store, delivery_batches) == 0
    assert rows(store, delivery_plans) == 1
    assert store.deliveries.counts(issue)["pending"] == 5000
    readers(store, 3, start=5000)  # joined after planning: not in this issue
    while batch := store.deliveries.claim(issue, 1000, worker="w"):
        store.deliveries.mark_sent(batch, "msg")
    counts = store.deliveries.counts(issue)
    assert counts["sent"] == 5000 and sum(counts.values()) == 5000
    assert rows(store, delivery_batches) == 5 and rows(store, deliveries) == 0
    assert "r05000@example.com" not in store.deliveries.sent_emails(issue)
    assert store.deliveries.sent_by_worker(issue) == {"w": 5000}
    store.close()


def test_who_left_before_their_batch_is_skipped_and_the_rest_exact(database_url):  # noqa: F811
    store = Store(database_url)
    readers(store, 30)
    store.subscribers.suppress("r00003@example.com", SubscriberStatus.UNSUBSCRIBED)  # before
    issue = store.issues.create_issue(rendered("one"), [], None)
    store.subscribers.suppress("r00012@example.com", SubscriberStatus.BOUNCED)  # after planning
    first = store.deliveries.claim(issue, 10, worker="w")
    second = store.deliveries.claim(issue, 10, worker="w")
    assert len(first.recipients) == len(second.recipients) == 10
    got = {r.email for r in first.recipients + second.recipients}
    assert "r00003@example.com" not in got and "r00012@example.com" not in got
    counts = store.deliveries.counts(issue)
    assert counts["skipped"] == 1 and counts["in_flight"] == 20 and counts["pending"] == 8
    # One refused, the rest of that batch sent with the batch's id.
    refused = first.recipients[4].subscriber_id
    assert store.deliveries.fail(first, {refused: "550 no such user"}) == 1
    assert store.deliveries.mark_sent(first, "msg-1") == 9
    store.deliveries.mark(second, "uncertain", "connection lost")
    [failed] = store.deliveries.in_state(issue, "failed")
    assert (failed.subscriber_id, failed.error) == (refused, "550 no such user")
    assert len(store.deliveries.in_state(issue, "sent")) == 9
    assert [r.batch for r in store.deliveries.in_state(issue, "uncertain", 3)] == [2, 2, 2]
    # The editor resends one uncertain recipient: claimed alone once the audience's ranges
    # are all claimed, the others stay uncertain.
    one = second.recipients[0].subscriber_id
    assert store.deliveries.settle(issue, "uncertain", "pending", [one]) == 1
    rest = store.deliveries.claim(issue, 10, worker="w")
    assert len(rest.recipients) == 8 and one not in {r.subscriber_id for r in rest.recipients}
    store.deliveries.mark_sent(rest, "msg-3")
    alone = store.deliveries.claim(issue, 10, worker="w")
    assert [r.subscriber_id for r in alone.recipients] == [one]
    store.deliveries.mark_sent(alone, "msg-again")
    assert store.deliveries.claim(issue, 10, worker="w") is None
    counts = store.deliveries.counts(issue)
    assert counts["uncertain"] == 9 and counts["sent"] == 18 and counts["failed"] == 1
    # An event confirms one more by issue and subscriber.
    two = second.recipients[1].subscriber_id
    with store.transaction() as conn:
        assert store.deliveries.confirm_uncertain(conn, {(issue, two)}, datetime.now(UTC)) == 1
    assert store.deliveries.counts(issue)["uncertain"] == 8
    # A removed subscriber leaves the counts, claimed or not.
    store.subscribers.remove(second.recipients[5].email)
    store.subscribers.remove("r00029@example.com")
    counts = store.deliveries.counts(issue)
    assert counts["uncertain"] == 7 and counts["sent"] == 18 and sum(counts.values()) == 27
    store.close()


def test_a_released_batch_claimed_with_a_smaller_size_is_cut_in_two(database_url):  # noqa: F811
    store = Store(database_url)
    readers(store, 40)
    issue = store.issues.create_issue(rendered("one"), [], None)
    batch = store.deliveries.claim(issue, 40, worker="w")
    store.deliveries.release(batch, "413 too large")
    halves = [store.deliveries.claim(issue, 20, worker="w") for _ in range(2)]
    assert [len(h.recipients) for h in halves] == [20, 20]
    assert {r.subscriber_id for h in halves for r in h.recipients} == {
        r.subscriber_id for r in batch.recipients
    }
    assert store.deliveries.claim(issue, 20, worker="w") is None
    assert store.deliveries.counts(issue)["in_flight"] == 40
    store.close()


def test_excluded_ids_round_trip():
    assert encode_excluded(100, [103, 117, 118, 119, 130]) == "3,17-19,30"
    assert decode_excluded(100, "3,17-19,30") == [(103, 103), (117, 119), (130, 130)]
    assert encode_excluded(5, []) == "" and decode_excluded(5, "") == []
