"""The feeds' state (`feeds`: the conditional GET's validators, when each is due again, its
failures) and every feed entry ever seen (`feed_entries`, by the hash of its id): an entry is
taken once, whatever restarts or edits of the feed happen."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update

from newsletter.store.schema import feed_entries, feeds

if TYPE_CHECKING:
    from newsletter.store import Store

# SQLite's older builds allow 999 bound parameters per statement: look-ups go in chunks.
CHUNK = 500


@dataclass(frozen=True, kw_only=True)
class FeedState:
    url: str
    etag: str | None
    last_modified: str | None
    fetched_at: datetime | None
    ok_at: datetime | None  # the last fetch that worked; None: never (the first fetch is next)
    next_at: datetime | None
    failures: int
    last_error: str | None


@dataclass(frozen=True, kw_only=True)
class FeedEntryRow:
    guid_hash: str
    guid: str
    feed_url: str
    title: str
    link: str
    status: str  # queued | held | seen
    filename: str | None
    error: str | None
    seen_at: datetime


def _state(row: Any) -> FeedState:
    return FeedState(**dict(row._mapping))


def _entry(row: Any) -> FeedEntryRow:
    return FeedEntryRow(**dict(row._mapping))


class Feeds:
    def __init__(self, store: Store) -> None:
        self._store = store

    def state(self, url: str) -> FeedState | None:
        with self._store.transaction(write=False) as conn:
            row = conn.execute(select(feeds).where(feeds.c.url == url)).first()
        return _state(row) if row else None

    def states(self) -> dict[str, FeedState]:
        with self._store.transaction(write=False) as conn:
            return {r.url: _state(r) for r in conn.execute(select(feeds))}

    def record_fetch(
        self,
        url: str,
        *,
        at: datetime,
        next_at: datetime,
        error: str | None,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> None:
        """One fetch's outcome: validators and `ok_at` on success (None validators keep
        the previous ones), a failure counted with its error otherwise."""
        with self._store.transaction() as conn:
            row = conn.execute(select(feeds).where(feeds.c.url == url)).first()
            if row is None:
                conn.execute(insert(feeds).values(url=url, failures=0))
            values: dict[str, Any] = {"fetched_at": at, "next_at": next_at}
            if error is None:
                values.update(ok_at=at, failures=0, last_error=None)
                if etag is not None:
                    values["etag"] = etag
                if last_modified is not None:
                    values["last_modified"] = last_modified
            else:
                values.update(failures=feeds.c.failures + 1, last_error=error)
            conn.execute(update(feeds).where(feeds.c.url == url).values(**values))

    def known(self, hashes: Iterable[str]) -> set[str]:
        """Which of these entry hashes were already seen (by any feed)."""
        wanted = list(dict.fromkeys(hashes))
        found: set[str] = set()
        with self._store.transaction(write=False) as conn:
            for i in range(0, len(wanted), CHUNK):
                found.update(
                    conn.scalars(
                        select(feed_entries.c.guid_hash).where(
                            feed_entries.c.guid_hash.in_(wanted[i : i + CHUNK])
                        )
                    )
                )
        return found

    def add_entries(self, rows: Sequence[FeedEntryRow]) -> None:
        """Remember entries as seen (one transaction for all of them)."""
        if not rows:
            return
        with self._store.transaction() as conn:
            conn.execute(insert(feed_entries), [asdict(r) for r in rows])

    def entries(self, statuses: Sequence[str], limit: int = 200) -> list[FeedEntryRow]:
        """The latest entries in these states, newest first (the workspace's list)."""
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(feed_entries)
                .where(feed_entries.c.status.in_(list(statuses)))
                .order_by(feed_entries.c.seen_at.desc(), feed_entries.c.guid_hash)
                .limit(limit)
            )
            return [_entry(r) for r in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        """(feed url, status) -> entries."""
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(feed_entries.c.feed_url, feed_entries.c.status, func.count()).group_by(
                    feed_entries.c.feed_url, feed_entries.c.status
                )
            )
            return {(r[0], r[1]): int(r[2]) for r in rows}
