"""`newsletter bounces` against a real SQLite store and real mailboxes: a permanent failure
bounces the reader, a complaint makes them `complained`, temporary failures count until three
issues in a row, each message acts once however often the mailbox is read, what is not
understood is named; and the workspace's issue page shows the counts."""

from __future__ import annotations

import mailbox
import re

import pytest

from newsletter.bounces.apply import apply_mailbox, source_of
from newsletter.exceptions import ConfigError
from newsletter.records import SubscriberStatus
from newsletter.settings import load_settings
from newsletter.store import Store
from newsletter.subscribers import add_subscriber
from tests.conftest import run_cli, stub_issue

BOUNCES = "bounces@news.example.com"


def dsn(
    message_id: str, rcpt: str, *, to: str, action: str = "failed", status: str = "5.1.1"
) -> bytes:
    """A delivery status notification as Postfix's bounce daemon writes one."""
    return (
        "Return-Path: <>\r\n"
        f"Delivered-To: {to}\r\n"
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"To: {to}\r\n"
        f"Message-Id: <{message_id}>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n"
        "\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\n"
        f"Action: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {'550' if status[0] == '5' else '452'} {status} no way\r\n"
        "\r\n--B--\r\n"
    ).encode()


def arf(message_id: str, return_path: str, rcpt: str) -> bytes:
    return (
        f"From: fbl@isp.example\r\nTo: {BOUNCES}\r\nSubject: complaint\r\n"
        f"Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n'
        "\r\n--F\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        "\r\n--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: isp-fbl/1.0\r\nVersion: 1\r\n"
        "\r\n--F\r\nContent-Type: message/rfc822\r\n\r\n"
        f"Return-Path: <{return_path}>\r\n"
        f"From: News <news@example.com>\r\nTo: {rcpt}\r\nSubject: The issue\r\n\r\nbody\r\n"
        "\r\n--F--\r\n"
    ).encode()


def verp(issue_id: int, token: str) -> str:
    return f"bounces+{issue_id}-{token.partition('.')[0]}@news.example.com"


@pytest.fixture
def folder(tmp_path):
    assert run_cli(["init", "."], tmp_path).returncode == 0
    config = tmp_path / "newsletter.toml"
    text = config.read_text().replace('bounce_address = ""', f'bounce_address = "{BOUNCES}"')
    config.write_text(text.replace('mailbox = ""', 'mailbox = "Maildir"'))
    return tmp_path


def sent_issue(store: Store, slug: str) -> int:
    """An issue whose every planned row went out (as a provider would have recorded)."""
    issue_id = store.issues.create_issue(
        stub_issue(slug, slug),
        [],
    )
    batch = store.deliveries.claim(issue_id, 1000)
    assert batch is not None
    store.deliveries.mark_sent(batch, "queued")
    return issue_id


