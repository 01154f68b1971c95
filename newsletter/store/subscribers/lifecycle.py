"""The readers' lifecycle fields: the welcome claimed once (`welcomed_at`), a pause instead of
leaving (`paused_until`), the last human open, the reasons given for leaving."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update

from newsletter.records import LeavingSummary, SubscriberStatus, UnsubscribeReason, utcnow
from newsletter.store.schema import subscribers, unsubscribe_reasons
from newsletter.store.subscribers.rows import Part

ACTIVE, UNCONFIRMED, UNSUBSCRIBED = (
    SubscriberStatus.ACTIVE,
    SubscriberStatus.UNCONFIRMED,
    SubscriberStatus.UNSUBSCRIBED,
)


class Lifecycle(Part):
    # -- the welcome email, at most once -------------------------------------------------
    def claim_welcome(self, subscriber_id: int) -> bool:
        """True once per active subscriber: one conditional UPDATE sets `welcomed_at`, so
        of two concurrent confirmations (or a confirmation and an import) one sends."""
        return self._changed(
            and_(
                subscribers.c.id == subscriber_id,
                subscribers.c.status == ACTIVE,
                subscribers.c.welcomed_at.is_(None),
            ),
            welcomed_at=utcnow(),
        )

    def release_welcome(self, subscriber_id: int) -> None:
        """Give a claim back when the provider said the welcome did not go out."""
        with self._store.transaction() as conn:
            conn.execute(
                update(subscribers)
                .where(subscribers.c.id == subscriber_id)
                .values(welcomed_at=None)
            )

    # -- leaving: pausing instead, and the reason given ----------------------------------
    def pause(self, subscriber_id: int, until: datetime) -> bool:
        """Keep a reader who chose a pause over leaving: active again if they had just
        unsubscribed (never after a bounce or complaint), skipped by every claim until
        `until`."""
        return self._changed(
            and_(
                subscribers.c.id == subscriber_id,
                subscribers.c.status.in_((ACTIVE, UNSUBSCRIBED)),
            ),
            status=ACTIVE,
            paused_until=until,
            updated_at=utcnow(),
        )

    def last_opened(self, subscriber_id: int) -> datetime | None:
        """Their last human open (machine opens never count), from the event webhook."""
        return self._field(subscriber_id, subscribers.c.last_opened_at)

    def paused_until(self, subscriber_id: int) -> datetime | None:
        return self._field(subscriber_id, subscribers.c.paused_until)

    def welcomed(self, subscriber_id: int) -> bool:
        return self._field(subscriber_id, subscribers.c.welcomed_at) is not None

    def _field(self, subscriber_id: int, column: Any) -> Any:
        """One lifecycle field of one subscriber (None for an unknown one)."""
        with self._store.transaction(write=False) as conn:
            return conn.scalar(select(column).where(subscribers.c.id == subscriber_id))

    def record_reason(self, subscriber_id: int, reason: str, detail: str = "") -> None:
        """A reader's answer to the one question after unsubscribing; a second answer from
        the same reader replaces the first."""
        with self._store.transaction() as conn:
            conn.execute(
                delete(unsubscribe_reasons).where(
                    unsubscribe_reasons.c.subscriber_id == subscriber_id
                )
            )
            conn.execute(
                insert(unsubscribe_reasons).values(
                    subscriber_id=subscriber_id, reason=reason, detail=detail, created_at=utcnow()
                )
            )

    def leaving_summary(self, recent: int = 10) -> LeavingSummary:
        """Answers per reason, the latest `other` texts, and the readers paused now."""
        with self._store.transaction(write=False) as conn:
            counts: dict[str, int] = dict(
                conn.execute(
                    select(unsubscribe_reasons.c.reason, func.count()).group_by(
                        unsubscribe_reasons.c.reason
                    )
                ).all()
            )
            words = conn.scalars(
                select(unsubscribe_reasons.c.detail)
                .where(unsubscribe_reasons.c.detail != "")
                .order_by(unsubscribe_reasons.c.created_at.desc(), unsubscribe_reasons.c.id.desc())
                .limit(recent)
            ).all()
            paused = conn.scalar(
                select(func.count())
                .select_from(subscribers)
                .where(subscribers.c.status == ACTIVE, subscribers.c.paused_until > utcnow())
            )
        return LeavingSummary(
            counts={str(r): counts.get(str(r), 0) for r in UnsubscribeReason},
            recent_other=tuple(words),
            paused=paused or 0,
        )
