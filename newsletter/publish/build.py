"""Building an issue: the queued articles due at a tick, rendered once and checked
(`check.check_issue`), stored with its article pages and its delivery plan. When the check
fails, which of the articles is to blame."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from newsletter import segments
from newsletter.articles import Article, read_article
from newsletter.check import ERROR, CheckedIssue, Finding, check_issue, format_findings
from newsletter.exceptions import ArticleError, CheckFailed
from newsletter.layouts import article_slug
from newsletter.publish.queue import sync_queue
from newsletter.records import utcnow
from newsletter.render import render_article_pages, slugify
from newsletter.settings import Settings
from newsletter.store import Store

log = logging.getLogger(__name__)

SEGMENT_SETTING = "[issue] segment"  # where the audience of every issue is written


@dataclass(frozen=True, kw_only=True)
class Picked:
    article_id: int
    article: Article


def pick(
    store: Store, settings: Settings, now: datetime, *, held: bool = False
) -> tuple[list[Picked], list[str]]:
    """The next queued articles allowed out at `now` (FIFO, respecting not-before), up to the
    issue size. Unreadable ones are skipped with their error (noted on the article); the
    others still go. With `held` (`run --force`), held articles are taken too, in their
    places."""
    sync_queue(store, settings)
    picked, unreadable = due(store, settings, now, held=held)
    for article_id, error in unreadable:
        store.articles.set_article_error(article_id, error)
        log.error("not sending %s", error)
    return picked, [error for _, error in unreadable]


def due(
    store: Store,
    settings: Settings,
    now: datetime,
    *,
    held: bool = False,
    leave_out: Collection[int] = (),
) -> tuple[list[Picked], list[tuple[int, str]]]:
    """`pick` without writing anything: the articles due (but those in `leave_out`), and the
    unreadable ones passed over, each with its error."""
    picked: list[Picked] = []
    unreadable: list[tuple[int, str]] = []
    for row in store.articles.queued(held=held):
        if len(picked) >= settings.schedule.articles_per_issue:
            break
        if row.id in leave_out or (row.not_before is not None and row.not_before > now):
            continue
        try:
            article = read_article(
                settings.issues_dir / row.filename, headings=settings.contract.headings
            )
        except ArticleError as exc:
            unreadable.append((row.id, str(exc)))
            continue
        picked.append(Picked(article_id=row.id, article=article))
    return picked, unreadable


def check_picked(
    store: Store,
    settings: Settings,
    picked: list[Picked],
    scheduled_for: datetime | None = None,
    *,
    layout: str | None = None,
) -> tuple[CheckedIssue, list[str]]:
    """Render and check the issue `picked` would make, with the addresses its issue and
    article pages would get; also the article page slugs."""
    articles = [p.article for p in picked]
    base_slug = f"{(scheduled_for or utcnow()).date().isoformat()}-"
    slugs = _unique_article_slugs(store, articles)
    checked = check_issue(
        articles,
        settings,
        slug=_unique_slug(store, base_slug, articles[0]),
        layout=layout,
        article_slugs=slugs,
    )
    return checked, slugs


@dataclass(frozen=True, kw_only=True)
class BuiltIssue:
    issue_id: int
    warnings: list[str]  # what the check found short of an error, one line each


def build_issue(
    store: Store,
    settings: Settings,
    picked: list[Picked],
    scheduled_for: datetime | None = None,
    **options: Any,
) -> int:
    """`build_checked`'s issue id, for callers that need nothing else (its options: force,
    layout, layout_choice)."""
    return build_checked(store, settings, picked, scheduled_for, **options).issue_id


def build_checked(
    store: Store,
    settings: Settings,
    picked: list[Picked],
    scheduled_for: datetime | None = None,
    *,
    force: bool = False,
    layout: str | None = None,
    layout_choice: str | None = None,
    awaiting_approval: bool = False,
    now: datetime | None = None,
) -> BuiltIssue:
    """Render the issue once (in `layout`, default: the setting, or a digest for several
    articles) with its articles' own pages, check it (the email, the article contract and
    spoiler leaks), and create it with its delivery plan. An issue whose check finds errors
    is refused unless `force`. `layout_choice`, the editors' choice read for this issue, is
    consumed when the issue is created; with `awaiting_approval` the issue waits for an
    editor's approval before any delivery is planned. Returns the issue and its check's
    warnings."""
    checked, slugs = check_picked(store, settings, picked, scheduled_for, layout=layout)
    errors = [f for f in checked.findings if f.severity == ERROR]
    if errors and not force:
        raise CheckFailed(
            "the issue was not sent: its check found errors (see 'newsletter check'; "
            "'newsletter run --force' sends anyway):\n" + format_findings(errors),
            format_findings(errors),
        )
    articles = [p.article for p in picked]
    pages = render_article_pages(articles, settings, slugs)
    issue_id = store.issues.create_issue(
        checked.rendered,
        [p.article_id for p in picked],
        scheduled_for,
        pages=pages,
        layout_choice=layout_choice,
        awaiting_approval=awaiting_approval,
        segment=segments.audience(store, settings.segment, setting=SEGMENT_SETTING),
        reader_time=settings.deliver_at,
        planned_at=now,  # reader time: the waves come after this instant
    )
    return BuiltIssue(issue_id=issue_id, warnings=warnings_of(checked.findings))


def warnings_of(findings: list[Finding]) -> list[str]:
    """The check's warnings, one line each, as `run` prints them before sending."""
    return [
        " ".join(
            (
                f"{f.severity} {f.where}: {f.message}" if f.where else f"{f.severity}: {f.message}"
            ).split()
        )
        for f in findings
        if f.severity != ERROR
    ]


def culprits(
    settings: Settings, picked: list[Picked], failure: CheckFailed
) -> list[tuple[Picked, str]]:
    """Which picked articles made the issue's check fail, each with its reasons: those
    that fail on their own, else (only together, e.g. too large) the last one added."""
    if len(picked) == 1:
        return [(picked[0], failure.report)]
    found = []
    for p in picked:
        # A spoiler leak (when an error) or a broken contract is the article's own.
        findings = check_issue([p.article], settings, slug="held-check").findings
        errors = [f for f in findings if f.severity == ERROR]
        if errors:
            found.append((p, format_findings(errors)))
    if not found:
        others = ", ".join(q.article.path.name for q in picked[:-1])
        found.append((picked[-1], f"together with {others}:\n{failure.report}"))
    return found


def _unique_article_slugs(store: Store, articles: list[Article]) -> list[str]:
    """Each article's page address, from its title; never one a published page has."""
    slugs: list[str] = []
    for article in articles:
        base = article_slug(article)
        candidate, n = base, 2
        while candidate in slugs or store.issues.article_page_taken(candidate):
            candidate, n = f"{base}-{n}", n + 1
        slugs.append(candidate)
    return slugs


def _unique_slug(store: Store, prefix: str, lead: Article) -> str:
    slug = prefix + slugify(lead.title)
    candidate, n = slug, 2
    while store.issues.issue_by_slug(candidate) is not None:
        candidate, n = f"{slug}-{n}", n + 1
    return candidate
