"""What one message in the bounce mailbox says: a permanent failure, a temporary one, a
complaint (an ARF feedback-loop report, RFC 5965), or nothing we understand.

Who it is about comes first from our VERP return path (`bounces+<issue>-<token id>@domain`,
see `providers.smtp.verp_address`), which the receiving server keeps in `Delivered-To`,
`X-Original-To` or `To`; only without it do we fall back on the addresses Mailman's
detectors (`flufl.bounce`) find in the report. Permanent or temporary is read from the
report's own `Action:`/`Status:` fields when it has them (RFC 3464), else from the detector.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum

VERP_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")


class ReportKind(StrEnum):
    PERMANENT = "permanent"
    TEMPORARY = "temporary"
    COMPLAINT = "complaint"
    UNKNOWN = "unknown"


@dataclass(frozen=True, kw_only=True)
class MailboxReport:
    """One message of the bounce mailbox, understood as far as it could be."""

    message_id: str
    kind: ReportKind
    issue_id: int | None = None
    token_id: str | None = None  # the random part of the reader's link token
    addresses: tuple[str, ...] = ()  # when there is no VERP address: who the report names
    detail: str = ""  # the status and diagnostic, or why it was not understood


def verp_pattern(bounce_address: str) -> re.Pattern[str]:
    local, _, domain = bounce_address.rpartition("@")
    return re.compile(
        rf"{re.escape(local)}\+(\d+)-([A-Za-z0-9_-]+)@{re.escape(domain)}\Z", re.IGNORECASE
    )


def _verp(message: Message, pattern: re.Pattern[str]) -> tuple[int, str] | None:
    for header in VERP_HEADERS:
        for value in message.get_all(header, []):
            for part in re.split(r"[\s,<>]+", str(value)):
                match = pattern.match(part)
                if match:
                    return int(match.group(1)), match.group(2)
    return None


def _delivery_status(message: Message) -> tuple[ReportKind | None, str]:
    """From a multipart/report; report-type=delivery-status: the worst recipient's action."""
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        blocks = [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []
        fields: list[tuple[str, str, str]] = []
        for block in blocks:
            action = str(block.get("Action", "")).strip().lower()
            status = str(block.get("Status", "")).strip()
            diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
            if action:
                fields.append((action, status, diagnostic))
        for action, status, diagnostic in fields:
            if action == "failed" or status.startswith("5"):
                return ReportKind.PERMANENT, f"{status} {diagnostic}".strip()
        for action, status, diagnostic in fields:
            if action == "delayed" or status.startswith("4"):
                return ReportKind.TEMPORARY, f"{status} {diagnostic}".strip()
    return None, ""


def _is_feedback_report(message: Message) -> bool:
    return message.get_content_type() == "multipart/report" and (
        str(message.get_param("report-type", "")).lower() == "feedback-report"
    )


def _feedback_original(message: Message) -> Message | None:
    """The original message (or its headers) inside an ARF report: it carries our VERP
    return path and List-Unsubscribe, which name the reader."""
    for part in message.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
    return None


def read_report(message: Message, *, bounce_address: str) -> MailboxReport:
    """What `message` (one message of the bounce mailbox) reports."""
    from flufl.bounce import all_failures

    # Its detectors log a traceback when one trips on a message; we report such a message
    # as not understood instead.
    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

    message_id = str(message.get("Message-ID", "")).strip()
    pattern = verp_pattern(bounce_address) if bounce_address else None

    def about(source: Message) -> dict:
        verp = _verp(source, pattern) if pattern else None
        return {"issue_id": verp[0], "token_id": verp[1]} if verp else {}

    if _is_feedback_report(message):
        original = _feedback_original(message)
        who = about(message) or (about(original) if original is not None else {})
        if not who and original is not None and pattern:
            for header in ("Return-Path", "Sender"):
                verp = _verp_from_value(str(original.get(header, "")), pattern)
                if verp:
                    who = {"issue_id": verp[0], "token_id": verp[1]}
        rcpt = str(original.get("To", "")) if original is not None else ""
        return MailboxReport(
            message_id=message_id,
            kind=ReportKind.COMPLAINT,
            addresses=tuple(_addresses(rcpt)) if not who else (),
            detail="feedback-loop report (complaint)",
            **who,
        )
    kind, detail = _delivery_status(message)
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector that trips on an unusual message: no verdict from them
        temporary, permanent = frozenset(), frozenset()
    if kind is None:
        if permanent:
            kind, detail = ReportKind.PERMANENT, "permanent failure (detected)"
        elif temporary:
            kind, detail = ReportKind.TEMPORARY, "temporary failure (detected)"
    who = about(message)
    if kind is None or (not who and not (temporary or permanent)):
        subject = " ".join(str(message.get("Subject", "")).split())[:80]
        return MailboxReport(
            message_id=message_id,
            kind=ReportKind.UNKNOWN,
            detail=f"not a delivery report we understand (Subject: {subject!r})",
        )
    found = sorted(a.decode("utf-8", "replace") for a in (permanent or temporary))
    return MailboxReport(
        message_id=message_id,
        kind=kind,
        addresses=tuple(found) if not who else (),
        detail=detail,
        **who,
    )


def _verp_from_value(value: str, pattern: re.Pattern[str]) -> tuple[int, str] | None:
    for part in re.split(r"[\s,<>]+", value):
        match = pattern.match(part)
        if match:
            return int(match.group(1)), match.group(2)
    return None


def _addresses(value: str) -> list[str]:
    from email.utils import getaddresses

    return [address for _, address in getaddresses([value]) if "@" in address]
