"""The approvals and rejections of issues (`issue_reviews`), each written in the transaction
that changes the issue: an approval makes it `approved`; a rejection makes it `rejected`,
holds its articles in the queue again with the reason and drops its never-public pages."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update

from newsletter.records import ArticleStatus, IssueReview, IssueStatus
from newsletter.store.schema import article_pages, articles, issue_reviews, issues

if TYPE_CHECKING:
    from newsletter.store import Store

APPROVED, REJECTED = "approved", "rejected"


def _review(row: Any) -> IssueReview:
    return IssueReview(
        issue_id=row.issue_id,
        editor_id=row.editor_id,
        editor_email=row.editor_email,
        decision=row.decision,
        reason=row.reason,
        at=row.at,
    )


class Reviews:
    def __init__(self, store: Store) -> None:
        self._store = store

    def approve(self, issue_id: int, editor_id: int | None, email: str, at: datetime) -> bool:
        """Approve an issue awaiting approval; False (nothing written) in any other state."""
        with self._store.transaction() as conn:
            changed = conn.execute(
                update(issues)
                .where(issues.c.id == issue_id, issues.c.status == IssueStatus.AWAITING_APPROVAL)
                .values(status=IssueStatus.APPROVED)
            ).rowcount
            if changed:
                conn.execute(
                    insert(issue_reviews).values(
                        issue_id=issue_id,
                        editor_id=editor_id,
                        editor_email=email,
                        decision=APPROVED,
                        reason="",
                        at=at,
                    )
                )
            return bool(changed)

    def reject(
        self, issue_id: int, editor_id: int | None, email: str, reason: str, at: datetime
    ) -> list[str]:
        """Reject an issue awaiting approval (or approved, before its slot): its articles go
        back to the queue, in their places, held with the reason. Returns their file names;
        an empty list (nothing written) when the issue was in no such state."""
        held = f"rejected by {email}: {reason}"
        with self._store.transaction() as conn:
            changed = conn.execute(
                update(issues)
                .where(
                    issues.c.id == issue_id,
                    issues.c.status.in_((IssueStatus.AWAITING_APPROVAL, IssueStatus.APPROVED)),
                )
                .values(status=IssueStatus.REJECTED, last_error=held)
            ).rowcount
            if not changed:
                return []
            names = list(
                conn.scalars(
                    select(articles.c.filename)
                    .where(articles.c.issue_id == issue_id)
                    .order_by(articles.c.position)
                )
            )
            conn.execute(
                update(articles)
                .where(articles.c.issue_id == issue_id)
                .values(status=ArticleStatus.HELD, last_error=held, issue_id=None)
            )
            conn.execute(delete(article_pages).where(article_pages.c.issue_id == issue_id))
            conn.execute(
                insert(issue_reviews).values(
                    issue_id=issue_id,
                    editor_id=editor_id,
                    editor_email=email,
                    decision=REJECTED,
                    reason=reason,
                    at=at,
                )
            )
            return names

    def for_issue(self, issue_id: int) -> list[IssueReview]:
        """The issue's approvals and rejections, oldest first."""
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(issue_reviews)
                .where(issue_reviews.c.issue_id == issue_id)
                .order_by(issue_reviews.c.id)
            )
            return [_review(r) for r in rows]
