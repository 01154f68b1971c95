"""Every public URL of the newsletter: the one place that knows the site's paths. Standard
library only: the provider interface needs the unsubscribe link without loading the renderer
(and premailer with it). Emails, the archive, the feed, the confirmation email, alerts and the
pre-send check all build their links here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from newsletter.records import IssueRecord, RenderedIssue

ARCHIVE_PATH = "/archive"


class Site(Protocol):
    """What the links need of the settings: where the web side is served."""

    @property
    def base_url(self) -> str: ...


@dataclass(frozen=True, kw_only=True)
class SiteAt:
    """A `Site` from a base URL alone: one read back from a stored link (`site_of`), the
    address `serve` listens on (its banner) or base_url's path (redirects within the app)."""

    base_url: str


def _base(site: Site) -> str:
    return site.base_url.rstrip("/")


def unsubscribe_url(site: Site, token: str) -> str:
    return f"{_base(site)}/unsubscribe/{token}"


def unsubscribe_urls(site: Site, tokens: Iterable[str]) -> list[str]:
    """`unsubscribe_url` for a batch's tokens: the site's part joined once."""
    prefix = unsubscribe_url(site, "")
    return [prefix + token for token in tokens]


def confirm_url(site: Site, token: str) -> str:
    """The double opt-in link of the confirmation email."""
    return f"{_base(site)}/confirm/{token}"


def subscribe_url(site: Site) -> str:
    """The sign-up form (the site's home redirects there)."""
    return f"{_base(site)}/subscribe"


def archive_url(site: Site) -> str:
    return f"{_base(site)}{ARCHIVE_PATH}"


def view_url(site: Site, slug: str) -> str:
    """An issue's page in the archive (the email's "view in browser" link)."""
    return f"{_base(site)}{ARCHIVE_PATH}/{slug}"


def article_url(site: Site, slug: str) -> str:
    """An article's own page on the web edition."""
    return f"{_base(site)}/articles/{slug}"


def feed_url(site: Site) -> str:
    return f"{_base(site)}/feed.xml"


def static_url(site: Site, name: str) -> str:
    """A file the public pages load from us (the sign-up form's script)."""
    return f"{_base(site)}/static/{name}"


def admin_url(site: Site, path: str = "") -> str:
    """A page of the editors' workspace (`path` starts with "/", or is empty)."""
    return f"{_base(site)}/admin{path}"


def site_of(issue_view_url: str) -> Site:
    """The site an issue's archive link belongs to: the inverse of `view_url`, for code that
    holds a rendered issue but not the settings (the pre-send check's sample unsubscribe
    link)."""
    base, sep, _slug = issue_view_url.rpartition(f"{ARCHIVE_PATH}/")
    if not sep:
        raise ValueError(f"{issue_view_url!r} is not an issue's archive link")
    return SiteAt(base_url=base)


def stored_issue(site: Site, issue: IssueRecord) -> RenderedIssue:
    """A stored issue as it was rendered (once, at creation), with its archive link."""
    return issue.rendered(view_url(site, issue.slug))
