"""The list itself: who is known, looked up by address, token or id, confirmed, suppressed,
removed, counted, and the active ones in batches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, func, select

from newsletter.exceptions import NotFound
from newsletter.records import Recipient, Subscriber, SubscriberStatus, utcnow
from newsletter.store.audience import receiving
from newsletter.store.schema import subscribers
from newsletter.store.subscribers.rows import COLUMNS, Part, subscriber

ACTIVE, UNCONFIRMED, UNSUBSCRIBED = (
    SubscriberStatus.ACTIVE,
    SubscriberStatus.UNCONFIRMED,
    SubscriberStatus.UNSUBSCRIBED,
)


class Members(Part):
    def existing(self, email_keys: Iterable[str]) -> dict[str, str]:
        """email_key -> status for the given lower-cased addresses that are already known."""
        keys = list(email_keys)
        found: dict[str, str] = {}
        with self._store.transaction(write=False) as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                rows = conn.execute(
                    select(subscribers.c.email_key, subscribers.c.status).where(
                        subscribers.c.email_key.in_(chunk)
                    )
                )
                found.update({k: s for k, s in rows})
        return found

    def each(self, status: str | None = None) -> Iterator[Subscriber]:
        """Subscribers in id order (of one status if given), streamed."""
        query = select(*COLUMNS).order_by(subscribers.c.id)
        if status:
            query = query.where(subscribers.c.status == status)
        with self._store.transaction(write=False) as conn:
            for row in conn.execute(query):
                yield subscriber(row)

    def by_email(self, email: str) -> Subscriber | None:
        with self._store.transaction(write=False) as conn:
            row = conn.execute(
                select(*COLUMNS).where(subscribers.c.email_key == email.strip().lower())
            ).first()
        return subscriber(row) if row else None

    def by_token(self, token: str) -> Subscriber | None:
        with self._store.transaction(write=False) as conn:
            row = conn.execute(select(*COLUMNS).where(subscribers.c.token == token)).first()
        return subscriber(row) if row else None

    def by_id(self, subscriber_id: int) -> Subscriber | None:
        with self._store.transaction(write=False) as conn:
            row = conn.execute(select(*COLUMNS).where(subscribers.c.id == subscriber_id)).first()
        return subscriber(row) if row else None

    def suppress(self, email: str, status: str) -> bool:
        """Mark an address unsubscribed/bounced/complained; a worse status is never undone."""
        return self._changed(
            and_(
                subscribers.c.email_key == email.strip().lower(),
                subscribers.c.status.in_((ACTIVE, UNCONFIRMED, UNSUBSCRIBED)),
            ),
            status=status,
            updated_at=utcnow(),
        )

    def confirm(self, subscriber_id: int) -> bool:
        """Activate a pending (unconfirmed) subscriber. One conditional UPDATE, so a confirm
        link can never reactivate an address that unsubscribed, bounced or complained, even
        if that happened a moment before the click."""
        return self._changed(
            and_(subscribers.c.id == subscriber_id, subscribers.c.status == UNCONFIRMED),
            status=ACTIVE,
            updated_at=utcnow(),
        )

    def remove(self, email: str) -> None:
        """Delete a subscriber and their delivery rows (a removal, not an unsubscribe)."""
        with self._store.transaction() as conn:
            sid = conn.scalar(
                select(subscribers.c.id).where(subscribers.c.email_key == email.strip().lower())
            )
            if sid is None:
                raise NotFound(f"no subscriber {email!r}")
            self._store.deliveries.forget_subscriber(conn, sid)
            self._store.tags.forget_subscriber(conn, sid)
            conn.execute(delete(subscribers).where(subscribers.c.id == sid))

    def active_batches(self, size: int) -> Iterator[list[Recipient]]:
        """Active subscribers in id order, `size` at a time, without loading them all."""
        last = 0
        while True:
            with self._store.transaction(write=False) as conn:
                rows = conn.execute(
                    select(
                        subscribers.c.id,
                        subscribers.c.email,
                        subscribers.c.name,
                        subscribers.c.token,
                    )
                    .where(subscribers.c.status == ACTIVE, subscribers.c.id > last)
                    .order_by(subscribers.c.id)
                    .limit(size)
                ).all()
            if not rows:
                return
            yield [Recipient(r.id, r.email, r.name, r.token) for r in rows]
            last = rows[-1].id

    def count(self, status: str | None = ACTIVE, since: datetime | None = None) -> int:
        """How many have `status`; with `since`, only those whose status changed since then
        (a complaint's time, for the doctor's complaint rate)."""
        query = select(func.count()).select_from(subscribers)
        if status:
            query = query.where(subscribers.c.status == status)
        if since is not None:
            query = query.where(subscribers.c.updated_at >= since)
        with self._store.transaction(write=False) as conn:
            return conn.scalar(query) or 0

    def count_receiving(self, segment: ColumnElement[bool] | None = None) -> int:
        """How many would get an issue now: `receiving`, and the segment's clause if given
        (`newsletter.segments.compile`)."""
        where = receiving(utcnow())
        if segment is not None:
            where = and_(where, segment)
        with self._store.transaction(write=False) as conn:
            return conn.scalar(select(func.count()).select_from(subscribers).where(where)) or 0
