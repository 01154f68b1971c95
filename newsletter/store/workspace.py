"""The SQL of the editors' workspace (`store.workspace`): editor accounts, the sign-in
throttling counters, engagement per hour, alerts already sent, and the look-ups its pages need
(queue moves, subscriber search with keyset pages, a page of uncertain rows, the counts of a
finished issue)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.schema import Table

from newsletter.exceptions import NewsletterError, NotFound
from newsletter.records import (
    ArticleStatus,
    DeliveryState,
    IssueStatus,
    QueuedArticle,
    utcnow,
)
from newsletter.store.schema import (
    alerts_sent,
    articles,
    deliveries,
    editors,
    engagement_hours,
    issues,
    subscribers,
)

if TYPE_CHECKING:
    from newsletter.store import Store

QUEUED, UNCERTAIN = ArticleStatus.QUEUED, DeliveryState.UNCERTAIN


@dataclass(frozen=True)
class EditorRow:
    id: int
    email: str
    password_hash: str
    session_version: int
    timezone: str
    created_at: datetime

    def __repr__(self) -> str:  # the hash is not a secret, but has no place in logs
        return f"EditorRow(id={self.id}, email={self.email!r})"


@dataclass(frozen=True)
class SubscriberRow:
    id: int
    email: str
    name: str
    status: str
    created_at: datetime


@dataclass(frozen=True)
class IssueAttention:
    """An issue an editor should look at: paused, or with uncertain recipients left."""

    id: int
    subject: str
    status: IssueStatus
    last_error: str | None
    uncertain: int


@dataclass(frozen=True)
class SubscriberPage:
    rows: list[SubscriberRow]
    next_cursor: str | None  # pass as `after` for the next page; None on the last page


def _editor(row) -> EditorRow:
    return EditorRow(
        row.id, row.email, row.password_hash, row.session_version, row.timezone, row.created_at
    )


SEARCH_FIELDS = ("address", "name")
_SEP = "\x1f"


def _prefix_range(column, prefix: str):
    """`column` starts with `prefix`, written as a range the column's index can serve."""
    return (column >= prefix) & (column < prefix + "\U0010ffff")


