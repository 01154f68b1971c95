"""Editor accounts and their sessions (`store.editors`): tables `editors` and
`editor_sessions`.

A session is a row keyed by the hash of a random id (the cookie carries the id itself, see
`newsletter.editors`), so ending one is a DELETE: on sign-out, for every session of an editor
on a password change or "sign out everywhere", and with the account (the foreign key
cascades, and the delete says so too). Ids of `editors` are never reused (AUTOINCREMENT), so
nothing that named a removed editor can name a new one. The sign-in throttling counters are
not here: they are `rate_limits` rows behind the `limits` package (newsletter.web.admin.session).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from newsletter.exceptions import NewsletterError, NotFound
from newsletter.records import utcnow
from newsletter.store.schema import editor_sessions, editors

if TYPE_CHECKING:
    from newsletter.store import Store

# A session's last-seen time is written at most this often: a page view is then a read, not
# a write on SQLite's one writer, and idle expiry is still to the minute.
SEEN_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, kw_only=True)
class EditorRow:
    id: int
    email: str
    password_hash: str
    timezone: str
    created_at: datetime

    def __repr__(self) -> str:  # the hash is not a secret, but has no place in logs
        return f"EditorRow(id={self.id}, email={self.email!r})"


def _editor(row) -> EditorRow:
    return EditorRow(
        id=row.id,
        email=row.email,
        password_hash=row.password_hash,
        timezone=row.timezone,
        created_at=row.created_at,
    )


_EDITOR_COLUMNS = (
    editors.c.id,
    editors.c.email,
    editors.c.password_hash,
    editors.c.timezone,
    editors.c.created_at,
)


class Editors:
    """Accounts (address, Argon2 hash, time zone) and their server-side sessions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # -- accounts ------------------------------------------------------------------------------
    def insert(self, email: str, password_hash: str, timezone: str = "") -> EditorRow:
        now = utcnow()
        with self._store.transaction() as conn:
            try:
                with conn.begin_nested():
                    created = conn.execute(
                        insert(editors).values(
                            email=email,
                            email_key=email.lower(),
                            password_hash=password_hash,
                            timezone=timezone,
                            created_at=now,
                            updated_at=now,
                        )
                    ).inserted_primary_key
            except IntegrityError:
                raise NewsletterError(
                    f"editor {email} already exists (change the password with "
                    "'newsletter editors password')"
                ) from None
            assert created is not None
            row = conn.execute(select(*_EDITOR_COLUMNS).where(editors.c.id == created[0])).one()
            return _editor(row)

    def by_email(self, email: str) -> EditorRow | None:
        with self._store.transaction(write=False) as conn:
            row = conn.execute(
                select(*_EDITOR_COLUMNS).where(editors.c.email_key == email.strip().lower())
            ).first()
        return _editor(row) if row else None

    def by_id(self, editor_id: int) -> EditorRow | None:
        with self._store.transaction(write=False) as conn:
            row = conn.execute(select(*_EDITOR_COLUMNS).where(editors.c.id == editor_id)).first()
        return _editor(row) if row else None

    def all(self) -> list[EditorRow]:
        with self._store.transaction(write=False) as conn:
            query = select(*_EDITOR_COLUMNS).order_by(editors.c.email_key)
            return [_editor(r) for r in conn.execute(query)]

    def update_password(self, editor_id: int, password_hash: str, *, end_sessions: bool) -> None:
        """Store a new hash; `end_sessions` ends every session of the editor in the same
        transaction (a password change); a mere rehash with stronger parameters keeps them."""
        with self._store.transaction() as conn:
            conn.execute(
                update(editors)
                .where(editors.c.id == editor_id)
                .values(password_hash=password_hash, updated_at=utcnow())
            )
            if end_sessions:
                conn.execute(
                    delete(editor_sessions).where(editor_sessions.c.editor_id == editor_id)
                )

    def delete(self, email: str) -> None:
        """Remove the account and, in the same transaction, every session it had."""
        key = email.strip().lower()
        with self._store.transaction() as conn:
            found = conn.execute(select(editors.c.id).where(editors.c.email_key == key)).first()
            if found is not None:
                conn.execute(delete(editor_sessions).where(editor_sessions.c.editor_id == found.id))
                conn.execute(delete(editors).where(editors.c.id == found.id))
        if found is None:
            raise NotFound(f"no editor {email!r} (see 'newsletter editors list')")

    # -- sessions ------------------------------------------------------------------------------
    def start_session(self, editor_id: int, id_hash: str) -> None:
        now = utcnow()
        with self._store.transaction() as conn:
            conn.execute(
                insert(editor_sessions).values(
                    id_hash=id_hash, editor_id=editor_id, created_at=now, seen_at=now
                )
            )

    def session_editor(
        self, id_hash: str, *, idle: timedelta, max_age: timedelta
    ) -> EditorRow | None:
        """The editor of a live session: one used within `idle` and begun within `max_age`.
        A dead one is deleted; a live one's last-seen time moves on (once a minute)."""
        now = utcnow()
        query = (
            select(
                *_EDITOR_COLUMNS,
                editor_sessions.c.created_at.label("began"),
                editor_sessions.c.seen_at,
            )
            .select_from(editors.join(editor_sessions))
            .where(editor_sessions.c.id_hash == id_hash)
        )
        with self._store.transaction(write=False) as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        if row.seen_at <= now - idle or row.began <= now - max_age:
            self.end_session(id_hash)
            return None
        if row.seen_at <= now - SEEN_RESOLUTION:
            with self._store.transaction() as conn:
                conn.execute(
                    update(editor_sessions)
                    .where(editor_sessions.c.id_hash == id_hash)
                    .values(seen_at=now)
                )
        return _editor(row)

    def end_session(self, id_hash: str) -> None:
        with self._store.transaction() as conn:
            conn.execute(delete(editor_sessions).where(editor_sessions.c.id_hash == id_hash))

    def end_sessions(self, editor_id: int) -> int:
        """End every session of an editor ("sign out everywhere"); how many there were."""
        with self._store.transaction() as conn:
            return conn.execute(
                delete(editor_sessions).where(editor_sessions.c.editor_id == editor_id)
            ).rowcount

    def sessions_of(self, editor_id: int) -> int:
        """How many sessions an editor has (live or not yet pruned)."""
        with self._store.transaction(write=False) as conn:
            return len(
                conn.execute(
                    select(editor_sessions.c.id_hash).where(
                        editor_sessions.c.editor_id == editor_id
                    )
                ).all()
            )

    def prune_sessions(self, *, idle: timedelta, max_age: timedelta) -> int:
        """Delete the sessions that can no longer be used."""
        now = utcnow()
        with self._store.transaction() as conn:
            return conn.execute(
                delete(editor_sessions).where(
                    (editor_sessions.c.seen_at <= now - idle)
                    | (editor_sessions.c.created_at <= now - max_age)
                )
            ).rowcount
