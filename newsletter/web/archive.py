"""The web edition of past issues: one page per issue (the stored `archive_html`, rendered at
publication), one page per article (its stable address, the ending behind a reveal), an
index with teasers and dates, and an Atom feed of both. Only issues that went out (sending
or sent) are public, with their articles; held, paused and cancelled ones stay unpublished.

All of them are built once per publication version and served from `newsletter.web.cache`
(ETag, Last-Modified, 304s): a request costs one shared version look-up, not a render."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from newsletter.links import archive_url, article_url, feed_url, view_url
from newsletter.records import IssueStatus, IssueSummary, PublicationVersion, PublishedArticle
from newsletter.settings import Settings
from newsletter.store import Store
from newsletter.web.cache import CachedPage, cached_page, public_pages, respond
from newsletter.web.state import web_state
from newsletter.web.templating import render

PUBLIC_STATUSES = (IssueStatus.SENDING, IssueStatus.SENT)
FEED_ENTRIES = 50
ATOM_NS = "http://www.w3.org/2005/Atom"
# The issue's own HTML has inline styles and may show images; it never needs scripts, frames
# or forms.
ARCHIVE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def published_issues(store: Store) -> list[IssueSummary]:
    """Issues readers may see, newest first."""
    return [i for i in store.issues.list_issues() if i.status in PUBLIC_STATUSES]


def _edition(html: str, published_at: datetime) -> CachedPage:
    """A stored page of the web edition: its content never changes after publication, so it
    is as old as that; under ARCHIVE_CSP."""
    return cached_page(
        html.encode("utf-8"),
        "text/html; charset=utf-8",
        published_at,
        headers={"Content-Security-Policy": ARCHIVE_CSP},
    )


async def _serve(
    request: Request, kind: str, page_of: Callable[[Store, str], CachedPage | None]
) -> Response:
    """The public page of `kind` ("issue", "article") at the request's slug, from the cache,
    or the 404 page saying there is none."""
    store, slug = web_state(request).store, request.path_params["slug"]
    page = await public_pages(request).get(f"{kind}:{slug}", lambda _: page_of(store, slug))
    if page is None:
        return await run_in_threadpool(
            web_state(request).page,
            "error.html",
            404,
            heading=f"{kind.capitalize()} not found",
            message=f"There is no published {kind} at this address.",
        )
    return respond(request, page)


def issue_page(store: Store, slug: str) -> CachedPage | None:
    """An issue's web edition; None while (or once) the issue is not public."""
    issue = store.issues.issue_by_slug(slug)
    if issue is None or issue.status not in PUBLIC_STATUSES or not issue.archive_html:
        return None
    return _edition(issue.archive_html, issue.created_at)


def article_page(store: Store, slug: str) -> CachedPage | None:
    """An article's own page; None while (or once) its issue is not public."""
    page = store.issues.article_page(slug)
    if page is None or page.issue_status not in PUBLIC_STATUSES:
        return None
    return _edition(page.html, page.published_at)


async def archive_issue(request: Request) -> Response:
    return await _serve(request, "issue", issue_page)


async def archive_article(request: Request) -> Response:
    """An article's own page: the canonical place for its full text."""
    return await _serve(request, "article", article_page)


def _local(settings: Settings, moment: datetime) -> datetime:
    return moment.astimezone(settings.timezone)


def index_page(settings: Settings, store: Store, version: PublicationVersion) -> CachedPage:
    """The list of published issues, as of `version`."""
    entries = []
    for issue in published_issues(store):
        when = _local(settings, issue.created_at)
        entries.append(
            {
                "url": view_url(settings, issue.slug),
                "subject": issue.subject,
                "preheader": issue.preheader,
                "iso": when.isoformat(timespec="seconds"),
                "date": f"{when.day} {when:%B %Y}",
            }
        )
    html = render(settings, "archive_index.html", noindex=False, issues=entries)
    return cached_page(html.encode("utf-8"), "text/html; charset=utf-8", version.changed_at)


async def _serve_listing(
    request: Request, key: str, build: Callable[[Settings, Store, PublicationVersion], CachedPage]
) -> Response:
    """A page that always exists (the index, the feed), from the cache."""
    state = web_state(request)
    page = await public_pages(request).get(
        key, lambda version: build(state.settings, state.store, version)
    )
    assert page is not None  # `build` always makes one
    return respond(request, page)


async def archive_index(request: Request) -> Response:
    return await _serve_listing(request, "index", index_page)


def _text(value: object) -> str:
    return _XML_INVALID.sub("", "" if value is None else str(value))


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def atom_feed(
    settings: Settings, issues: list[IssueSummary], articles: Sequence[PublishedArticle] = ()
) -> bytes:
    """An Atom 1.0 document (RFC 4287) for the newest published issues and, each at its own
    address, their articles (summary: the spoiler-free teaser)."""
    issues = issues[:FEED_ENTRIES]
    articles = list(articles)[:FEED_ENTRIES]
    feed = ET.Element("feed", {"xmlns": ATOM_NS, "xml:lang": settings.language or "en"})

    def child(parent: ET.Element, tag: str, text: str | None = None, **attrs) -> ET.Element:
        element = ET.SubElement(parent, tag, attrs)
        if text is not None:
            element.text = _text(text)
        return element

    archive = archive_url(settings)
    child(feed, "id", archive)
    child(feed, "title", settings.name)
    newest = max((i.created_at for i in issues), default=None)
    child(feed, "updated", _rfc3339(newest) if newest else "1970-01-01T00:00:00Z")
    child(feed, "link", rel="self", type="application/atom+xml", href=feed_url(settings))
    child(feed, "link", rel="alternate", type="text/html", href=archive)
    author = child(feed, "author")
    child(author, "name", settings.from_name or settings.name)
    for issue in issues:
        url = view_url(settings, issue.slug)
        entry = child(feed, "entry")
        child(entry, "id", url)
        child(entry, "title", issue.subject)
        child(entry, "link", rel="alternate", type="text/html", href=url)
        child(entry, "published", _rfc3339(issue.created_at))
        child(entry, "updated", _rfc3339(issue.finished_at or issue.created_at))
        child(entry, "summary", issue.preheader, type="text")
    for article in articles:
        url = article_url(settings, article.slug)
        entry = child(feed, "entry")
        child(entry, "id", url)
        child(entry, "title", article.title)
        child(entry, "link", rel="alternate", type="text/html", href=url)
        child(entry, "published", _rfc3339(article.published_at))
        child(entry, "updated", _rfc3339(article.published_at))
        child(entry, "summary", article.teaser, type="text")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def feed_page(settings: Settings, store: Store, version: PublicationVersion) -> CachedPage:
    articles = store.issues.article_pages(PUBLIC_STATUSES, limit=FEED_ENTRIES)
    return cached_page(
        atom_feed(settings, published_issues(store), articles),
        "application/atom+xml; charset=utf-8",
        version.changed_at,
    )


async def feed_xml(request: Request) -> Response:
    return await _serve_listing(request, "feed", feed_page)