class Workspace:
    """The editors' workspace: accounts, counters, alerts, engagement per hour, and the
    look-ups of its pages."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _upsert(self, table: Table):
        return (sqlite_insert if self._store.is_sqlite else pg_insert)(table)

    # -- editors -------------------------------------------------------------------------------
    def insert_editor(self, email: str, password_hash: str, timezone: str = "") -> EditorRow:
        now = utcnow()
        with self._store.transaction() as conn:
            try:
                with conn.begin_nested():
                    created = conn.execute(
                        insert(editors).values(
                            email=email,
                            email_key=email.lower(),
                            password_hash=password_hash,
                            session_version=1,
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
            return _editor(conn.execute(select(editors).where(editors.c.id == created[0])).one())

    def editor_by_email(self, email: str) -> EditorRow | None:
        with self._store.transaction(write=False) as conn:
            row = conn.execute(
                select(editors).where(editors.c.email_key == email.strip().lower())
            ).first()
        return _editor(row) if row else None

    def editor_by_id(self, editor_id: int) -> EditorRow | None:
        with self._store.transaction(write=False) as conn:
            row = conn.execute(select(editors).where(editors.c.id == editor_id)).first()
        return _editor(row) if row else None

    def all_editors(self) -> list[EditorRow]:
        with self._store.transaction(write=False) as conn:
            return [_editor(r) for r in conn.execute(select(editors).order_by(editors.c.email_key))]

    def update_password(self, editor_id: int, password_hash: str, *, new_session: bool) -> None:
        """Store a new hash; `new_session` ends every session of the editor (a password change),
        a mere rehash with stronger parameters keeps them."""
        values: dict = {"password_hash": password_hash, "updated_at": utcnow()}
        if new_session:
            values["session_version"] = editors.c.session_version + 1
        with self._store.transaction() as conn:
            conn.execute(update(editors).where(editors.c.id == editor_id).values(**values))

    def delete_editor(self, email: str) -> None:
        with self._store.transaction() as conn:
            gone = conn.execute(
                delete(editors).where(editors.c.email_key == email.strip().lower())
            ).rowcount
        if not gone:
            raise NotFound(f"no editor {email!r} (see 'newsletter editors list')")

    # -- the queue -----------------------------------------------------------------------------
    def queued_article(self, article_id: int) -> QueuedArticle:
        found = next((a for a in self._store.articles.queued() if a.id == article_id), None)
        if found is None:
            raise NotFound(f"no queued article {article_id} (see 'newsletter queue list')")
        return found

    def swap_with_neighbour(self, filename: str, up: bool) -> bool:
        """Swap a queued article's position with the one before (up) or after it; False when it
        is already first (last). One transaction, so two editors cannot interleave a swap."""
        with self._store.transaction() as conn:
            row = conn.execute(
                select(articles.c.id, articles.c.position).where(
                    articles.c.filename == filename, articles.c.status == QUEUED
                )
            ).first()
            if row is None:
                raise NotFound(f"no queued article {filename!r} (see 'newsletter queue list')")
            neighbour_query = select(articles.c.id, articles.c.position).where(
                articles.c.status == QUEUED
            )
            if up:
                neighbour_query = neighbour_query.where(
                    articles.c.position < row.position
                ).order_by(articles.c.position.desc())
            else:
                neighbour_query = neighbour_query.where(
                    articles.c.position > row.position
                ).order_by(articles.c.position)
            other = conn.execute(neighbour_query.limit(1)).first()
            if other is None:
                return False
            conn.execute(
                update(articles).where(articles.c.id == row.id).values(position=other.position)
            )
            conn.execute(
                update(articles).where(articles.c.id == other.id).values(position=row.position)
            )
            return True

    def set_not_before(self, filename: str, when: datetime | None) -> None:
        with self._store.transaction() as conn:
            changed = conn.execute(
                update(articles)
                .where(articles.c.filename == filename, articles.c.status == QUEUED)
                .values(not_before=when)
            ).rowcount
        if not changed:
            raise NotFound(f"no queued article {filename!r} (see 'newsletter queue list')")

    def articles_with_errors(self) -> list[QueuedArticle]:
        """Queued articles the scheduler could not read (held back with their reason)."""
        return [a for a in self._store.articles.queued() if a.last_error]

    # -- subscribers ---------------------------------------------------------------------------
    def search_subscribers(
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
        columns = (
            subscribers.c.id,
            subscribers.c.email,
            subscribers.c.name,
            subscribers.c.status,
            subscribers.c.created_at,
        )
        needle = query.strip().lower()
        stmt = select(*columns)
        if status:
            stmt = stmt.where(subscribers.c.status == status)
        if not needle:
            start = int(after) if after.isdigit() else 0
            stmt = stmt.where(subscribers.c.id > start).order_by(subscribers.c.id)

            def cursor(row) -> str:
                return str(row.id)
        elif field == "name":
            key = func.lower(subscribers.c.name)
            stmt = stmt.add_columns(key.label("sort_key")).where(_prefix_range(key, needle))
            last_name, _, last_id = after.rpartition(_SEP)
            if after and last_id.isdigit():
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

    def subscriber_by_id(self, subscriber_id: int) -> SubscriberRow | None:
        with self._store.transaction(write=False) as conn:
            row = conn.execute(
                select(
                    subscribers.c.id,
                    subscribers.c.email,
                    subscribers.c.name,
                    subscribers.c.status,
                    subscribers.c.created_at,
                ).where(subscribers.c.id == subscriber_id)
            ).first()
        return SubscriberRow(*row) if row else None

    # -- issues --------------------------------------------------------------------------------
    def issues_needing_editors(self) -> list[IssueAttention]:
        """Paused issues, and issues no longer sending with uncertain deliveries: what the
        alerts look at. One index range per issue, never a scan of the delivery log."""
        found: list[IssueAttention] = []
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(issues.c.id, issues.c.subject, issues.c.status, issues.c.last_error).where(
                    issues.c.status != IssueStatus.SENDING
                )
            ).all()
            for row in rows:
                uncertain = (
                    conn.scalar(
                        select(func.count())
                        .select_from(deliveries)
                        .where(deliveries.c.issue_id == row.id, deliveries.c.state == UNCERTAIN)
                    )
                    or 0
                )
                if row.status == IssueStatus.PAUSED or uncertain:
                    found.append(
                        IssueAttention(
                            row.id, row.subject, IssueStatus(row.status), row.last_error, uncertain
                        )
                    )
        return found

    # -- engagement over time ------------------------------------------------------------------
    def add_engagement_hours(self, counts: Iterable[tuple[int, str, datetime, int]]) -> None:
        """Add (issue_id, kind, hour, count) rows to the per-hour tallies."""
        params = list(counts)
        if not params:
            return
        with self._store.transaction() as conn:
            for issue_id, kind, hour, count in params:
                self._add_to_hour(conn, issue_id, kind, hour, count)

    def tally_hours(self, conn: Connection, counts: dict[tuple[int, int], list[int]]) -> None:
        """Add a webhook POST's [opens, clicks] per (issue, hour as unix seconds), inside the
        POST's own transaction."""
        for (issue_id, start), pair in sorted(counts.items()):
            hour = datetime.fromtimestamp(start, UTC)
            for kind, count in zip(("open", "click"), pair, strict=True):
                if count:
                    self._add_to_hour(conn, issue_id, kind, hour, count)

    def _add_to_hour(
        self, conn: Connection, issue_id: int, kind: str, hour: datetime, count: int
    ) -> None:
        stmt = self._upsert(engagement_hours).values(
            issue_id=issue_id, kind=kind, hour=hour, count=count
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[
                    engagement_hours.c.issue_id,
                    engagement_hours.c.kind,
                    engagement_hours.c.hour,
                ],
                set_={"count": engagement_hours.c.count + count},
            )
        )

    def engagement_series(self, issue_id: int) -> list[tuple[str, datetime, int]]:
        with self._store.transaction(write=False) as conn:
            return [
                (kind, hour, count)
                for kind, hour, count in conn.execute(
                    select(
                        engagement_hours.c.kind, engagement_hours.c.hour, engagement_hours.c.count
                    )
                    .where(engagement_hours.c.issue_id == issue_id)
                    .order_by(engagement_hours.c.hour)
                )
            ]

    # -- alerts --------------------------------------------------------------------------------
    def claim_alert(self, key: str) -> bool:
        """True the first time `key` is claimed: the caller then sends that alert, once."""
        with self._store.transaction() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(insert(alerts_sent).values(key=key[:200], sent_at=utcnow()))
            except IntegrityError:
                return False
            return True

    def release_alert(self, key: str) -> None:
        """Forget a claimed alert whose sending failed, so the next wake-up tries again."""
        with self._store.transaction() as conn:
            conn.execute(delete(alerts_sent).where(alerts_sent.c.key == key[:200]))

    # -- delivery counts of a finished issue ---------------------------------------------------
    def delivery_total(self, issue_id: int) -> int:
        """Deliveries planned for an issue (fixed once planned, but for removed subscribers)."""
        query = select(func.count()).select_from(deliveries)
        with self._store.transaction(write=False) as conn:
            return conn.scalar(query.where(deliveries.c.issue_id == issue_id)) or 0

    def counts_in_states(self, issue_id: int, states: Iterable[str]) -> dict[str, int]:
        """Rows per state for a few states: one index range per state, so the cost follows the
        rows in those states, not the size of the issue."""
        wanted = list(states)
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(deliveries.c.state, func.count())
                .where(deliveries.c.issue_id == issue_id, deliveries.c.state.in_(wanted))
                .group_by(deliveries.c.state)
            )
            found = {state: 0 for state in wanted}
            found.update({state: n for state, n in rows})
        return found
