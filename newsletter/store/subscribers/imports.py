"""New rows in bulk: `add`, a whole CSV import with statuses, zones and tags in one
transaction, and the expiry of sign-ups never confirmed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, insert, update

from newsletter.records import SubscriberStatus, utcnow
from newsletter.store.schema import subscribers
from newsletter.store.subscribers.rows import Part, ids_by_key, new_row

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


ACTIVE, UNCONFIRMED, UNSUBSCRIBED = (
    SubscriberStatus.ACTIVE,
    SubscriberStatus.UNCONFIRMED,
    SubscriberStatus.UNSUBSCRIBED,
)


class Imports(Part):
    def add(self, rows: Iterable[Mapping[str, str]], chunk_size: int = 5000) -> int:
        """Insert subscribers (mappings of email, name, status, token) in one transaction."""
        now = utcnow()
        count = 0
        with self._store.transaction() as conn:
            chunk: list[dict[str, Any]] = []
            for row in rows:
                chunk.append(new_row(row, now))
                if len(chunk) >= chunk_size:
                    conn.execute(insert(subscribers), chunk)
                    count += len(chunk)
                    chunk = []
            if chunk:
                conn.execute(insert(subscribers), chunk)
                count += len(chunk)
        return count

    def import_rows(
        self,
        new_rows: list[dict[str, Any]],
        changes: list[tuple[str, str, str, str]],
        zones: Mapping[str, str] | None = None,
        tags: Mapping[str, tuple[str, ...]] | None = None,
        *,
        also: Callable[[Connection, int, int], None] | None = None,
    ) -> tuple[int, int]:
        """Apply a whole CSV import in one transaction: insert `new_rows` (email, name, status,
        token, optional created_at) and apply `changes` (email_key, status read before, new
        status, name). A change only lands if the status is still the one read, so a person
        who unsubscribed during the import is not overwritten. `zones` (email_key -> IANA
        name) sets the time zone of known rows the file gives one for. `also(conn, inserted,
        updated)` runs last in the same transaction (a job's progress, committed with its
        rows). Returns (inserted, updated)."""
        now = utcnow()
        inserted = updated = 0
        with self._store.transaction() as conn:
            for start in range(0, len(new_rows), 5000):
                chunk = [
                    new_row(row, now, row.get("created_at"))
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
            if tags:
                # The file's tags are added to the row's (an import never takes a tag away).
                keys = sorted(tags)
                ids = ids_by_key(conn, keys)
                self._store.tags.add_in(
                    conn, ((ids[k], tag) for k in keys if k in ids for tag in tags[k])
                )
            if also is not None:
                also(conn, inserted, updated)
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