def test_reports_are_applied_once_each_and_the_rest_is_named(folder):
    settings = load_settings(folder / "newsletter.toml", env={})
    store = Store(settings.database_url)
    gone = add_subscriber(store, "gone@example.org", "Gone")
    angry = add_subscriber(store, "angry@example.org", "Angry")
    add_subscriber(store, "plain@example.org", "Plain")
    busy = add_subscriber(store, "busy@example.org", "Busy")
    issue_id = sent_issue(store, "first")
    box = mailbox.Maildir(folder / "Maildir", create=True)
    box.add(dsn("d1@mx", "gone@example.org", to=verp(issue_id, gone.token)))
    box.add(arf("c1@isp", verp(issue_id, angry.token), "angry@example.org"))
    # No VERP address: Mailman's detectors find the address in the report.
    box.add(dsn("d2@mx", "plain@example.org", to=BOUNCES))
    box.add(
        dsn(
            "t1@mx",
            "busy@example.org",
            to=verp(issue_id, busy.token),
            action="delayed",
            status="4.2.2",
        )
    )
    box.add(b"Subject: Out of office\r\nMessage-ID: <ooo@x>\r\n\r\nI am away until Monday.\r\n")
    box.add(dsn("d3@mx", "stranger@example.org", to=BOUNCES))  # understood, but nobody we know
    store.close()

    out = run_cli(["bounces"], folder)
    assert out.returncode == 0, out.stderr
    assert "read 6 messages" in out.stdout
    assert "permanent: 3, temporary: 1, complaints: 1, not understood: 1" in out.stdout
    assert "now bounced: " in out.stdout and "gone@example.org" in out.stdout
    assert "plain@example.org" in out.stdout
    assert "now complained (unsubscribed): angry@example.org" in out.stdout
    assert "not understood: " in out.stdout and "Out of office" in out.stdout
    assert "no subscriber: " in out.stdout and "stranger@example.org" in out.stdout

    store = Store(settings.database_url)
    status = {s.email: s.status for s in store.subscribers.each()}
    assert status["gone@example.org"] == SubscriberStatus.BOUNCED
    assert status["plain@example.org"] == SubscriberStatus.BOUNCED
    assert status["angry@example.org"] == SubscriberStatus.COMPLAINED
    assert status["busy@example.org"] == SubscriberStatus.ACTIVE  # one temporary failure
    assert store.bounces.counts(issue_id) == {"permanent": 2, "complaint": 1, "temporary": 1}
    store.close()
    # Reading the same mailbox again changes nothing.
    again = run_cli(["bounces", str(folder / "Maildir")], folder)
    assert again.returncode == 0, again.stderr
    assert "read 6 messages" in again.stdout and "(6 handled before)" in again.stdout
    assert "permanent: 0, temporary: 0, complaints: 0, not understood: 0" in again.stdout
    assert "now bounced" not in again.stdout
    store = Store(settings.database_url)
    assert store.bounces.counts(issue_id) == {"permanent": 2, "complaint": 1, "temporary": 1}
    store.close()


def test_three_temporary_failures_in_a_row_bounce(folder):
    settings = load_settings(folder / "newsletter.toml", env={})
    store = Store(settings.database_url)
    reader = add_subscriber(store, "full@example.org", "Full")
    issues = [sent_issue(store, f"issue-{n}") for n in range(4)]
    path = folder / "Maildir"
    box = mailbox.Maildir(path, create=True)

    def temporary(message_id: str, issue_id: int) -> None:
        box.add(
            dsn(
                message_id,
                "full@example.org",
                to=verp(issue_id, reader.token),
                action="delayed",
                status="4.2.2",
            )
        )

    def status() -> str:
        return store.subscribers.by_email("full@example.org").status

    temporary("a@mx", issues[0])  # an old one, then a gap: issue 1 got through
    temporary("b@mx", issues[2])
    temporary("b2@mx", issues[2])  # the same issue warned twice counts once
    apply_mailbox(store, settings, str(path))
    assert status() == SubscriberStatus.ACTIVE
    temporary("c@mx", issues[3])
    report = apply_mailbox(store, settings, str(path))
    assert report.temporary == 1 and report.already_handled == 3
    assert status() == SubscriberStatus.ACTIVE  # issues 2 and 3 only: not three in a row
    temporary("d@mx", issues[1])
    report = apply_mailbox(store, settings, str(path))
    assert report.bounced == ["full@example.org"]
    assert status() == SubscriberStatus.BOUNCED
    store.close()


def test_a_mailbox_that_is_not_one_and_none_configured(folder, tmp_path):
    (folder / "Maildir").mkdir()  # a folder, but no cur/new/tmp
    out = run_cli(["bounces"], folder)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "not a Maildir (it needs cur/, new/ and tmp/)" in out.stderr
    bare = tmp_path / "bare"
    assert run_cli(["init", str(bare)], tmp_path).returncode == 0
    with pytest.raises(ConfigError, match=r"\[bounces\] mailbox"):
        source_of(load_settings(bare / "newsletter.toml", env={}))
    out = run_cli(["bounces"], bare)
    assert out.returncode == 1 and "set [bounces] mailbox" in out.stderr


def test_the_issue_page_shows_its_bounces(tmp_path, monkeypatch):
    from newsletter.editors import add_editor
    from tests.test_admin_http import PASSWORD, Browser
    from tests.test_web import live_web

    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    with live_web(tmp_path) as web:
        add_editor(web.store, "ed@example.com", PASSWORD)
        reader = add_subscriber(web.store, "gone@example.org", "Gone")
        issue_id = sent_issue(web.store, "shown")
        browser = Browser(web)
        assert browser.sign_in().status == 303
        page = browser.get(f"/admin/issues/{issue_id}")
        assert "Bounces and complaints" in page.text and 'data-bounces="permanent"' not in page.text
        web.store.bounces.apply(
            message_id="<p1@mx>",
            kind="permanent",
            issue_id=issue_id,
            token_id=reader.token.partition(".")[0],
            addresses=(),
            detail="5.1.1 no such user",
        )
        page = browser.get(f"/admin/issues/{issue_id}")
        assert '<strong data-bounces="permanent">1</strong>' in page.text
        assert '<strong data-bounces="complaint">0</strong>' in page.text


