"""What a message of the bounce mailbox reports: RFC 3464 delivery status notifications in
the form Postfix writes them, an ARF complaint (RFC 5965), and mail that is neither, read
from a real Maildir and a real mbox file."""

from __future__ import annotations

import mailbox
from email.message import EmailMessage

import pytest

from newsletter.bounces.mailboxes import read_mailbox
from newsletter.bounces.parse import ReportKind, read_report
from newsletter.exceptions import ConfigError

BOUNCES = "bounces@example.com"


def dsn(
    action: str, status: str, diagnostic: str, *, to: str = "bounces+7-AbC_dE-f@example.com"
) -> bytes:
    """A bounce as Postfix's bounce daemon writes it (multipart/report, delivery-status)."""
    return (
        "Return-Path: <>\r\n"
        f"Delivered-To: {to}\r\n"
        "From: MAILER-DAEMON@mail.example.net (Mail Delivery System)\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"To: {to}\r\n"
        "Message-Id: <20261207101500.1A2B3C@mail.example.net>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n"
        "\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mail.example.net\r\n\r\n"
        "Final-Recipient: rfc822; gone@example.org\r\n"
        "Original-Recipient: rfc822;gone@example.org\r\n"
        f"Action: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n"
        "\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        "From: News <news@example.com>\r\nTo: gone@example.org\r\nSubject: The issue\r\n"
        "\r\n--B--\r\n"
    ).encode()


def arf() -> bytes:
    return (
        b"From: fbl@isp.example\r\nTo: bounces@example.com\r\nSubject: complaint\r\n"
        b"Message-ID: <fbl-1@isp.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n'
        b"\r\n--F\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        b"\r\n--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        b"Feedback-Type: abuse\r\nUser-Agent: isp-fbl/1.0\r\nVersion: 1\r\n"
        b"\r\n--F\r\nContent-Type: message/rfc822\r\n\r\n"
        b"Return-Path: <bounces+12-XyZ987@example.com>\r\n"
        b"From: News <news@example.com>\r\nTo: reader@isp.example\r\nSubject: The issue\r\n\r\nbody\r\n"
        b"\r\n--F--\r\n"
    )


def parse(data: bytes):
    import email

    return read_report(email.message_from_bytes(data), bounce_address=BOUNCES)


def test_a_permanent_failure_names_issue_and_reader_by_verp():
    report = parse(dsn("failed", "5.1.1", "550 5.1.1 <gone@example.org>: User unknown"))
    assert report.kind is ReportKind.PERMANENT
    assert (report.issue_id, report.token_id) == (7, "AbC_dE-f")
    assert "5.1.1" in report.detail and "User unknown" in report.detail
    assert report.message_id == "<20261207101500.1A2B3C@mail.example.net>"


def test_a_delay_is_temporary():
    report = parse(dsn("delayed", "4.4.1", "connect to mx.example.org: Connection timed out"))
    assert report.kind is ReportKind.TEMPORARY and report.issue_id == 7


def test_without_verp_the_detected_address_names_the_reader():
    report = parse(dsn("failed", "5.1.1", "550 User unknown", to="bounces@example.com"))
    assert report.kind is ReportKind.PERMANENT and report.issue_id is None
    assert report.addresses == ("gone@example.org",)


def test_a_feedback_loop_report_is_a_complaint_found_through_the_original_return_path():
    report = parse(arf())
    assert report.kind is ReportKind.COMPLAINT
    assert (report.issue_id, report.token_id) == (12, "XyZ987")


def test_ordinary_mail_is_named_as_not_understood():
    message = EmailMessage()
    message["Subject"] = "Out of office"
    message["Message-ID"] = "<ooo@example.org>"
    message.set_content("I am away until Monday.")
    report = parse(message.as_bytes())
    assert report.kind is ReportKind.UNKNOWN and "Out of office" in report.detail


def test_maildir_and_mbox_are_read_and_other_paths_refused(tmp_path):
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(dsn("failed", "5.1.1", "550 User unknown"))
    box.add(arf())
    kinds = sorted(parse_message_kind(m) for _, m in read_mailbox(str(tmp_path / "Maildir")))
    assert kinds == ["complaint", "permanent"]
    mbox = mailbox.mbox(tmp_path / "bounces.mbox", create=True)
    mbox.add(dsn("delayed", "4.2.2", "mailbox full"))
    mbox.flush()
    mbox.close()
    assert [parse_message_kind(m) for _, m in read_mailbox(str(tmp_path / "bounces.mbox"))] == [
        "temporary"
    ]
    (tmp_path / "plain").mkdir()
    with pytest.raises(ConfigError, match="not a Maildir"):
        list(read_mailbox(str(tmp_path / "plain")))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match="not an mbox"):
        list(read_mailbox(str(tmp_path / "notes.txt")))
    with pytest.raises(ConfigError, match="no such Maildir"):
        list(read_mailbox(str(tmp_path / "missing")))


def parse_message_kind(message) -> str:
    return read_report(message, bounce_address=BOUNCES).kind.value
