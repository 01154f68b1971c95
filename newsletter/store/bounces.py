"""The bounce mailbox's reports applied to the list (`newsletter bounces`), each once.

A report names its reader by our VERP address (issue and the random part of their link token)
or, without one, by the addresses it quotes. In one transaction per message: the Message-ID is
recorded (a second reading of the same message changes nothing), then a permanent failure
makes the subscriber `bounced`, a complaint `complained` (never undoing a worse status, as the
webhook's suppressions do), and a temporary failure counts: the three latest issues sent to
a subscriber each answered with one make them `bounced`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from newsletter.records import SubscriberStatus, utcnow
from newsletter.store.schema import bounce_reports, subscribers

if TYPE_CHECKING:
    from newsletter.store import Store

PERMANENT, TEMPORARY, COMPLAINT = "permanent", "temporary", "complaint"
# Temporary failures on this many issues in a row, the latest ones sent: the address is gone.
TEMPORARY_IN_A_ROW = 3
_SUPPRESSIBLE = (
    SubscriberStatus.ACTIVE,
    SubscriberStatus.UNCONFIRMED,
    SubscriberStatus.UNSUBSCRIBED,
)


@dataclass(frozen=True, kw_only=True)
class BounceApplied:
    """What one report did: nothing when `new` is False (read before)."""

    new: bool
    subscriber_id: int | None = None
    email: str = ""
    issue_id: int | None = None
    status: str | None = None  # the status it gave the subscriber (bounced, complained)


class Bounces:
    def __init__(self, store: Store) -> None:
        self._store = store

    def apply(
        self,
        *,
        message_id: str,
        kind: str,
        issue_id: int | None,
        token_id: str | None,
        addresses: tuple[str, ...],
        detail: str,
    ) -> BounceApplied:
        """Record one report (kind permanent | temporary | complaint | unknown) and apply it."""
        with self._store.transaction() as conn:
            who = self._subscriber(conn, token_id, addresses) if kind != "unknown" else None
            sid, email = who if who else (None, "")
            if sid is not None and issue_id is None:
                issue_id = self._latest_sent(conn, sid)
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(bounce_reports).values(
                            message_id=message_id[:300],
                            kind=kind,
                            issue_id=issue_id,
                            subscriber_id=sid,
                            detail=detail,
                            received_at=utcnow(),
                        )
                    )
            except IntegrityError:
                return BounceApplied(new=False)
            status: str | None = None
            if sid is not None:
                if kind == PERMANENT:
                    status = SubscriberStatus.BOUNCED
                elif kind == COMPLAINT:
                    status = SubscriberStatus.COMPLAINED
                elif kind == TEMPORARY and self._temporary_in_a_row(conn, sid):
                    status = SubscriberStatus.BOUNCED
                if status is not None and not self._suppress(conn, sid, status):
                    status = None
            return BounceApplied(
                new=True, subscriber_id=sid, email=email, issue_id=issue_id, status=status
            )

    def seen(self, message_id: str) -> bool:
        """Whether this message was handled before (so a mailbox read again skips it)."""
        with self._store.transaction(write=False) as conn:
            found = conn.scalar(
                select(bounce_reports.c.message_id).where(
                    bounce_reports.c.message_id == message_id[:300]
                )
            )
        return found is not None

    def counts(self, issue_id: int) -> dict[str, int]:
        """Reports per kind that named this issue (the issue's page in the workspace)."""
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(bounce_reports.c.kind, func.count())
                .where(bounce_reports.c.issue_id == issue_id)
                .group_by(bounce_reports.c.kind)
            )
            return {kind: count for kind, count in rows}

    # -- inside the transaction ----------------------------------------------------------
    @staticmethod
    def _subscriber(
        conn: Connection, token_id: str | None, addresses: tuple[str, ...]
    ) -> tuple[int, str] | None:
        if token_id:
            row = conn.execute(
                select(subscribers.c.id, subscribers.c.email).where(
                    subscribers.c.token.startswith(f"{token_id}.", autoescape=True)
                )
            ).first()
            if row is not None:
                return row.id, row.email
        keys = [a.strip().lower() for a in addresses if a.strip()]
        if keys:
            row = conn.execute(
                select(subscribers.c.id, subscribers.c.email)
                .where(subscribers.c.email_key.in_(keys))
                .order_by(subscribers.c.id)
            ).first()
            if row is not None:
                return row.id, row.email
        return None

    def _latest_sent(self, conn: Connection, subscriber_id: int) -> int | None:
        sent = self._store.deliveries.sent_issues(conn, subscriber_id, 1)
        return sent[0] if sent else None

    def _temporary_in_a_row(self, conn: Connection, subscriber_id: int) -> bool:
        latest = self._store.deliveries.sent_issues(conn, subscriber_id, TEMPORARY_IN_A_ROW)
        if len(latest) < TEMPORARY_IN_A_ROW:
            return False
        failed = set(
            conn.scalars(
                select(bounce_reports.c.issue_id).where(
                    bounce_reports.c.subscriber_id == subscriber_id,
                    bounce_reports.c.kind == TEMPORARY,
                    bounce_reports.c.issue_id.in_(latest),
                )
            )
        )
        return failed.issuperset(latest)

    @staticmethod
    def _suppress(conn: Connection, subscriber_id: int, status: str) -> bool:
        return (
            conn.execute(
                update(subscribers)
                .where(subscribers.c.id == subscriber_id)
                .where(subscribers.c.status.in_(_SUPPRESSIBLE))
                .values(status=status, updated_at=utcnow())
            ).rowcount
            > 0
        )
