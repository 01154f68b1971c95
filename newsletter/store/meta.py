"""The key-value `meta` table (small pieces of state: the per-database signing key, the ticks
served and held, the next issue's layout) and the sending lease beside it (one active sender
at a time, crash-safe takeover)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from newsletter.records import utcnow
from newsletter.store.schema import leases, meta_table

if TYPE_CHECKING:
    from newsletter.store import Store


# The ticks the scheduler keeps in `meta` (ISO timestamps): the last one served, one missed by
# more than the grace period and waiting for the editor, and when a scheduler first served
# this newsletter (a tick before it was never the scheduler's to serve, so it cannot have been
# "missed while the scheduler was down"). The missed tick's key keeps its first name
# ("held_tick") so a database that has one keeps it.
LAST_TICK, MISSED_TICK, SCHEDULER_STARTED = "last_served_tick", "held_tick", "scheduler_started"


class Meta:
    def __init__(self, store: Store) -> None:
        self._store = store

    # -- leases (one active scheduler, crash-safe takeover) ---------------------------------
    def acquire(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take or renew the lease `name`; succeeds if free, expired, or already ours."""
        now = utcnow()
        with self._store.transaction() as conn:
            taken = conn.execute(
                update(leases)
                .where(leases.c.name == name)
                .where((leases.c.holder == holder) | (leases.c.expires_at < now))
                .values(holder=holder, expires_at=now + ttl)
            ).rowcount
            if taken:
                return True
            if conn.scalar(select(func.count()).select_from(leases).where(leases.c.name == name)):
                return False
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(leases).values(name=name, holder=holder, expires_at=now + ttl)
                    )
            except IntegrityError:
                return False
            return True

    def take_over(self, name: str, old_holder: str, holder: str, ttl: timedelta) -> bool:
        """Take a lease from a holder known to be dead, only if it is still theirs."""
        with self._store.transaction() as conn:
            return (
                conn.execute(
                    update(leases)
                    .where(leases.c.name == name, leases.c.holder == old_holder)
                    .values(holder=holder, expires_at=utcnow() + ttl)
                ).rowcount
                > 0
            )

    def release(self, name: str, holder: str) -> None:
        with self._store.transaction() as conn:
            conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))

    def holder(self, name: str) -> tuple[str, datetime] | None:
        with self._store.transaction(write=False) as conn:
            row = conn.execute(
                select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)
            ).first()
        return (row.holder, row.expires_at) if row else None

    # -- meta ------------------------------------------------------------------------------
    def secret_key(self) -> str:
        """A per-database signing key, made once, for when NEWSLETTER_SECRET_KEY is not set."""
        with self._store.transaction() as conn:
            value = conn.scalar(select(meta_table.c.value).where(meta_table.c.key == "secret"))
            if value is None:
                value = secrets.token_urlsafe(32)
                try:
                    with conn.begin_nested():
                        conn.execute(insert(meta_table).values(key="secret", value=value))
                except IntegrityError:  # another process made it first: use theirs
                    value = conn.scalar(
                        select(meta_table.c.value).where(meta_table.c.key == "secret")
                    )
            return str(value)

    def get(self, key: str) -> str | None:
        with self._store.transaction(write=False) as conn:
            return conn.scalar(select(meta_table.c.value).where(meta_table.c.key == key))

    def set(self, key: str, value: str | None) -> None:
        """Set (or with None, delete) a small piece of state such as the last served tick."""
        with self._store.transaction() as conn:
            if value is None:
                conn.execute(delete(meta_table).where(meta_table.c.key == key))
                return
            upsert = (sqlite_insert if self._store.is_sqlite else pg_insert)(meta_table).values(
                key=key, value=value
            )
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[meta_table.c.key], set_={"value": upsert.excluded.value}
                )
            )

    def moment(self, key: str) -> datetime | None:
        """A time kept under `key` (e.g. `MISSED_TICK`), or None."""
        value = self.get(key)
        return datetime.fromisoformat(value) if value else None

    def set_moment(self, key: str, value: datetime | None) -> None:
        self.set(key, value.isoformat() if value is not None else None)