def test_the_scheduler_reads_the_mailbox_when_every_minutes_is_set(folder):
    import os
    import signal
    import subprocess
    import sys

    settings = load_settings(folder / "newsletter.toml", env={})
    store = Store(settings.database_url)
    gone = add_subscriber(store, "gone@example.org", "Gone")
    issue_id = sent_issue(store, "scheduled")
    store.close()
    box = mailbox.Maildir(folder / "Maildir", create=True)
    box.add(dsn("s1@mx", "gone@example.org", to=verp(issue_id, gone.token)))
    config = folder / "newsletter.toml"
    config.write_text(config.read_text().replace("every_minutes = 0", "every_minutes = 5"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter.cli", "scheduler"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("bounces:"):
                break
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    assert lines and lines[-1].startswith("bounces: 1 new of 1"), "".join(lines)
    assert "now bounced: gone@example.org" in lines[-1]
    store = Store(settings.database_url)
    assert store.subscribers.by_email("gone@example.org").status == SubscriberStatus.BOUNCED
    store.close()


def test_bounces_settings_resolve_against_the_file(folder):
    config = folder / "newsletter.toml"
    settings = load_settings(config, env={})
    assert settings.bounces.source == str(folder / "Maildir")
    text = config.read_text().replace('mailbox = "Maildir"', 'mailbox = ""')
    text = text.replace('imap_host = ""', 'imap_host = "imap.example.com"')
    config.write_text(text.replace('imap_user = ""', 'imap_user = "bounces@example.com"'))
    imap = load_settings(config, env={}).bounces
    assert imap.source == "imaps://bounces%40example.com@imap.example.com:993/INBOX"
    config.write_text(text)  # imap_host without imap_user
    with pytest.raises(ConfigError, match=r"\[bounces\] imap_user: needed with imap_host"):
        load_settings(config, env={})


def test_an_imap_mailbox_is_read_once_each(folder):
    """Dovecot (a private instance) serves the bounce mailbox; BOUNCES_PASSWORD logs in."""
    from tests.imap_server import ImapServer

    settings = load_settings(folder / "newsletter.toml", env={})
    store = Store(settings.database_url)
    gone = add_subscriber(store, "gone@example.org", "Gone")
    issue_id = sent_issue(store, "over-imap")
    store.close()
    with ImapServer(user="bounces", password="imap pass") as imap:
        box = mailbox.Maildir(imap.maildir, create=False)
        box.add(dsn("i1@mx", "gone@example.org", to=verp(issue_id, gone.token)))
        box.add(b"Subject: Hello\r\nMessage-ID: <hello@x>\r\n\r\nNot a bounce.\r\n")
        source = f"imap://bounces@127.0.0.1:{imap.port}/INBOX"
        wrong = run_cli(["bounces", source], folder, env={"BOUNCES_PASSWORD": "nope"})
        assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
        assert "refused the login of 'bounces': check BOUNCES_PASSWORD" in wrong.stderr
        assert "nope" not in wrong.stderr
        env = {"BOUNCES_PASSWORD": "imap pass"}
        missing = run_cli(["bounces", source.replace("INBOX", "Nowhere")], folder, env=env)
        assert missing.returncode == 1 and "has no mailbox 'Nowhere'" in missing.stderr
        out = run_cli(["bounces", source], folder, env=env)
        assert out.returncode == 0, out.stderr
        assert "read 2 messages" in out.stdout and "now bounced: gone@example.org" in out.stdout
        # Named by its IMAP UID.
        assert re.search(r"not understood: \d+: not a delivery report .*'Hello'", out.stdout)
        again = run_cli(["bounces", source], folder, env=env)
        assert "(2 handled before)" in again.stdout and "now bounced" not in again.stdout
