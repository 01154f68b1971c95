"""The send loop over SMTP (issue 20): the real SMTP provider against the real aiosmtpd
server (a child process) with scripted faults, and what the delivery log and the subscriber
list say afterwards, per recipient: sent with the server's queue id, failed with its reason,
bounced for an address that does not exist, deferred back to pending (and sent by the next
run, alone), uncertain for the one whose connection dropped after DATA. A refused login
pauses the issue with nothing sent."""

from __future__ import annotations

import mailbox
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import default

import pytest
from sqlalchemy import select

from newsletter import alerts, publish
from newsletter.delivery import SendContext, SendingLease, resume_issue, send_issue
from newsletter.providers.smtp import SMTPProvider
from newsletter.records import DeliveryRow
from newsletter.settings import load_settings
from newsletter.store import Store
from newsletter.store.schema import deliveries
from newsletter.subscribers import signing_secret
from newsletter.testing.smtp_server import SMTPServerProcess
from newsletter.tokens import new_token
from tests.conftest import delivery_policy
from tests.faults import make_folder
from tests.test_smtp_provider import _self_signed, smtp_settings

READERS = 20
GONE, BUSY, SPAM, LOST = (
    "gone@example.com",
    "busy@example.com",
    "spam@example.com",
    "lost@example.com",
)
FAULTS = {
    "refuse": {GONE: "550 5.1.1 <gone@example.com>: no such user"},
    "defer": {BUSY: "451 4.3.0 mailbox busy, try later"},
    "refuse_data": {SPAM: "554 5.7.1 message refused as spam"},
    "drop_after_data": [LOST],
}


def delivered_to(maildir) -> list[str]:
    parser = BytesParser(policy=default)
    box = mailbox.Maildir(maildir, create=False)
    return [parser.parsebytes(bytes(m))["To"].addresses[0].addr_spec for m in box]


def issue_with_specials(folder):
    """An issue planned for READERS readers and the four special addresses, spread among
    them (every fifth subscriber)."""
    make_folder(folder, "http://127.0.0.1:9", subscribers=0)
    settings = load_settings(folder / "newsletter.toml", env={"NEWSLETTER_PROVIDER": "outbox"})
    store = Store(settings.database_url)
    secret = signing_secret(store)
    specials = iter([GONE, BUSY, SPAM, LOST])
    emails = [
        next(specials) if i % 6 == 5 else f"reader{i:04d}@example.com" for i in range(READERS + 4)
    ]
    store.subscribers.add(
        {"email": e, "name": e.split("@")[0], "token": new_token(secret)} for e in emails
    )
    publish.sync_queue(store, settings)
    picked, _ = publish.pick(store, settings, datetime.now(UTC))
    return store, settings, publish.build_issue(store, settings, picked)


def rows(store, issue_id, state) -> dict[str, DeliveryRow]:
    return {r.email: r for r in store.deliveries.in_state(issue_id, state)}


def attempts(store, issue_id, subscriber_id) -> int:
    with store.transaction(write=False) as conn:
        return conn.scalar(
            select(deliveries.c.attempts).where(
                deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id == subscriber_id
            )
        )


