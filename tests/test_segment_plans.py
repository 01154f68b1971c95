"""A segmented issue keeps the batch log's storage (issue 22): its plan is a definition -- the
segment, its relative ages anchored at planning, and the highest id -- evaluated at each
claim, never a pending row per reader. Exactly once, readers who stop matching or pause
mid-send skipped and counted. On SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
from datetime import time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from newsletter import segments
from newsletter.readertime import ReaderTime
from newsletter.records import SubscriberStatus, utcnow
from newsletter.segment_syntax import anchored, parse, to_text
from newsletter.store import Store
from newsletter.store.deliveries.rows import BatchRow, decode_excluded, encode_members
from newsletter.store.schema import deliveries, delivery_batches, delivery_plans, subscribers
from tests.pg import database_url, fresh_postgres_url, postgres_url  # noqa: F401
from tests.test_delivery_log import readers, rendered, rows


def tag_every(store: Store, tag: str, step: int, count: int) -> set[str]:
    """Tag every `step`-th of the `count` readers; their addresses."""
    emails = {f"r{i:05d}@example.com" for i in range(0, count, step)}
    store.tags.tag(emails, tag)
    return emails


def plan_row(store: Store, issue_id: int):
    with store.engine.connect() as conn:
        return conn.execute(
            select(delivery_plans).where(delivery_plans.c.issue_id == issue_id)
        ).one()


def send_all(store: Store, issue_id: int, size: int = 50, **claim) -> list[str]:
    sent: list[str] = []
    while batch := store.deliveries.claim(issue_id, size, worker="w", **claim):
        sent += [r.email for r in batch.recipients]
        store.deliveries.mark_sent(batch, "msg")
    return sent


def test_a_segmented_issue_writes_no_reader_rows_and_sends_each_once(database_url):  # noqa: F811
    store = Store(database_url)
    readers(store, 1000)
    films = tag_every(store, "films", 3, 1000)
    store.tags.tag({"r00001@example.com"}, "series")
    segment = segments.audience(store, "tag:films and not tag:series")
    issue = store.issues.create_issue(rendered("one"), [], None, segment=segment)
    assert rows(store, deliveries) == 0 and rows(store, delivery_batches) == 0
    plan = plan_row(store, issue)
    assert plan.expression == "tag:films and not tag:series" and plan.size == len(films)
    assert store.deliveries.counts(issue)["pending"] == len(films)
    assert len(store.deliveries.in_state(issue, "pending")) == len(films)
    sent = send_all(store, issue)
    assert sorted(sent) == sorted(films) and len(set(sent)) == len(sent)
    counts = store.deliveries.counts(issue)
    assert counts["sent"] == len(films) and sum(counts.values()) == len(films)
    assert set(store.deliveries.sent_emails(issue)) == films
    assert rows(store, deliveries) == 0  # still nothing per reader
    assert rows(store, delivery_batches) == -(-len(films) // 50)
    store.close()


def test_who_stops_matching_or_pauses_mid_send_is_skipped_and_counted(database_url):  # noqa: F811
    store = Store(database_url)
    readers(store, 60)
    films = tag_every(store, "films", 2, 60)  # r00000, r00002, ... r00058: 30 readers
    paused_before = "r00004@example.com"  # paused at planning: never of the audience
    store.subscribers.pause(store.subscribers.by_email(paused_before).id, utcnow() + timedelta(1))
    issue = store.issues.create_issue(
        rendered("one"), [], None, segment=segments.audience(store, "tag:films")
    )
    assert plan_row(store, issue).size == 29
    first = store.deliveries.claim(issue, 10, worker="w")
    store.deliveries.mark_sent(first, "msg-1")
    # Mid-send, after the first batch: one untagged, one paused, one unsubscribed, and one
    # who never matched retagged (not of the audience: not counted).
    store.tags.untag({"r00040@example.com"}, "films")
    paused = store.subscribers.by_email("r00042@example.com").id
    store.subscribers.pause(paused, utcnow() + timedelta(days=28))
    store.subscribers.suppress("r00044@example.com", SubscriberStatus.UNSUBSCRIBED)
    store.tags.tag({"r00041@example.com"}, "series")
    rest = send_all(store, issue, 10)
    gone = {"r00040@example.com", "r00042@example.com", "r00044@example.com"}
    assert not gone & set(rest) and paused_before not in rest
    sent = [r.email for r in first.recipients] + rest
    assert sorted(sent) == sorted(films - gone - {paused_before})
    counts = store.deliveries.counts(issue)
    assert counts["skipped"] == 3 and counts["sent"] == 26
    assert sum(counts.values()) == 29
    store.close()


def test_a_reader_paused_at_claim_is_skipped_in_a_plain_issue_too(database_url):  # noqa: F811
    """No segment, a pause mid-send: the plan is still a definition (no rows at planning),
    the paused reader is skipped and counted, and sent nothing."""
    store = Store(database_url)
    readers(store, 20)
    store.subscribers.pause(
        store.subscribers.by_email("r00001@example.com").id, utcnow() + timedelta(1)
    )
    issue = store.issues.create_issue(rendered("one"), [], None)
    assert rows(store, deliveries) == 0 and plan_row(store, issue).size == 19
    store.subscribers.pause(
        store.subscribers.by_email("r00015@example.com").id, utcnow() + timedelta(1)
    )
    sent = send_all(store, issue, 5)
    assert "r00001@example.com" not in sent and "r00015@example.com" not in sent
    counts = store.deliveries.counts(issue)
    assert (counts["sent"], counts["skipped"], sum(counts.values())) == (18, 1, 19)
    store.close()


def test_a_relative_segment_is_resolved_at_planning(database_url):  # noqa: F811
    store = Store(database_url)
    readers(store, 4)
    now = utcnow().replace(microsecond=0)
    joined = {0: now - timedelta(days=40), 1: now - timedelta(days=29), 2: now - timedelta(days=3)}
    with store.engine.begin() as conn:
        for n, at in joined.items():
            conn.execute(
                update(subscribers)
                .where(subscribers.c.email == f"r{n:05d}@example.com")
                .values(created_at=at)
            )
    issue = store.issues.create_issue(
        rendered("one"), [], None, segment="joined<30d", planned_at=now
    )
    stamp = now.isoformat().replace("+00:00", "Z")
    assert plan_row(store, issue).expression == f"joined<30d@{stamp}"
    assert plan_row(store, issue).size == 3  # r1, r2 and r3 (joined just now)
    # Sent five days later: r1 joined 34 days before then, yet was in the audience planned.
    sent = send_all(store, issue, 2, now=now + timedelta(days=5))
    assert sorted(sent) == [f"r{n:05d}@example.com" for n in (1, 2, 3)]
    store.close()


def test_two_claimers_of_a_segmented_issue_send_each_reader_once(database_url):  # noqa: F811
    store = Store(database_url)
    readers(store, 2000)
    films = tag_every(store, "films", 7, 2000)
    issue = store.issues.create_issue(
        rendered("one"), [], None, segment=segments.audience(store, "tag:films")
    )
    taken: dict[str, list[str]] = {"a": [], "b": []}

    def claimer(name: str) -> None:
        while batch := store.deliveries.claim(issue, 20, worker=name):
            taken[name] += [r.email for r in batch.recipients]
            store.deliveries.mark_sent(batch, name)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in taken]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everyone = taken["a"] + taken["b"]
    assert sorted(everyone) == sorted(films) and len(set(everyone)) == len(everyone)
    assert taken["a"] and taken["b"]
    store.close()


def test_reader_time_waves_of_a_segment_still_plan_rows(database_url):  # noqa: F811
    """Reader time keeps its frozen waves (ARCHITECTURE.md's invariant): one row per reader
    of the segment, none for the others."""
    store = Store(database_url)
    readers(store, 30)
    films = tag_every(store, "films", 3, 30)
    issue = store.issues.create_issue(
        rendered("one"),
        [],
        None,
        segment=segments.audience(store, "tag:films"),
        reader_time=ReaderTime(at=time(9, 0), zone=ZoneInfo("Europe/Paris")),
    )
    with store.engine.connect() as conn:
        planned = conn.scalar(select(func.count()).select_from(deliveries))
    assert planned == len(films) == plan_row(store, issue).size
    store.close()


def test_a_reader_paused_before_their_wave_is_skipped_with_the_reason(database_url):  # noqa: F811
    """Reader time freezes the waves as rows; a reader who pauses before theirs is skipped
    at its claim (the row says why), the others sent."""
    store = Store(database_url)
    readers(store, 6)
    now = utcnow()
    issue = store.issues.create_issue(
        rendered("one"),
        [],
        None,
        reader_time=ReaderTime(at=time(9, 0), zone=ZoneInfo("Europe/Paris")),
        planned_at=now,
    )
    paused = store.subscribers.by_email("r00002@example.com").id
    store.subscribers.pause(paused, now + timedelta(days=30))
    sent = send_all(store, issue, 10, now=now + timedelta(days=2))  # every wave due
    assert sorted(sent) == [f"r{n:05d}@example.com" for n in (0, 1, 3, 4, 5)]
    [skipped] = store.deliveries.in_state(issue, "skipped")
    assert (skipped.subscriber_id, skipped.error) == (paused, "subscriber on a pause")
    store.close()


# -- the anchored text and the batch membership, pure ---------------------------------------
def test_anchoring_writes_instants_and_reads_back_the_same_tree():
    at = utcnow().replace(microsecond=0)
    text = anchored("(tag:a or opened<36h) and not joined>2w", at)
    stamp = at.isoformat().replace("+00:00", "Z")
    assert text == f"(tag:a or opened<36h@{stamp}) and not joined>2w@{stamp}"
    assert anchored(text, at + timedelta(days=9)) == text  # already anchored: kept
    assert to_text(parse(text)) == text
    assert anchored("", at) == ""


@pytest.mark.parametrize("density", [0.02, 0.3, 0.5, 0.97])
def test_batch_membership_is_exact_and_small(density):
    rng = random.Random(density)
    first, last = 1001, 9000
    members = sorted(i for i in range(first, last + 1) if rng.random() < density)
    text = encode_members(first, last, members)
    row = BatchRow(1, first, last, len(members), 0, text, False, "sent", None, None, None, utcnow())
    assert [i for i in range(first - 5, last + 6) if row.holds(i)] == members
    excluded = {i for lo, hi in decode_excluded(first, text) for i in range(lo, hi + 1)}
    assert {i for i in range(first, last + 1) if i not in excluded} == set(members)
    # A bitmap of 8,000 ids is at most about 1.4 KB, whatever the density.
    assert len(text) <= 1400


# -- migration 0017 --------------------------------------------------------------------------
def test_migration_0017_up_and_down_keeps_the_plans(database_url):  # noqa: F811
    """An issue planned before 0017 keeps its plan (no segment: everyone) and its readers
    their tags; the Store sends it on after the upgrade; down again drops only the columns."""
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.pool import NullPool

    from newsletter import migrations

    engine = create_engine(database_url, poolclass=NullPool)
    migrations.upgrade(engine, "0016")
    now = utcnow().replace(tzinfo=None)
    with engine.begin() as conn:
        for n in (1, 2, 3):
            conn.execute(
                text(
                    "INSERT INTO subscribers (email, email_key, name, status, token, "
                    "created_at, updated_at, timezone, tag_text) "
                    "VALUES (:e, :e, '', 'active', :t, :at, :at, '', ' films ')"
                ),
                {"e": f"r{n}@example.com", "t": f"tok{n}", "at": now},
            )
        conn.execute(
            text(
                "INSERT INTO issues (slug, subject, preheader, html, text, archive_html, "
                "placeholder_nonce, status, created_at, next_batch, failed_batches, opens, "
                "clicks, machine_opens) VALUES ('one', 's', 'p', 'h', 't', 'a', 'n', "
                "'sending', :at, 0, 0, 0, 0, 0)"
            ),
            {"at": now},
        )
        conn.execute(
            text(
                "INSERT INTO delivery_plans (issue_id, segment, last_id, size, claimed_to, "
                "next_batch, planned_at) VALUES (1, 'active', 3, 3, 0, 0, :at)"
            ),
            {"at": now},
        )
    migrations.upgrade(engine)
    assert migrations.current_revision(engine) == migrations.head_revision()
    assert migrations.schema_differences(engine) == []
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT expression FROM delivery_plans")) == ""
        assert (
            conn.execute(text("SELECT tag_text, tags_before FROM subscribers")).all()
            == [(" films ", "")] * 3
        )
    store = Store(database_url)
    assert sorted(send_all(store, 1)) == [f"r{n}@example.com" for n in (1, 2, 3)]
    store.close()
    migrations.downgrade(engine, "0016")
    assert "expression" not in {c["name"] for c in inspect(engine).get_columns("delivery_plans")}
    columns = {c["name"] for c in inspect(engine).get_columns("subscribers")}
    assert not {"tags_before", "tags_changed_at"} & columns and "tag_text" in columns
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM delivery_batches")) == 1
    migrations.upgrade(engine)
    assert migrations.schema_differences(engine) == []
    engine.dispose()
