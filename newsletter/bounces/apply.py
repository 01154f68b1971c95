"""`newsletter bounces`: read the bounce mailbox and apply what each report says, once.

Each message is read (`mailboxes.read_mailbox`), understood (`parse.read_report`) and applied
in its own transaction (`store.bounces`), keyed by its Message-ID (a digest of its bytes when
it has none), so reading the same mailbox again, or a crash half-way, applies nothing twice.
What could not be understood, or named nobody we know, is listed in the report by mailbox key
and reason: the mailbox is left as it is for a person to look at.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from newsletter.bounces.mailboxes import read_mailbox
from newsletter.bounces.parse import ReportKind, read_report
from newsletter.exceptions import ConfigError
from newsletter.settings import Settings
from newsletter.store import Store


@dataclass(frozen=True, kw_only=True)
class Unhandled:
    """A message the run could not act on: its key in the mailbox and why."""

    key: str
    reason: str


@dataclass(kw_only=True)
class BouncesReport:
    """What one reading of the mailbox did."""

    source: str
    read: int = 0
    already_handled: int = 0
    permanent: int = 0
    temporary: int = 0
    complaints: int = 0
    bounced: list[str] = field(default_factory=list)  # addresses now `bounced`
    complained: list[str] = field(default_factory=list)  # addresses now `complained`
    not_understood: list[Unhandled] = field(default_factory=list)
    unmatched: list[Unhandled] = field(default_factory=list)  # understood, names nobody


def source_of(settings: Settings, given: str | None = None) -> str:
    """The mailbox to read: `given`, else `[bounces]`; ConfigError when neither names one."""
    source = given or settings.bounces.source
    if not source:
        raise ConfigError(
            "no bounce mailbox: set [bounces] mailbox (a Maildir or mbox) or imap_host, "
            "or give one to `newsletter bounces`"
        )
    return source


def apply_mailbox(store: Store, settings: Settings, source: str) -> BouncesReport:
    """Read every message of `source` and apply the new ones."""
    report = BouncesReport(source=source)
    bounce_address = settings.smtp.bounce_address
    for key, message in read_mailbox(source):
        report.read += 1
        message_id = str(message.get("Message-ID", "")).strip()
        if not message_id:
            raw = message.as_bytes()
            message_id = "sha256:" + hashlib.sha256(raw).hexdigest()
        if store.bounces.seen(message_id):
            report.already_handled += 1
            continue
        parsed = read_report(message, bounce_address=bounce_address)
        applied = store.bounces.apply(
            message_id=message_id,
            kind=parsed.kind.value,
            issue_id=parsed.issue_id,
            token_id=parsed.token_id,
            addresses=parsed.addresses,
            detail=parsed.detail,
        )
        if not applied.new:  # another reader of the same mailbox got there first
            report.already_handled += 1
            continue
        if parsed.kind is ReportKind.UNKNOWN:
            report.not_understood.append(Unhandled(key=key, reason=parsed.detail))
            continue
        if parsed.kind is ReportKind.PERMANENT:
            report.permanent += 1
        elif parsed.kind is ReportKind.TEMPORARY:
            report.temporary += 1
        else:
            report.complaints += 1
        if applied.subscriber_id is None:
            named = ", ".join(parsed.addresses) or (
                f"VERP issue {parsed.issue_id}, token {parsed.token_id}"
                if parsed.token_id
                else "no address"
            )
            report.unmatched.append(
                Unhandled(key=key, reason=f"{parsed.kind.value} report for no subscriber ({named})")
            )
        elif applied.status == "bounced":
            report.bounced.append(applied.email)
        elif applied.status == "complained":
            report.complained.append(applied.email)
    return report
