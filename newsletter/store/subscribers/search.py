"""The workspace's reads of the list: one page of subscribers by keyset (id, address or
name), a row by id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select

from newsletter.records import SubscriberStatus
from newsletter.store.schema import subscribers
from newsletter.store.subscribers.rows import Part

ACTIVE, UNCONFIRMED, UNSUBSCRIBED = (
    SubscriberStatus.ACTIVE,
    SubscriberStatus.UNCONFIRMED,
    SubscriberStatus.UNSUBSCRIBED,
)


@dataclass(frozen=True)
class SubscriberRow:
    """A subscriber as the workspace lists them (no token)."""

    id: int
    email: str
    name: str
    status: str
    created_at: datetime


@dataclass(frozen=True)
class SubscriberPage:
    rows: list[SubscriberRow]
    next_cursor: str | None  # pass as `after` for the next page; None on the last page


SEARCH_FIELDS = ("address", "name")
_SEP = "\x1f"
_ROW_COLUMNS = (
    subscribers.c.id,
    subscribers.c.email,
    subscribers.c.name,
    subscribers.c.status,
    subscribers.c.created_at,
)


def _prefix_range(column, prefix: str):
    """`column` starts with `prefix`, written as a range the column's index can serve."""
    return (column >= prefix) & (column < prefix + "\U0010ffff")


class Search(Part):
    # -- the workspace's search ------------------------------------------------------------
    def search(
        self,
        query: str = "",
        status: str | None = None,
        after: str = "",
        limit: int = 50,
        field: str = "address",
    ) -> SubscriberPage:
        """One page of subscribers (keyset pagination: `after` is the previous page's cursor).

        Without a query, in id order (the primary key, or the status index). With one, the
        addresses (or names) starting with it, case-insensitive, in the order of the index that
        finds them (the address key, or lower(name) then id): every page reads about `limit`
        index entries, however many rows match or where the page starts.
        """
        needle = query.strip().lower()
        stmt = select(*_ROW_COLUMNS)
        if status:
            stmt = stmt.where(subscribers.c.status == status)
        if not needle:
            start = int(after) if after.isdigit() and len(after) <= 18 else 0
            stmt = stmt.where(subscribers.c.id > start).order_by(subscribers.c.id)

            def cursor(row) -> str:
                return str(row.id)
        elif field == "name":
            key = func.lower(subscribers.c.name)
            stmt = stmt.add_columns(key.label("sort_key")).where(_prefix_range(key, needle))
            last_name, _, last_id = after.rpartition(_SEP)
            if after and last_id.isdigit() and len(last_id) <= 18:
                stmt = stmt.where(
                    or_(key > last_name, and_(key == last_name, subscribers.c.id > int(last_id)))
                )
            stmt = stmt.order_by(key, subscribers.c.id)

            def cursor(row) -> str:
                return f"{row.sort_key}{_SEP}{row.id}"
        else:
            stmt = stmt.add_columns(subscribers.c.email_key).where(
                _prefix_range(subscribers.c.email_key, needle)
            )
            if after:
                stmt = stmt.where(subscribers.c.email_key > after)
            stmt = stmt.order_by(subscribers.c.email_key)

            def cursor(row) -> str:
                return row.email_key

        with self._store.transaction(write=False) as conn:
            rows = conn.execute(stmt.limit(limit + 1)).all()
        page = [SubscriberRow(*r[:5]) for r in rows[:limit]]
        return SubscriberPage(page, cursor(rows[limit - 1]) if len(rows) > limit else None)

    def row_by_id(self, subscriber_id: int) -> SubscriberRow | None:
        with self._store.transaction(write=False) as conn:
            row = conn.execute(
                select(*_ROW_COLUMNS).where(subscribers.c.id == subscriber_id)
            ).first()
        return SubscriberRow(*row) if row else None
