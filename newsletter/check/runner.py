"""Running the checks: on a finished email, on a rendered issue as one sample subscriber gets
it, on articles rendered as the issue `run` would build (`check_issue`, the one sequence
`run`, the scheduler, `check` and the workspace's preview all use), or on what
`newsletter preview SOURCE` would show."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.articles import Article, read_article
from newsletter.check.accessibility import check_accessibility
from newsletter.check.caniemail import ACCEPTED_FALLBACKS, MAJOR_CLIENTS
from newsletter.check.clients import check_client_support
from newsletter.check.content import (
    PLACEHOLDERS,
    TEMPLATE_SYNTAX,
    check_parts,
    check_placeholders,
)
from newsletter.check.document import Document, unique
from newsletter.check.editorial import check_articles, check_stored_issue
from newsletter.check.findings import ERROR, WARNING, Finding
from newsletter.check.links import check_images, check_links
from newsletter.check.size import check_size
from newsletter.layouts import choose_layout
from newsletter.links import site_of, stored_issue, unsubscribe_url
from newsletter.render import RenderedIssue, personalize, render_fitting
from newsletter.settings import EXAMPLE_POSTAL_ADDRESS

if TYPE_CHECKING:
    from newsletter.settings import Settings
    from newsletter.store import Store


def check_rendered(
    rendered: RenderedIssue,
    *,
    name: str | None = None,
    unsubscribe: str | None = None,
    collapse_is_error: bool = False,
) -> list[Finding]:
    """Check a rendered issue as one sample subscriber would get it. `collapse_is_error` is
    the editor's setting to refuse an issue whose later articles had to be shortened."""
    from newsletter.preview import SAMPLE_NAME, SAMPLE_TOKEN

    if unsubscribe is None:
        unsubscribe = unsubscribe_url(site_of(rendered.view_url), SAMPLE_TOKEN)
    body = personalize(rendered, name or SAMPLE_NAME, unsubscribe)
    shadow = rendered.without_article_braces
    findings = check_email(
        body.html,
        body.text,
        rendered.subject,
        rendered.preheader,
        template_syntax=shadow is None,
    )
    if shadow is not None:
        # The articles' own `{{` / `{%` are text, not leftovers: look for ours in the copy
        # rendered without them (same layout, so the same line numbers).
        own = personalize(shadow, name or SAMPLE_NAME, unsubscribe)
        findings += check_placeholders(
            Document.parse(own.html), own.text, shadow.subject, shadow.preheader, TEMPLATE_SYNTAX
        )
    # render_fitting's collapsed articles link to their place in the web edition.
    collapsed = unique(re.findall(re.escape(rendered.view_url) + r"#article-(\d+)", body.html))
    if collapsed:
        findings.append(
            Finding(
                ERROR if collapse_is_error else WARNING,
                "collapsed",
                f"{len(collapsed)} article(s) (no. {', '.join(collapsed)}) shortened to title, "
                "teaser and a link so the email stays under Gmail's clipping limit",
                "html",
            )
        )
    return findings


@dataclass(frozen=True, kw_only=True)
class CheckedIssue:
    """Articles rendered as one issue, in `layout`, and what its check found."""

    rendered: RenderedIssue
    layout: str
    findings: list[Finding]


def check_issue(
    articles: Sequence[Article],
    settings: Settings,
    *,
    slug: str,
    layout: str | None = None,
    article_slugs: Sequence[str] | None = None,
) -> CheckedIssue:
    """Render `articles` once as one issue (in `layout`, default: as `run` chooses) and check
    it: the email as a sample subscriber gets it, the article contract and spoiler leaks, and
    the settings every email carries (the postal address)."""
    layout = choose_layout(settings.layout, len(articles), layout)
    rendered = render_fitting(
        articles, settings, slug=slug, layout=layout, article_slugs=article_slugs
    )
    editorial = check_articles(
        articles,
        subject=rendered.subject,
        preheader=rendered.preheader,
        layout=layout,
        contract=settings.contract,
        spoiler_leak=settings.spoiler_leak,
    )
    findings = _issue_findings(rendered, settings, editorial)
    return CheckedIssue(rendered=rendered, layout=layout, findings=findings)


def _issue_findings(
    rendered: RenderedIssue, settings: Settings, editorial: list[Finding]
) -> list[Finding]:
    """The one order of an issue's findings, for articles rendered now (`check_issue`) and a
    stored issue as it went out (`check_source`): the email as a sample subscriber gets it,
    the editorial rules' `editorial` findings, then the settings."""
    findings = check_rendered(rendered, collapse_is_error=settings.collapse_is_error)
    return findings + editorial + check_settings(settings)


def check_source(
    settings: Settings,
    store: Store | None,
    source: tuple[str, ...],
    layout: str | None = None,
) -> list[Finding]:
    """Check what `newsletter preview SOURCE` would show: article files or a stored issue.
    Both are also held to the article contract and checked for spoiler leaks (a stored
    issue's articles are read from issues/, see `check_stored_issue`)."""
    if store is None:
        articles = [read_article(Path(s), headings=settings.contract.headings) for s in source]
        return check_issue(articles, settings, slug="preview", layout=layout).findings
    issue = store.issues.get_issue(int(source[0]))
    editorial = check_stored_issue(settings, store, issue)
    return _issue_findings(stored_issue(settings, issue), settings, editorial)


def check_settings(settings: Settings) -> list[Finding]:
    """What every email of this newsletter carries from the settings: the postal address."""
    if not settings.postal_address.strip():
        return [
            Finding(
                WARNING,
                "no-postal-address",
                "no postal_address in newsletter.toml: CAN-SPAM wants the sender's physical "
                "address in every email",
                "settings",
            )
        ]
    if settings.postal_address.strip() == EXAMPLE_POSTAL_ADDRESS:
        return [
            Finding(
                WARNING,
                "example-postal-address",
                "postal_address in newsletter.toml is still the sample's made-up address: "
                "put the sender's own physical address there (CAN-SPAM)",
                "settings",
            )
        ]
    return []


def check_email(
    html: str,
    text: str | None,
    subject: str,
    preheader: str | None,
    *,
    accept: Iterable[str] = ACCEPTED_FALLBACKS,
    clients: Sequence[str] = MAJOR_CLIENTS,
    template_syntax: bool = True,
) -> list[Finding]:
    """Lint one finished email (placeholders already filled in). `template_syntax=False`
    leaves `{{` / `{%` to the caller, who knows which of them are the articles' own."""
    doc = Document.parse(html)
    findings: list[Finding] = []
    findings += check_size(html)
    findings += check_parts(doc, text, subject, preheader)
    findings += check_links(doc)
    findings += check_images(doc)
    findings += check_accessibility(doc)
    patterns = tuple(p for p in PLACEHOLDERS if template_syntax or p not in TEMPLATE_SYNTAX)
    findings += check_placeholders(doc, text, subject, preheader, patterns)
    findings += check_client_support(doc, set(accept), clients)
    return findings
