"""Subscribers' tags: `tags` (every tag in use or once used, what a segment may name) and
`subscriber_tags` (who carries which), and its copy on each row, `subscribers.tag_text`,
which segments read: this module is the only writer of all three, in one transaction each
time. Tag names arrive already checked (newsletter.tags)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Executable, Table, Text, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from newsletter.exceptions import NotFound
from newsletter.records import utcnow
from newsletter.store.schema import subscriber_tags, subscribers, tags
from newsletter.store.subscribers.rows import ids_by_key

if TYPE_CHECKING:
    from newsletter.store import Store


def _insert_ignoring(store: Store, table: Table, rows: list[dict]) -> Executable:
    """INSERT ... ON CONFLICT DO NOTHING on either backend."""
    if store.is_sqlite:
        return sqlite_insert(table).values(rows).on_conflict_do_nothing()
    return pg_insert(table).values(rows).on_conflict_do_nothing()


class Tags:
    def __init__(self, store: Store) -> None:
        self._store = store

    def names(self) -> list[str]:
        """Every known tag, sorted: what a segment may name."""
        with self._store.transaction(write=False) as conn:
            return list(conn.scalars(select(tags.c.name).order_by(tags.c.name)))

    def counts(self) -> dict[str, int]:
        """Each known tag and how many subscribers carry it (0 for one no longer used)."""
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(tags.c.name, func.count(subscriber_tags.c.subscriber_id))
                .select_from(tags.outerjoin(subscriber_tags, subscriber_tags.c.tag == tags.c.name))
                .group_by(tags.c.name)
                .order_by(tags.c.name)
            ).all()
        return {name: count for name, count in rows}

    def refresh_copies(self, conn: Connection, subscriber_ids: Iterable[int]) -> None:
        """Write `subscribers.tag_text` (" films horror ", "" for none) again for these
        subscribers from `subscriber_tags`, in the transaction that changed their tags, the
        old copy in `tags_before` (with `tags_changed_at`)."""
        ids = sorted(set(subscriber_ids))
        now = utcnow()
        joined = (
            func.group_concat(subscriber_tags.c.tag, " ")
            if self._store.is_sqlite
            else func.string_agg(subscriber_tags.c.tag, " ")
        )
        listed = (
            select(joined)
            .where(subscriber_tags.c.subscriber_id == subscribers.c.id)
            .scalar_subquery()
        )
        text_value = func.coalesce(literal(" ", Text) + listed + literal(" ", Text), "")
        for start in range(0, len(ids), 500):
            conn.execute(
                update(subscribers)
                .where(subscribers.c.id.in_(ids[start : start + 500]))
                # The old copy kept beside the new one (right-hand sides read the row as it
                # was): a claim of a segmented issue tells who stopped matching mid-send.
                .values(
                    tag_text=text_value, tags_before=subscribers.c.tag_text, tags_changed_at=now
                )
            )

    def add_in(self, conn: Connection, pairs: Iterable[tuple[int, str]]) -> None:
        """Tag (subscriber id, tag) pairs inside the caller's transaction (an import's)."""
        wanted = sorted(set(pairs))
        if not wanted:
            return
        now = utcnow()
        names = sorted({tag for _, tag in wanted})
        conn.execute(
            _insert_ignoring(self._store, tags, [{"name": n, "created_at": now} for n in names])
        )
        for start in range(0, len(wanted), 5000):
            chunk = wanted[start : start + 5000]
            conn.execute(
                _insert_ignoring(
                    self._store,
                    subscriber_tags,
                    [{"subscriber_id": sid, "tag": tag} for sid, tag in chunk],
                )
            )
        self.refresh_copies(conn, (sid for sid, _ in wanted))

    def _ids(self, conn: Connection, emails: Iterable[str]) -> dict[str, int]:
        keys = sorted({e.strip().lower() for e in emails})
        found = ids_by_key(conn, keys)
        missing = [k for k in keys if k not in found]
        if missing:
            raise NotFound(f"no subscriber {', '.join(map(repr, missing[:5]))}: nothing was tagged")
        return found

    def tag(self, emails: Iterable[str], tag: str) -> int:
        """Give `tag` to these subscribers (all of them or, if one is unknown, none)."""
        with self._store.transaction() as conn:
            ids = self._ids(conn, emails)
            before = self._count(conn, tag)
            self.add_in(conn, ((sid, tag) for sid in ids.values()))
            return self._count(conn, tag) - before

    def untag(self, emails: Iterable[str], tag: str) -> int:
        """Take `tag` from these subscribers; the tag stays known (segments keep working)."""
        with self._store.transaction() as conn:
            if conn.scalar(select(tags.c.name).where(tags.c.name == tag)) is None:
                raise NotFound(f"no tag {tag!r} (tags: {', '.join(self._all(conn)) or 'none'})")
            ids = self._ids(conn, emails)
            removed = conn.execute(
                delete(subscriber_tags).where(
                    subscriber_tags.c.tag == tag,
                    subscriber_tags.c.subscriber_id.in_(sorted(ids.values())),
                )
            ).rowcount
            self.refresh_copies(conn, ids.values())
            return removed

    def _count(self, conn: Connection, tag: str) -> int:
        return (
            conn.scalar(
                select(func.count())
                .select_from(subscriber_tags)
                .where(subscriber_tags.c.tag == tag)
            )
            or 0
        )

    def _all(self, conn: Connection) -> list[str]:
        return list(conn.scalars(select(tags.c.name).order_by(tags.c.name)))

    def of(self, subscriber_ids: Iterable[int]) -> dict[int, list[str]]:
        """The tags of these subscribers (the workspace's page, the export)."""
        ids = sorted(set(subscriber_ids))
        found: dict[int, list[str]] = {}
        with self._store.transaction(write=False) as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(
                    select(subscriber_tags.c.subscriber_id, subscriber_tags.c.tag)
                    .where(subscriber_tags.c.subscriber_id.in_(ids[start : start + 500]))
                    .order_by(subscriber_tags.c.subscriber_id, subscriber_tags.c.tag)
                )
                for sid, tag in rows:
                    found.setdefault(sid, []).append(tag)
        return found

    def forget_subscriber(self, conn: Connection, subscriber_id: int) -> None:
        conn.execute(
            delete(subscriber_tags).where(subscriber_tags.c.subscriber_id == subscriber_id)
        )
