"""Issues, the article pages published with them, and the layout the editors chose for the
next one (a `meta` row). Creating an issue stores its layout and pages, takes its articles off
the queue, plans its deliveries (through `store/deliveries.py`) and uses up that layout choice,
all in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update

from newsletter.exceptions import NotFound
from newsletter.readertime import ReaderTime
from newsletter.records import (
    ArticlePage,
    ArticleStatus,
    DeliveryState,
    IssueRecord,
    IssueStatus,
    IssueSummary,
    PublishedArticle,
    RenderedIssue,
    utcnow,
)
from newsletter.store.publication import bump
from newsletter.store.schema import article_pages, articles, issues, meta_table

if TYPE_CHECKING:
    from newsletter.store import Store

# The editors' layout for the next issue (`full` or `digest`; no row: automatic), chosen in
# the workspace and consumed when that issue is created (see `Issues.create_issue`).
NEXT_LAYOUT = "next_issue_layout"
UNCERTAIN = DeliveryState.UNCERTAIN

_SUMMARY = (
    issues.c.id,
    issues.c.slug,
    issues.c.subject,
    issues.c.preheader,
    issues.c.status,
    issues.c.created_at,
    issues.c.finished_at,
    issues.c.last_error,
)


_PAGES = select(
    article_pages.c.slug,
    article_pages.c.issue_id,
    article_pages.c.position,
    article_pages.c.title,
    article_pages.c.teaser,
    article_pages.c.html,
    issues.c.status,
    issues.c.created_at,
).join(issues, issues.c.id == article_pages.c.issue_id)


def _page(row: Any) -> PublishedArticle:
    return PublishedArticle(
        slug=row.slug,
        issue_id=row.issue_id,
        position=row.position,
        title=row.title,
        teaser=row.teaser,
        html=row.html,
        issue_status=IssueStatus(row.status),
        published_at=row.created_at,
    )


def _issue(row: Any) -> IssueRecord:
    values = dict(row._mapping)
    values["status"] = IssueStatus(values["status"])
    return IssueRecord(**values)


def _summary(row: Any) -> IssueSummary:
    values = dict(row._mapping)
    values["status"] = IssueStatus(values["status"])
    return IssueSummary(**values)


@dataclass(frozen=True)
class IssueAttention:
    """An issue an editor should look at: paused, or with uncertain recipients left."""

    id: int
    subject: str
    status: IssueStatus
    last_error: str | None
    uncertain: int


class Issues:
    def __init__(self, store: Store) -> None:
        self._store = store

    # -- the next issue's layout ---------------------------------------------------------
    def next_layout(self) -> str | None:
        """The layout the editors chose for the next issue, or None (automatic)."""
        with self._store.transaction(write=False) as conn:
            return conn.scalar(select(meta_table.c.value).where(meta_table.c.key == NEXT_LAYOUT))

    def set_next_layout(self, layout: str | None) -> None:
        """Choose the next issue's layout (None: automatic). `publish` checks the name."""
        self._store.meta.set(NEXT_LAYOUT, layout)

    # -- issues ------------------------------------------------------------------------------
    def create_issue(
        self,
        rendered: RenderedIssue,
        article_ids: list[int],
        scheduled_for: datetime | None = None,
        pages: Sequence[ArticlePage] = (),
        layout_choice: str | None = None,
        *,
        awaiting_approval: bool = False,
        segment: str = "",
        reader_time: ReaderTime | None = None,
        planned_at: datetime | None = None,
    ) -> int:
        """Create the issue, take its articles off the queue and plan one delivery per active
        subscriber (in `segment`, a checked segment expression, when given), all in one transaction: either the issue exists with its whole plan, or
        nothing changed. `layout_choice` is the editors' next-issue layout this issue was
        built with: it is consumed in the same transaction (a different choice made while the
        issue was being built stays, for the issue after). With `awaiting_approval` the issue
        waits for an editor: no delivery is planned (that is `start_approved`'s, at its slot)
        and it is not public."""
        now = utcnow()
        with self._store.transaction() as conn:
            if layout_choice is not None:
                conn.execute(
                    delete(meta_table).where(
                        meta_table.c.key == NEXT_LAYOUT, meta_table.c.value == layout_choice
                    )
                )
            created = conn.execute(
                insert(issues).values(
                    slug=rendered.slug,
                    subject=rendered.subject,
                    preheader=rendered.preheader,
                    html=rendered.html,
                    text=rendered.text,
                    archive_html=rendered.archive_html,
                    placeholder_nonce=rendered.placeholder_nonce,
                    layout=rendered.layout or None,
                    status=IssueStatus.AWAITING_APPROVAL
                    if awaiting_approval
                    else IssueStatus.SENDING,
                    created_at=now,
                    scheduled_for=scheduled_for,
                    next_batch=0,
                    failed_batches=0,
                    opens=0,
                    clicks=0,
                )
            )
            assert created.inserted_primary_key is not None  # a single-row INSERT has one
            issue_id = created.inserted_primary_key[0]
            if pages:
                conn.execute(
                    insert(article_pages),
                    [
                        {
                            "slug": page.slug,
                            "issue_id": issue_id,
                            "position": n,
                            "title": page.title,
                            "teaser": page.teaser,
                            "html": page.html,
                        }
                        for n, page in enumerate(pages, start=1)
                    ],
                )
            if article_ids:
                conn.execute(
                    update(articles)
                    .where(articles.c.id.in_(article_ids))
                    .values(status=ArticleStatus.PUBLISHED, issue_id=issue_id, last_error=None)
                )
            if not awaiting_approval:
                self._plan(conn, int(issue_id), segment, reader_time, planned_at)
                bump(conn)  # the issue is public from now on (see newsletter.web.archive)
        return int(issue_id)

    def _plan(
        self,
        conn: Any,
        issue_id: int,
        segment: str,
        reader_time: ReaderTime | None,
        now: datetime | None,
    ) -> None:
        """The issue's delivery plan: its segment's readers, at once or in reader-time waves
        from `now`."""
        self._store.deliveries.plan(conn, issue_id, segment, reader_time=reader_time, now=now)

    def get_issue(self, issue_id: int) -> IssueRecord:
        with self._store.transaction(write=False) as conn:
            row = conn.execute(select(issues).where(issues.c.id == issue_id)).first()
        if row is None:
            raise NotFound(f"no issue {issue_id} (see 'newsletter issues')")
        return _issue(row)

    # -- approval ([issue] approval = "required") --------------------------------------------
    def prepared_issues(self) -> list[IssueRecord]:
        """Issues prepared for a slot and not yet sending: awaiting approval or approved,
        oldest first."""
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(issues)
                .where(issues.c.status.in_((IssueStatus.AWAITING_APPROVAL, IssueStatus.APPROVED)))
                .order_by(issues.c.id)
            )
            return [_issue(r) for r in rows]

    def start_approved(
        self,
        issue_id: int,
        segment: str = "",
        reader_time: ReaderTime | None = None,
        now: datetime | None = None,
    ) -> bool:
        """An approved issue's slot has come: plan its deliveries (to `segment`, a checked
        segment expression; "": every receiving subscriber; at once or in reader-time waves)
        and make it sending (and public), in one transaction. False if it was not approved."""
        with self._store.transaction() as conn:
            changed = conn.execute(
                update(issues)
                .where(issues.c.id == issue_id, issues.c.status == IssueStatus.APPROVED)
                .values(status=IssueStatus.SENDING)
            ).rowcount
            if not changed:
                return False
            self._plan(conn, issue_id, segment, reader_time, now)
            bump(conn)
            return True

    def issue_by_slug(self, slug: str) -> IssueRecord | None:
        with self._store.transaction(write=False) as conn:
            row = conn.execute(select(issues).where(issues.c.slug == slug)).first()
        return _issue(row) if row else None

    # -- article pages ---------------------------------------------------------------------
    def article_page_taken(self, slug: str) -> bool:
        """True when an article page already lives at `slug` (slugs are never reused)."""
        with self._store.transaction(write=False) as conn:
            found = conn.execute(
                select(article_pages.c.slug).where(article_pages.c.slug == slug)
            ).first()
        return found is not None

    def article_page(self, slug: str) -> PublishedArticle | None:
        """The article page at `slug` with its issue's status, or None."""
        with self._store.transaction(write=False) as conn:
            row = conn.execute(_PAGES.where(article_pages.c.slug == slug)).first()
        return _page(row) if row else None

    def article_pages(
        self, statuses: Sequence[IssueStatus], limit: int | None = None
    ) -> list[PublishedArticle]:
        """Article pages of issues in `statuses`, newest issue first, in issue order."""
        query = _PAGES.where(issues.c.status.in_([str(s) for s in statuses])).order_by(
            issues.c.id.desc(), article_pages.c.position
        )
        if limit is not None:
            query = query.limit(limit)
        with self._store.transaction(write=False) as conn:
            return [_page(r) for r in conn.execute(query)]

    def issue_pages(self, issue_id: int) -> list[PublishedArticle]:
        """The article pages published with an issue, in its order."""
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                _PAGES.where(article_pages.c.issue_id == issue_id).order_by(
                    article_pages.c.position
                )
            )
            return [_page(r) for r in rows]

    def list_issues(self) -> list[IssueSummary]:
        """Every issue, newest first, without its bodies."""
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(select(*_SUMMARY).order_by(issues.c.id.desc()))
            return [_summary(r) for r in rows]

    def unfinished_issues(self) -> list[int]:
        with self._store.transaction(write=False) as conn:
            return list(
                conn.scalars(
                    select(issues.c.id)
                    .where(issues.c.status == IssueStatus.SENDING)
                    .order_by(issues.c.id)
                )
            )

    def set_issue_status(
        self,
        issue_id: int,
        status: str,
        *,
        error: str | None = None,
        only_from: tuple[str, ...] = (),
    ) -> bool:
        values: dict[str, Any] = {"status": status}
        if error is not None:
            values["last_error"] = error
        if status in (IssueStatus.SENT, IssueStatus.CANCELLED):
            values["finished_at"] = utcnow()
        query = update(issues).where(issues.c.id == issue_id)
        if only_from:
            query = query.where(issues.c.status.in_(only_from))
        with self._store.transaction() as conn:
            changed = conn.execute(query.values(**values)).rowcount > 0
            if changed:
                bump(conn)  # the status decides whether the issue is public
            return changed

    def finish_sending(self, issue_id: int) -> bool:
        """`sending` -> `sent`, only while no recipient of the issue is pending or in flight,
        in one statement: a batch released by another thread (or process) after this one
        found nothing to claim keeps the issue sending."""
        left = self._store.deliveries.left_to_send(issue_id)
        query = (
            update(issues)
            .where(issues.c.id == issue_id, issues.c.status == IssueStatus.SENDING, ~left)
            .values(status=IssueStatus.SENT, finished_at=utcnow())
        )
        with self._store.transaction() as conn:
            changed = conn.execute(query).rowcount > 0
            if changed:
                bump(conn)
            return changed

    def issue_status(self, issue_id: int) -> IssueStatus:
        with self._store.transaction(write=False) as conn:
            status = conn.scalar(select(issues.c.status).where(issues.c.id == issue_id))
        if status is None:
            raise NotFound(f"no issue {issue_id}")
        return IssueStatus(status)

    def record_failed_batch(self, issue_id: int, error: str) -> int:
        with self._store.transaction() as conn:
            conn.execute(
                update(issues)
                .where(issues.c.id == issue_id)
                .values(failed_batches=issues.c.failed_batches + 1, last_error=error)
            )
            failed = conn.scalar(select(issues.c.failed_batches).where(issues.c.id == issue_id))
            return int(failed or 0)

    # -- what needs an editor (the alerts) --------------------------------------------------------------------------------
    def issues_needing_editors(self) -> list[IssueAttention]:
        """Paused issues, and issues no longer sending with uncertain deliveries: what the
        alerts look at. Read from each issue's batch rows, never a scan of recipients."""
        found: list[IssueAttention] = []
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(issues.c.id, issues.c.subject, issues.c.status, issues.c.last_error).where(
                    issues.c.status != IssueStatus.SENDING
                )
            ).all()
            for row in rows:
                uncertain = self._store.deliveries.counts_in(conn, row.id)[UNCERTAIN]
                if row.status == IssueStatus.PAUSED or uncertain:
                    found.append(
                        IssueAttention(
                            row.id, row.subject, IssueStatus(row.status), row.last_error, uncertain
                        )
                    )
        return found
