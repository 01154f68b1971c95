"""The editors' queue of articles: added in order, moved, held with the reasons a check gave,
released, removed. Issues take their articles off it (`store/issues.py`, in the transaction
that creates the issue)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update

from newsletter.exceptions import NotFound
from newsletter.records import ArticleStatus, QueuedArticle, utcnow
from newsletter.store.schema import articles

if TYPE_CHECKING:
    from newsletter.store import Store


def _article(row: Any) -> QueuedArticle:
    return QueuedArticle(
        id=row.id,
        filename=row.filename,
        title=row.title,
        position=row.position,
        status=ArticleStatus(row.status),
        queued_at=row.queued_at,
        not_before=row.not_before,
        last_error=row.last_error,
        issue_id=row.issue_id,
        queued_by=row.queued_by,
    )


QUEUED = ArticleStatus.QUEUED


class Articles:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add_article(
        self,
        filename: str,
        title: str,
        not_before: datetime | None,
        queued_by: int | None = None,
        *,
        held_reason: str | None = None,
    ) -> int:
        """Put an article at the end of the queue (or back there if it was removed), noting
        the editor who queued it; with `held_reason`, held at once (a feed entry that does
        not fit the contract), in the same transaction. Queued again by nobody named
        (`queued_by` None) while still queued or held, it keeps the editor already noted:
        an anonymous edit does not clear who wrote it."""
        with self._store.transaction() as conn:
            position = (conn.scalar(select(func.max(articles.c.position))) or 0) + 1
            existing = conn.execute(
                select(articles.c.id, articles.c.status).where(articles.c.filename == filename)
            ).first()
            values = dict(
                title=title,
                position=position,
                status=ArticleStatus.QUEUED,
                queued_at=utcnow(),
                not_before=not_before,
                last_error=None,
                issue_id=None,
                queued_by=queued_by,
            )
            if held_reason is not None:
                values.update(status=ArticleStatus.HELD, last_error=held_reason)
            keep_editor = articles.c.queued_by if queued_by is None else queued_by
            if existing is not None and held_reason is None:
                if existing.status == ArticleStatus.HELD:  # the editor fixed it: in its place
                    conn.execute(
                        update(articles)
                        .where(articles.c.id == existing.id)
                        .values(
                            title=title,
                            not_before=not_before,
                            status=ArticleStatus.QUEUED,
                            last_error=None,
                            queued_by=keep_editor,
                        )
                    )
                    return int(existing.id)
                if existing.status == ArticleStatus.QUEUED:
                    conn.execute(
                        update(articles)
                        .where(articles.c.id == existing.id)
                        .values(
                            title=title,
                            not_before=not_before,
                            queued_by=keep_editor,
                        )
                    )
                    return int(existing.id)
            if existing is not None:
                conn.execute(update(articles).where(articles.c.id == existing.id).values(**values))
                return int(existing.id)
            key = conn.execute(insert(articles).values(filename=filename, **values))
            assert key.inserted_primary_key is not None  # a single-row INSERT has one
            return int(key.inserted_primary_key[0])

    def known_files(self) -> set[str]:
        with self._store.transaction(write=False) as conn:
            return set(conn.scalars(select(articles.c.filename)))

    def queued(self, *, held: bool = False) -> list[QueuedArticle]:
        """Queued articles in the order they will go out (FIFO by position); with `held`, the
        held ones too, in their places."""
        statuses = (ArticleStatus.QUEUED, ArticleStatus.HELD) if held else (ArticleStatus.QUEUED,)
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(articles)
                .where(articles.c.status.in_(statuses))
                .order_by(articles.c.position)
            )
            return [_article(r) for r in rows]

    def hold_article(self, article_id: int, reason: str) -> bool:
        """Hold a queued article with the reason; False if it was not queued (already held)."""
        with self._store.transaction() as conn:
            result = conn.execute(
                update(articles)
                .where(articles.c.id == article_id, articles.c.status == ArticleStatus.QUEUED)
                .values(status=ArticleStatus.HELD, last_error=reason)
            )
            return result.rowcount > 0

    def release_article(self, filename: str) -> QueuedArticle:
        """Put a held article back in the queue, in its place."""
        with self._store.transaction() as conn:
            row = conn.execute(
                select(articles).where(
                    articles.c.filename == filename, articles.c.status == ArticleStatus.HELD
                )
            ).first()
            if row is None:
                raise NotFound(f"no held article {filename!r} (see 'newsletter queue list')")
            conn.execute(
                update(articles)
                .where(articles.c.id == row.id)
                .values(status=ArticleStatus.QUEUED, last_error=None)
            )
            return _article(row)

    def set_article_error(self, article_id: int, error: str | None) -> None:
        with self._store.transaction() as conn:
            conn.execute(
                update(articles).where(articles.c.id == article_id).values(last_error=error)
            )

    def remove_article(self, filename: str) -> QueuedArticle:
        with self._store.transaction() as conn:
            row = conn.execute(
                select(articles)
                .where(articles.c.filename == filename)
                .where(articles.c.status.in_((ArticleStatus.QUEUED, ArticleStatus.HELD)))
            ).first()
            if row is None:
                raise NotFound(f"no queued article {filename!r} (see 'newsletter queue list')")
            conn.execute(
                update(articles).where(articles.c.id == row.id).values(status=ArticleStatus.REMOVED)
            )
            return _article(row)

    def issue_articles(self, issue_id: int) -> list[QueuedArticle]:
        """The queue rows of the articles an issue carried, in the order they went out (an
        article queued again since is no longer the issue's)."""
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(articles)
                .where(articles.c.issue_id == issue_id)
                .order_by(articles.c.position, articles.c.id)
            )
            return [_article(r) for r in rows]

    # -- the workspace's queue moves and look-ups -----------------------------------------------------------------------------
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
