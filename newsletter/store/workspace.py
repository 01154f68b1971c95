"""The queue moves and issue look-ups of the editors' workspace (`store.workspace`) that read
`articles`, `issues` and `deliveries`: which queued article an id names, swapping two queued
articles, an article's not-before time, the articles the scheduler could not read, and the
issues needing an editor (paused, or with uncertain rows). The workspace's other tables have
their own modules: `store.editors` (accounts, sessions), `store.engagement` (per-hour
tallies), `store.alerts` (alerts sent); its subscriber search is in `store.subscribers` and
its delivery counts in `store.deliveries`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update

from newsletter.exceptions import NotFound
from newsletter.records import (
    ArticleStatus,
    DeliveryState,
    IssueStatus,
    QueuedArticle,
)
from newsletter.store.schema import articles, deliveries, issues

if TYPE_CHECKING:
    from newsletter.store import Store

QUEUED, UNCERTAIN = ArticleStatus.QUEUED, DeliveryState.UNCERTAIN


@dataclass(frozen=True)
class IssueAttention:
    """An issue an editor should look at: paused, or with uncertain recipients left."""

    id: int
    subject: str
    status: IssueStatus
    last_error: str | None
    uncertain: int


class Workspace:
    """The workspace's look-ups over the queue and the issues."""

    def __init__(self, store: Store) -> None:
        self._store = store

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