@pytest.mark.parametrize("concurrency", [1, 3])
def test_each_recipients_answer_is_recorded_and_the_next_run_sends_only_the_deferred(
    tmp_path, concurrency
):
    store, settings, issue_id = issue_with_specials(tmp_path)
    policy = delivery_policy(
        batch_size=4, concurrency=concurrency, max_retries=1, backoff_base=0.01, backoff_cap=0.05
    )
    with SMTPServerProcess(
        maildir=tmp_path / "md", faults=FAULTS, faults_path=tmp_path / "faults.json"
    ) as server:
        provider = SMTPProvider(
            settings, smtp=smtp_settings(server.port, connections=2, max_retries=1)
        )
        report = send_issue(SendContext.of(store, settings, provider, policy=policy), issue_id)
        provider.close()

    sent = rows(store, issue_id, "sent")
    readers = {f"reader{i:04d}@example.com" for i in range(READERS + 4) if i % 6 != 5}
    assert set(sent) == readers
    ids = [row.message_id for row in sent.values()]
    assert all(ids) and len(set(ids)) == len(ids)  # each reader's own queue id from the server
    assert sorted(delivered_to(tmp_path / "md")) == sorted(readers)  # each exactly once

    failed = rows(store, issue_id, "failed")
    assert set(failed) == {GONE, SPAM}
    assert "550 5.1.1" in failed[GONE].error and "554 5.7.1" in failed[SPAM].error
    assert store.subscribers.by_email(GONE).status == "bounced"  # the address does not exist
    assert store.subscribers.by_email(SPAM).status == "active"  # refused, but it exists

    lost = rows(store, issue_id, "uncertain")
    assert set(lost) == {LOST}
    assert "lost after the message was sent" in lost[LOST].error

    busy = rows(store, issue_id, "pending")
    assert set(busy) == {BUSY} and "451" in busy[BUSY].error
    # Retried with backoff: claimed once, then again alone (by each thread still claiming
    # at most once more), before being left pending.
    tries = attempts(store, issue_id, busy[BUSY].subscriber_id)
    assert policy.max_retries + 1 <= tries <= policy.max_retries + concurrency
    assert store.deliveries.counts(issue_id)["in_flight"] == 0
    assert report.status == "sending" and store.issues.issue_status(issue_id) == "sending"
    assert "1 readers deferred by the provider" in (report.last_error or "")
    assert report.delivered == len(readers)

    # The next run, against a server that takes everyone: only the deferred reader is sent.
    with SMTPServerProcess(maildir=tmp_path / "md2") as server:
        provider = SMTPProvider(settings, smtp=smtp_settings(server.port))
        ctx = SendContext.of(store, settings, provider, policy=policy)
        again = resume_issue(ctx, issue_id, lease=SendingLease.of(store, settings))
        provider.close()
    assert delivered_to(tmp_path / "md2") == [BUSY]
    assert again is not None and again.delivered == 1 and again.status == "sent"
    counts = store.deliveries.counts(issue_id)
    assert (counts["sent"], counts["failed"], counts["uncertain"]) == (len(readers) + 1, 2, 1)
    assert counts["pending"] == 0 and not again.ok  # the failed and uncertain stay named
    store.close()


def test_a_refused_login_pauses_the_issue_with_nothing_sent(tmp_path):
    store, settings, issue_id = issue_with_specials(tmp_path)
    cert = _self_signed(tmp_path)
    policy = delivery_policy(batch_size=4, concurrency=3)
    with SMTPServerProcess(maildir=tmp_path / "md", auth=("news", "s3cret"), cert=cert) as server:
        smtp = smtp_settings(
            server.port,
            host="localhost",
            security="starttls",
            username="news",
            ca_file=str(cert[0]),
        )
        provider = SMTPProvider(settings, smtp=smtp, password="wrong-pw")
        report = send_issue(SendContext.of(store, settings, provider, policy=policy), issue_id)
    assert report.status == "paused" and store.issues.issue_status(issue_id) == "paused"
    assert "SMTP_PASSWORD" in (report.last_error or "") and "wrong-pw" not in report.last_error
    counts = store.deliveries.counts(issue_id)
    assert counts["pending"] == READERS + 4 and counts["sent"] == 0
    assert not (tmp_path / "md").exists() or delivered_to(tmp_path / "md") == []
    # The editors' alert names the setting, never the password.
    [alert] = [
        a
        for a in alerts.pending_alerts(store, settings)
        if a.subject.startswith(f"Issue {issue_id} paused")
    ]
    assert "[smtp] username" in alert.text and "SMTP_PASSWORD" in alert.text
    assert "wrong-pw" not in alert.text + alert.subject
    store.close()
