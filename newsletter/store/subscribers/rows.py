"""The subscriber row as read and as inserted, and what every part of `Subscribers` shares."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, select, update

from newsletter.records import Subscriber, SubscriberStatus
from newsletter.store.schema import subscribers

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from newsletter.store import Store

ACTIVE, UNCONFIRMED, UNSUBSCRIBED = (
    SubscriberStatus.ACTIVE,
    SubscriberStatus.UNCONFIRMED,
    SubscriberStatus.UNSUBSCRIBED,
)


COLUMNS = (
    subscribers.c.id,
    subscribers.c.email,
    subscribers.c.name,
    subscribers.c.status,
    subscribers.c.token,
    subscribers.c.created_at,
    subscribers.c.updated_at,
    subscribers.c.timezone,
)


def subscriber(row: Any) -> Subscriber:
    return Subscriber(
        row.id,
        row.email,
        row.name,
        SubscriberStatus(row.status),
        row.token,
        row.created_at,
        row.updated_at,
        row.timezone or "",
    )


def new_row(
    row: Mapping[str, Any], now: datetime, created_at: datetime | None = None
) -> dict[str, Any]:
    """A new subscriber's row from a mapping of email, name, status, token and timezone
    (`created_at`: when they joined, if not now)."""
    return {
        "email": row["email"],
        "email_key": row["email"].lower(),
        "name": row.get("name", ""),
        "status": row.get("status", ACTIVE),
        "token": row["token"],
        "created_at": created_at or now,
        "updated_at": now,
        "timezone": row.get("timezone") or "",
    }


def ids_by_key(conn: Connection, keys: Iterable[str]) -> dict[str, int]:
    """email_key -> id for those of these lower-cased addresses that are known, 500 a query."""
    wanted = sorted(set(keys))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
        rows = conn.execute(
            select(subscribers.c.email_key, subscribers.c.id).where(
                subscribers.c.email_key.in_(wanted[start : start + 500])
            )
        )
        found.update({k: i for k, i in rows})
    return found


class Part:
    """What every part of `Subscribers` shares: the store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _changed(self, where: ColumnElement[bool], **values: Any) -> bool:
        """One conditional UPDATE of `subscribers`: whether it changed a row."""
        with self._store.transaction() as conn:
            return conn.execute(update(subscribers).where(where).values(**values)).rowcount > 0
