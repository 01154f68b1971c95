"""The publication counter: what the public pages are cached on.

Every change to what readers can see (an issue created, an issue's status changed) bumps it in
the same transaction as the change itself; the web side reads it with one primary-key look-up
per request (coalesced) and serves pages rendered for that version. Several `serve` processes
on one database therefore never serve a page for a state the database no longer has.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from newsletter.exceptions import StoreError
from newsletter.records import PublicationVersion, utcnow
from newsletter.store.schema import publication

if TYPE_CHECKING:
    from newsletter.store import Store

_ROW = 1


def bump(conn: Connection) -> None:
    """Mark a change to the public pages, inside the caller's transaction (so the new
    version is visible exactly when the change is)."""
    conn.execute(
        update(publication)
        .where(publication.c.id == _ROW)
        .values(version=publication.c.version + 1, changed_at=utcnow())
    )


class Publication:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._held: list[Any] = []
        self._query = select(publication.c.version, publication.c.changed_at).where(
            publication.c.id == _ROW
        )

    def current(self) -> PublicationVersion:
        """The version the public pages must be rendered for, and when it last changed."""
        with self._store.transaction(write=False) as conn:
            row = conn.execute(self._query).first()
        if row is None:  # migration 0004 makes it; without it no change would ever show
            raise StoreError(
                f"the table 'publication' of {self._store.safe_url} has no row {_ROW}: "
                "it was changed by hand; restore it or start from a new database"
            )
        return PublicationVersion(int(row.version), row.changed_at)

    def sqlite_reader(self) -> Callable[[], PublicationVersion] | None:
        """On SQLite, a reader cheap enough to call for every request on the event loop: a
        connection of its own in autocommit mode, so each read sees the latest commit of any
        process (a WAL reader does not wait for writers; if it ever must, it gives up after
        50 ms with sqlite3.OperationalError and the caller reads through `current`). None on
        other backends, whose reads go through `current` in a thread."""
        if not self._store.is_sqlite:
            return None
        held = self._store.engine.raw_connection()  # kept for the store's life
        dbapi: Any = held.driver_connection
        dbapi.execute("PRAGMA busy_timeout=50")
        sql = "SELECT version, changed_at FROM publication WHERE id = ?"
        last: list[PublicationVersion] = []

        def read() -> PublicationVersion:
            row = dbapi.execute(sql, (_ROW,)).fetchone()
            if row is None:
                return self.current()  # raises, saying what is wrong
            if not last or last[0].version != row[0]:
                moment = datetime.fromisoformat(row[1]).replace(tzinfo=UTC)
                last[:] = [PublicationVersion(int(row[0]), moment)]
            return last[0]

        self._held.append(held)
        return read

    def close(self) -> None:
        for held in self._held:
            held.invalidate()  # closes it rather than handing it back to a disposed pool
        self._held.clear()

    def bump(self) -> None:
        """A change made outside the store's own methods (e.g. a template update): every
        server renders its public pages again."""
        with self._store.transaction() as conn:
            bump(conn)
