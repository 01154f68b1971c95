"""The subscriber list: imports, sign-ups and confirmations, suppressions, batches of the
active ones, and the workspace's search (keyset pages by id, address or name)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update

from newsletter.exceptions import NotFound
from newsletter.records import Recipient, Subscriber, SubscriberStatus, utcnow
from newsletter.store.schema import subscribers

if TYPE_CHECKING:
    from newsletter.store import Store

ACTIVE, UNCONFIRMED, UNSUBSCRIBED = (
    SubscriberStatus.ACTIVE,
    SubscriberStatus.UNCONFIRMED,
    SubscriberStatus.UNSUBSCRIBED,
)
_COLUMNS = (
    subscribers.c.id,
    subscribers.c.email,
    subscribers.c.name,
    subscribers.c.status,
    subscribers.c.token,
    subscribers.c.created_at,
    subscribers.c.updated_at,
    subscribers.c.timezone,
)


def _subscriber(row: Any) -> Subscriber:
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


class Subscribers:
    def __init__(self, store: Store) -> None:
        self._store = store

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

    def add(self, rows: Iterable[Mapping[str, str]], chunk_size: int = 5000) -> int:
        """Insert subscribers (mappings of email, name, status, token) in one transaction."""
        now = utcnow()
        count = 0
        with self._store.transaction() as conn:
            chunk: list[dict[str, Any]] = []
            for row in rows:
                chunk.append(
                    {
                        "email": row["email"],
                        "email_key": row["email"].lower(),
                        "name": row.get("name", ""),
                        "status": row.get("status", ACTIVE),
                        "token": row["token"],
                        "created_at": now,
                        "updated_at": now,
                        "timezone": row.get("timezone", ""),
                    }
                )
                if len(chunk) >= chunk_size:
                    conn.execute(insert(subscribers), chunk)
                    count += len(chunk)
                    chunk = []
            if chunk:
                conn.execute(insert(subscribers), chunk)
                count += len(chunk)
        return count

    def each(self, status: str | None = None) -> Iterator[Subscriber]:
        """Subscribers in id order (of one status if given), streamed."""
        query = select(*_COLUMNS).order_by(subscribers.c.id)
        if status:
            query = query.where(subscribers.c.status == status)
        with self._store.transaction(write=False) as conn:
            for row in conn.execute(query):
                yield _subscriber(row)

    def by_email(self, email: str) -> Subscriber | None:
        with self._store.transaction(write=False) as conn:
            row = conn.execute(
                select(*_COLUMNS).where(subscribers.c.email_key == email.strip().lower())
            ).first()
        return _subscriber(row) if row else None

    def by_token(self, token: str) -> Subscriber | None:
        with self._store.transaction(write=False) as conn:
            row = conn.execute(select(*_COLUMNS).where(subscribers.c.token == token)).first()
        return _subscriber(row) if row else None

    def suppress(self, email: str, status: str) -> bool:
        """Mark an address unsubscribed/bounced/complained; a worse status is never undone."""
        with self._store.transaction() as conn:
            result = conn.execute(
                update(subscribers)
                .where(subscribers.c.email_key == email.strip().lower())
                .where(subscribers.c.status.in_((ACTIVE, UNCONFIRMED, UNSUBSCRIBED)))
                .values(status=status, updated_at=utcnow())
            )
            return result.rowcount > 0

    def confirm(self, subscriber_id: int) -> bool:
        """Activate a pending (unconfirmed) subscriber. One conditional UPDATE, so a confirm
        link can never reactivate an address that unsubscribed, bounced or complained, even
        if that happened a moment before the click."""
        with self._store.transaction() as conn:
            return (
                conn.execute(
                    update(subscribers)
                    .where(subscribers.c.id == subscriber_id)
                    .where(subscribers.c.status == UNCONFIRMED)
                    .values(status=ACTIVE, updated_at=utcnow())
                ).rowcount
                > 0
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

    # -- import with statuses, expiry of sign-ups ------------------------------------------
    def import_rows(
        self,
        new_rows: list[dict[str, Any]],
        changes: list[tuple[str, str, str, str]],
        zones: Mapping[str, str] | None = None,
    ) -> tuple[int, int]:
        """Apply a whole CSV import in one transaction: insert `new_rows` (email, name, status,
        token, optional created_at) and apply `changes` (email_key, status read before, new
        status, name). A change only lands if the status is still the one read, so a person
        who unsubscribed during the import is not overwritten. `zones` (email_key -> IANA
        name) sets the time zone of known rows the file gives one for. Returns (inserted,
        updated)."""
        now = utcnow()
        inserted = updated = 0
        with self._store.transaction() as conn:
            for start in range(0, len(new_rows), 5000):
                chunk = [
                    {
                        "email": row["email"],
                        "email_key": row["email"].lower(),
                        "name": row.get("name", ""),
                        "status": row.get("status", ACTIVE),
                        "token": row["token"],
                        "created_at": row.get("created_at") or now,
                        "updated_at": now,
                        "timezone": row.get("timezone") or "",
                    }
                    for row in new_rows[start : start + 5000]
                ]
                conn.execute(insert(subscribers), chunk)
                inserted += len(chunk)
            if changes:
                result = conn.execute(
                    update(subscribers)
                    .where(
                        subscribers.c.email_key == bindparam("k"),
                        subscribers.c.status == bindparam("old"),
                    )
                    .values(name=bindparam("n"), status=bindparam("new"), updated_at=now),
                    [{"k": k, "old": old, "new": new, "n": n} for k, old, new, n in changes],
                )
                count = result.rowcount
                updated = len(changes) if count is None or count < 0 else count
            if zones:
                conn.execute(
                    update(subscribers)
                    .where(subscribers.c.email_key == bindparam("k"))
                    .values(timezone=bindparam("z")),
                    [{"k": k, "z": z} for k, z in zones.items()],
                )
        return inserted, updated

    def purge_unconfirmed(self, older_than: datetime) -> int:
        """Delete sign-ups made before `older_than` and never confirmed. Unconfirmed rows never
        have deliveries (only active subscribers are planned, and nothing makes a subscriber
        unconfirmed again), so nothing else refers to them."""
        with self._store.transaction() as conn:
            return conn.execute(
                delete(subscribers).where(
                    subscribers.c.status == UNCONFIRMED, subscribers.c.created_at < older_than
                )
            ).rowcount

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
