"""Counters behind the `limits` package (newsletter.web.ratelimit.DatabaseStorage): one row per
key in `rate_limits`, shared by every `serve` process on the database. Times are epoch
seconds, as limits reports them."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sqlalchemy import case, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from newsletter.store.schema import rate_limits

if TYPE_CHECKING:
    from newsletter.store import Store


class RateLimits:
    def __init__(self, store: Store) -> None:
        self._store = store

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add `amount` to a counter, starting a fresh window of `expiry` seconds if none is
        running; returns the new count. One atomic upsert on both backends."""
        now = time.time()
        insert = sqlite_insert if self._store.is_sqlite else pg_insert
        upsert = insert(rate_limits).values(key=key, count=amount, expires_at=now + expiry)
        expired = rate_limits.c.expires_at <= now
        statement = upsert.on_conflict_do_update(
            index_elements=[rate_limits.c.key],
            set_={
                "count": case((expired, amount), else_=rate_limits.c.count + amount),
                "expires_at": case((expired, now + expiry), else_=rate_limits.c.expires_at),
            },
        ).returning(rate_limits.c.count)
        with self._store.transaction() as conn:
            return int(conn.execute(statement).scalar_one())

    def get(self, key: str) -> tuple[int, float]:
        """(count, window end) of a running window, or (0, now)."""
        now = time.time()
        with self._store.transaction(write=False) as conn:
            row = conn.execute(
                select(rate_limits.c.count, rate_limits.c.expires_at).where(
                    rate_limits.c.key == key, rate_limits.c.expires_at > now
                )
            ).first()
        if row is None:
            return 0, now
        count, expires_at = row
        return int(count), float(expires_at)

    def clear(self, key: str | None = None) -> int:
        """Forget one counter (or, without a key, every one)."""
        query = delete(rate_limits)
        if key is not None:
            query = query.where(rate_limits.c.key == key)
        with self._store.transaction() as conn:
            return conn.execute(query).rowcount

    def prune(self) -> int:
        """Drop counters whose window is over."""
        with self._store.transaction() as conn:
            return conn.execute(
                delete(rate_limits).where(rate_limits.c.expires_at <= time.time())
            ).rowcount
