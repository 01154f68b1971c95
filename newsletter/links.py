"""The public URLs of the newsletter's pages. Standard library only: the provider interface
needs the unsubscribe link without loading the renderer (and premailer with it)."""

from __future__ import annotations

from typing import Protocol

from newsletter.records import IssueRecord, RenderedIssue


class Site(Protocol):
    """What the links need of the settings: where the web side is served."""

    @property
    def base_url(self) -> str: ...


def unsubscribe_url(site: Site, token: str) -> str:
    return f"{site.base_url}/unsubscribe/{token}"


def view_url(site: Site, slug: str) -> str:
    return f"{site.base_url}/archive/{slug}"


def stored_issue(site: Site, issue: IssueRecord) -> RenderedIssue:
    """A stored issue as it was rendered (once, at creation), with its archive link."""
    return issue.rendered(view_url(site, issue.slug))
