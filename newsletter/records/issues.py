"""Articles and issues as the store returns them and the renderer makes them: the queue's rows,
an issue rendered once with its placeholders, its reviews and summaries, the web pages."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from newsletter.records.states import ArticleStatus, IssueStatus


@dataclass(frozen=True, slots=True)
class Placeholders:
    """Per-subscriber slots in the rendered issue. The random nonce means no article text can
    collide with them (or trigger a SendGrid substitution by accident)."""

    name_html: str
    name_text: str
    unsubscribe_url: str

    @classmethod
    def make(cls, nonce: str) -> Placeholders:
        return cls(
            name_html=f"nl_{nonce}_name_html",
            name_text=f"nl_{nonce}_name_text",
            unsubscribe_url=f"nl_{nonce}_unsubscribe_url",
        )


@dataclass(frozen=True)
class RenderedIssue:
    """An issue rendered once, placeholders and all. Its fields but `view_url` are the
    content columns of the issue row (same names): `IssueRecord.rendered` maps back."""

    subject: str
    preheader: str
    html: str
    text: str
    archive_html: str
    placeholder_nonce: str
    view_url: str
    slug: str
    layout: str = ""  # full or digest; "" for an issue stored before layouts were kept
    # Only when an article's own text has `{{` or `{%`: the same email rendered with those
    # braces neutralised, so `newsletter check` can look for leftovers of *our* templates
    # there (article text is escaped, never evaluated: its braces are not leftovers).
    # Not stored: the check runs before the issue is created.
    without_article_braces: RenderedIssue | None = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def placeholders(self) -> Placeholders:
        return Placeholders.make(self.placeholder_nonce)


@dataclass(frozen=True, slots=True)
class QueuedArticle:
    """A row of the editors' queue."""

    id: int
    filename: str
    title: str
    position: int
    status: ArticleStatus
    queued_at: datetime
    not_before: datetime | None
    last_error: str | None
    issue_id: int | None
    queued_by: int | None = None  # the editor who queued it (None: the CLI, a feed, a file)


@dataclass(frozen=True, slots=True, kw_only=True)
class IssueReview:
    """One approval or rejection of an issue: who, when, and the reason given."""

    issue_id: int
    editor_id: int | None
    editor_email: str
    decision: str  # "approved" or "rejected"
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class IssueSummary:
    """An issue without its (large) bodies: what lists and the archive index show."""

    id: int
    slug: str
    subject: str
    preheader: str
    status: IssueStatus
    created_at: datetime
    finished_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class IssueRecord:
    """A whole issue row: its rendered content and its sending state."""

    id: int
    slug: str
    subject: str
    preheader: str
    html: str
    text: str
    archive_html: str
    placeholder_nonce: str
    status: IssueStatus
    created_at: datetime
    scheduled_for: datetime | None
    finished_at: datetime | None
    last_error: str | None
    next_batch: int
    failed_batches: int
    opens: int
    clicks: int
    layout: str | None = None  # None: made before the layout was kept (migration 0008)
    # Opens a machine made (sg_machine_open, Apple's proxy), never in `opens` (migration 0012).
    machine_opens: int = 0

    def rendered(self, view_url: str) -> RenderedIssue:
        """The issue as it was rendered once, at creation (the one row -> issue mapping)."""
        return RenderedIssue(
            subject=self.subject,
            preheader=self.preheader,
            html=self.html,
            text=self.text,
            archive_html=self.archive_html,
            placeholder_nonce=self.placeholder_nonce,
            view_url=view_url,
            slug=self.slug,
            layout=self.layout or "",
        )


class PublicationVersion(NamedTuple):
    """What the public pages are rendered for: a counter bumped with every change readers can
    see, and when it last changed (the index's and feed's Last-Modified)."""

    version: int
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class ArticlePage:
    """An article's own page on the web edition, rendered at publication like the issue
    pages: the canonical place for its full text, at /articles/<slug>."""

    slug: str
    url: str
    title: str
    teaser: str
    html: str


@dataclass(frozen=True, slots=True)
class PublishedArticle:
    """A stored article page with the issue it went out in (what the web side serves)."""

    slug: str
    issue_id: int
    position: int
    title: str
    teaser: str
    html: str
    issue_status: IssueStatus
    published_at: datetime
