"""Migration 0014 turns per-recipient delivery rows into batches and exceptions without losing
an answer: a database is made at the revision before it by the delivery log as it was (tests/
legacy_deliveries.py, the code of that time, unchanged) with sent, refused, uncertain,
event-settled, failed, skipped, released, in-flight and unclaimed rows; every question is
asked, the database migrated, and asked again -- on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic.script import ScriptDirectory
from sqlalchemy import func, select

from newsletter import migrations
from newsletter.delivery import recover_in_flight
from newsletter.records import DeliveryState, RenderedIssue, SubscriberStatus
from newsletter.store import Store
from newsletter.store.schema import deliveries, delivery_batches
from tests.conftest import delivery_policy
from tests.legacy_deliveries import Deliveries as LegacyDeliveries
from tests.pg import database_url, fresh_postgres_url, postgres_url  # noqa: F401

STATES = tuple(DeliveryState)
# The revision migration 0014 follows: the schema the old delivery log ran on.
BEFORE = ScriptDirectory.from_config(migrations._config()).get_revision("0014").down_revision
LISTED = ("uncertain", "failed", "sent", "in_flight", "pending")


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


def answers(store: Store, issues: list[int]) -> dict:
    """Every question the product asks the delivery log, per issue."""
    found: dict = {}
    for issue_id in issues:
        log = store.deliveries
        found[issue_id] = {
            "counts": log.counts(issue_id),
            "total": log.total(issue_id),
            "finished": log.counts_in_states(issue_id, ["failed", "uncertain", "skipped"]),
            "by_worker": log.sent_by_worker(issue_id),
            "sent_emails": sorted(log.sent_emails(issue_id)),
            "uncertain_page": [r.email for r in log.in_state(issue_id, "uncertain", 3)],
            "claims": sorted((w or "-", t) for w, t in log.in_flight_claims(issue_id)),
            **{
                state: [
                    (r.subscriber_id, r.email, r.batch, r.worker, r.error, r.message_id)
                    for r in log.in_state(issue_id, state)
                ]
                for state in LISTED
            },
        }
    found["sent_since"] = store.deliveries.sent_since(datetime.now(UTC) - timedelta(days=1))
    found["attention"] = [(a.issue_id, a.uncertain) for a in store.issues.issues_needing_editors()]
    return found


def build_legacy(store: Store) -> tuple[list[int], dict[str, int]]:
    """Two issues written by the old delivery log through the calls the sender made."""
    old = LegacyDeliveries(store)
    store.deliveries = old  # type: ignore[assignment]  # issues.create_issue plans through it
    rows = [
        {"email": f"r{i:03d}@example.com", "name": f"R {i}", "token": f"t{i}"} for i in range(90)
    ]
    store.subscribers.add(rows)
    store.subscribers.add(
        [{"email": "later@example.com", "name": "U", "token": "tu", "status": "unconfirmed"}]
    )
    ids = {s.email: s.id for s in store.subscribers.each()}
    first = store.issues.create_issue(rendered("first"), [], None)
    second = store.issues.create_issue(rendered("second"), [], None)

    def emails(batch):
        return [r.subscriber_id for r in batch.recipients]

    # first: sent with one id; sent with two refused; uncertain with three settled by events;
    # failed for good; two who left before their batch; per-recipient ids (the outbox);
    # released for a retry; one uncertain put back by the editor; in flight at a crash; the
    # rest never claimed.
    b1 = old.claim(first, 10, worker="host:1:a")
    old.mark_sent(b1, "msg-1")
    b2 = old.claim(first, 10, worker="host:1:a")
    old.fail(b2, {emails(b2)[0]: "550 no such user", emails(b2)[3]: "invalid address"})
    old.mark_sent(b2, "msg-2")
    b3 = old.claim(first, 10, worker="host:2:b")
    old.mark(b3, "uncertain", "connection lost")
    with store.transaction() as conn:
        old.confirm_uncertain(conn, {(first, sid) for sid in emails(b3)[:3]}, datetime.now(UTC))
    b4 = old.claim(first, 10, worker="host:2:b")
    old.mark(b4, "failed", "rejected: bad template", retryable=False)
    store.subscribers.suppress("r041@example.com", SubscriberStatus.UNSUBSCRIBED)
    store.subscribers.suppress("r045@example.com", SubscriberStatus.BOUNCED)
    b5 = old.claim(first, 10, worker="host:1:a")
    old.mark_sent(b5, {sid: f"<m{sid}@x>" for sid in emails(b5)})
    b6 = old.claim(first, 10, worker="host:1:a")
    old.release(b6, error="429 too many requests")
    old.settle(first, "uncertain", "pending", [emails(b3)[5]])
    b7 = old.claim(first, 5, worker="host:1:a")  # takes the released rows first
    old.mark_sent(b7, "msg-7")
    old.claim(first, 10, worker="dead-host:9:z", after=b6.last_id)  # in flight at the crash
    # second: everyone sent through the outbox, one removed afterwards.
    while batch := old.claim(second, 25, worker="host:3:c"):
        old.mark_sent(batch, {sid: f"<n{sid}@x>" for sid in emails(batch)})
    store.subscribers.remove("r089@example.com")
    store.subscribers.add([{"email": "new@example.com", "name": "N", "token": "tn"}])
    return [first, second], ids


def test_the_migration_keeps_every_answer(database_url):  # noqa: F811
    store = Store(database_url, create=False)
    migrations.upgrade(store.engine, BEFORE)
    issues, ids = build_legacy(store)
    before = answers(store, issues)
    assert before[issues[0]]["counts"]["skipped"] == 2  # the scenario has each kind of row
    assert before[issues[0]]["counts"]["pending"] > 0 and before[issues[0]]["in_flight"]
    store.close()

    store = Store(database_url)  # migrates to head
    assert migrations.current_revision(store.engine) == migrations.head_revision()
    after = answers(store, issues)
    for key in before:
        assert after[key] == before[key], key
    with store.engine.connect() as conn:
        kept = conn.scalar(select(func.count()).select_from(deliveries))
        batches = conn.scalar(select(func.count()).select_from(delivery_batches))
    # Rows of their own: 2 refused, 3 settled by an event, the 5 of the retry that took the
    # put-back recipient and 4 released ones (scattered over earlier batches), the 6 released
    # ones still waiting; and each recipient's own message id of the outbox-like batches
    # (8 in the first issue; 87 in the second, whose 2 who left are skipped).
    assert kept == 16 + 8 + 87 and batches == 6 + 4  # first: 6 claims kept whole; second: 4

    # The migrated log goes on as the old one would have: the crashed batch becomes uncertain,
    # and the claims send exactly the rows that were pending, once.
    first = issues[0]
    caught = {r[1] for r in before[first]["in_flight"]}
    policy = delivery_policy(claim_timeout=timedelta(seconds=0), concurrency=1)
    assert recover_in_flight(store.deliveries, first, policy) == len(caught)
    assert {r.email for r in store.deliveries.in_state(first, "uncertain")} == caught | {
        r[1] for r in before[first]["uncertain"]
    }
    claimed = []
    while batch := store.deliveries.claim(first, 7, worker="next"):
        claimed += [r.email for r in batch.recipients]
        store.deliveries.mark_sent(batch, "msg-next")
    assert sorted(claimed) == sorted(r[1] for r in before[first]["pending"])
    assert "new@example.com" not in claimed  # joined after planning
    # An event still settles one uncertain recipient of the old issue by issue + subscriber.
    uncertain = before[first]["uncertain"][0][0]
    with store.transaction() as conn:
        assert (
            store.deliveries.confirm_uncertain(conn, {(first, uncertain)}, datetime.now(UTC)) == 1
        )
    assert uncertain in {r.subscriber_id for r in store.deliveries.in_state(first, "sent")}
    store.close()
