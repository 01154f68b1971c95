"""Render an issue once: Jinja2 into HTML and text, premailer inlines the CSS once, and the
per-subscriber values are left as placeholders that `personalize` (outbox) or SendGrid
`substitutions` fill in. Inlining per subscriber would be thousands of times slower.
"""

from __future__ import annotations

import html as html_lib
import logging
import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from newsletter.articles import Article
from newsletter.layouts import (
    ARTICLE_TEMPLATE,
    DIGEST,
    TEMPLATES,
    article_slug,
    article_view,
    choose_layout,
    issue_articles,
    teaser_for,
)
from newsletter.links import archive_url, article_url, view_url
from newsletter.records import ArticlePage, Placeholders, RenderedIssue
from newsletter.settings import Settings
from newsletter.subjects import DEFAULT_SUBJECT_TEMPLATE, issue_subject

log = logging.getLogger(__name__)

# Gmail clips messages whose HTML is larger than about 102 KB.
GMAIL_CLIP_BYTES = 102 * 1024
DEFAULT_NAME = "there"
# Room kept for per-subscriber values when checking sizes: a 200-character escaped name
# and a long unsubscribe URL.
PERSONALIZATION_MARGIN = 2048
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


@dataclass(frozen=True)
class Personalized:
    html: str
    text: str


def header_safe(value: str, limit: int = 998) -> str:
    """Collapse CR, LF and other control characters so a value can never add a header line."""
    return " ".join(_CONTROL.sub(" ", value).split())[:limit]


def slugify(value: str) -> str:
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    value = re.sub(r"[^a-zA-Z0-9]+", "-", value).strip("-").lower()
    return value[:80] or "issue"


def make_environment(templates_dir: Path) -> Environment:
    """Autoescape every template except the plain-text one. `select_autoescape` would only
    match .html/.htm/.xml, so `issue.html.j2` would silently go unescaped with it."""
    return Environment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=lambda name: name is not None and not name.endswith((".txt.j2", ".txt")),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _quiet_cssutils_logger() -> logging.Logger:
    """cssutils warns about every email-specific property (mso-*, -webkit-*): keep it in the
    log at debug level instead of a screenful of warnings per issue."""
    logger = logging.getLogger("newsletter.cssutils")
    logger.setLevel(logging.ERROR)
    return logger


def inline_css(document: str) -> str:
    """Inline the stylesheet; media queries stay in a <style> block, with their !important."""
    from premailer import Premailer  # heavy (cssutils, lxml): only when rendering

    premailer = Premailer(
        document,
        allow_network=False,
        strip_important=False,
        keep_style_tags=False,
        remove_classes=False,
        disable_validation=True,
        cssutils_logging_handler=logging.NullHandler(),
        cssutils_logging_level=logging.CRITICAL,
    )
    _quiet_cssutils_logger()
    return premailer.transform(pretty_print=False)


def subject_for(articles: Sequence[Article], template: str = DEFAULT_SUBJECT_TEMPLATE) -> str:
    """From titles only (or the lead's own `subject:`): spoiler-safe by construction. Several
    articles fill the editor's template, shortened to fit a phone's inbox."""
    return header_safe(issue_subject(articles, template), 250)


def newsletter_context(settings: Settings) -> dict:
    """What every email's template knows of the newsletter (issues, pages, the welcome)."""
    return {
        "name": settings.name,
        "language": settings.language,
        "postal_address": settings.postal_address,
        "base_url": settings.base_url,
        "archive_url": archive_url(settings),
    }


def render_text(env: Environment, name: str, context: dict) -> str:
    """A plain-text part from its template, runs of blank lines left by skipped blocks
    squeezed to one, ending in one line break."""
    return re.sub(r"\n{3,}", "\n\n", env.get_template(name).render(context)).strip() + "\n"


def render_issue(
    articles: Sequence[Article],
    settings: Settings,
    *,
    slug: str | None = None,
    collapse_after: int | None = None,
    layout: str | None = None,
    article_slugs: Sequence[str] | None = None,
) -> RenderedIssue:
    """Render and inline the issue once. `layout` is the editor's choice for this issue
    (default: a digest for several articles, else `[issue] layout`). In the full layout
    `collapse_after` keeps only that many articles in full; the rest show title, teaser and a
    link (to stay under Gmail's clipping limit). `article_slugs` are the addresses of the
    articles' own pages (default: from their titles)."""
    if not articles:
        raise ValueError("an issue needs at least one article")
    slug = slug or slugify(articles[0].title)
    layout = choose_layout(settings.layout, len(articles), layout)
    slugs = list(article_slugs) if article_slugs else [article_slug(a) for a in articles]
    rendered = _render(
        articles, settings, slug, collapse_after, archive=True, layout=layout, slugs=slugs
    )
    if any(_has_template_syntax(a) for a in articles):
        neutral = [_without_braces(a) for a in articles]
        shadow = _render(
            neutral, settings, slug, collapse_after, archive=False, layout=layout, slugs=slugs
        )
        rendered = replace(rendered, without_article_braces=shadow)
    return rendered


def render_article_pages(
    articles: Sequence[Article], settings: Settings, article_slugs: Sequence[str] | None = None
) -> list[ArticlePage]:
    """Each article's own page on the web edition: the canonical place for its full text,
    the ending behind a reveal. Rendered once, at publication, like the issue pages."""
    env = make_environment(settings.templates_dir)
    newsletter = newsletter_context(settings)
    slugs = list(article_slugs) if article_slugs else [article_slug(a) for a in articles]
    pages = []
    for article, slug in zip(articles, slugs, strict=True):
        url = article_url(settings, slug)
        view = article_view(article, url, settings.contract)
        html = env.get_template(ARTICLE_TEMPLATE).render(newsletter=newsletter, article=view)
        pages.append(
            ArticlePage(
                slug=slug,
                url=url,
                title=article.title,
                teaser=teaser_for(article, settings.contract),
                # Inlined like the issue pages: the archive's CSP allows no stylesheet.
                html=inline_css(html),
            )
        )
    return pages


def _has_template_syntax(article: Article) -> bool:
    values = [article.title, article.summary, article.author, article.teaser_override]
    values += [article.subject_override]
    values += [v for s in article.sections for v in (s.heading, s.text, str(s.html))]
    return any(v and ("{{" in v or "{%" in v) for v in values)


def _without_braces(article: Article) -> Article:
    """The article with every `{` turned into `(`: same lengths, so the same layout."""

    def swap(value: str | None) -> str | None:
        return None if value is None else value.replace("{", "(")

    return replace(
        article,
        title=article.title.replace("{", "("),
        summary=swap(article.summary),
        author=swap(article.author),
        teaser_override=swap(article.teaser_override),
        subject_override=swap(article.subject_override),
        sections=tuple(
            replace(
                s,
                heading=s.heading.replace("{", "("),
                text=s.text.replace("{", "("),
                html=s.html.replace("{", "("),
            )
            for s in article.sections
        ),
    )


def _render(
    articles: Sequence[Article],
    settings: Settings,
    slug: str,
    collapse_after: int | None,
    *,
    archive: bool,
    layout: str,
    slugs: Sequence[str],
) -> RenderedIssue:
    nonce = secrets.token_hex(8)
    env = make_environment(settings.templates_dir)
    subject = subject_for(articles, settings.subject_template)
    preheader = header_safe(teaser_for(articles[0], settings.contract), 300)
    urls = [article_url(settings, s) for s in slugs]
    context = {
        "newsletter": newsletter_context(settings),
        "issue": {"subject": subject, "preheader": preheader, "view_url": view_url(settings, slug)},
        "articles": issue_articles(layout, articles, urls, settings.contract, collapse_after),
        "placeholders": Placeholders.make(nonce),
    }
    html_name, text_name = TEMPLATES[layout]
    html_template = env.get_template(html_name)
    email_html = inline_css(html_template.render(context, archive=False))
    archive_html = inline_css(html_template.render(context, archive=True)) if archive else ""
    text = render_text(env, text_name, context)
    return RenderedIssue(
        subject=subject,
        preheader=preheader,
        html=email_html,
        text=text,
        archive_html=archive_html,
        placeholder_nonce=nonce,
        view_url=view_url(settings, slug),
        slug=slug,
        layout=layout,
    )


def render_fitting(
    articles: Sequence[Article],
    settings: Settings,
    *,
    slug: str | None = None,
    limit: int = GMAIL_CLIP_BYTES,
    layout: str | None = None,
    article_slugs: Sequence[str] | None = None,
) -> RenderedIssue:
    """Render in full, and if the HTML would be clipped collapse later articles one by one.
    The lead article and the footer (with the unsubscribe link) always stay. A digest has
    nothing to collapse: its cards are already title, teaser and a link."""
    layout = choose_layout(settings.layout, len(articles), layout)

    def render(collapse_after: int | None = None) -> RenderedIssue:
        return render_issue(
            articles,
            settings,
            slug=slug,
            collapse_after=collapse_after,
            layout=layout,
            article_slugs=article_slugs,
        )

    rendered = render()
    if layout == DIGEST:
        return rendered
    keep = len(articles)
    while html_size(rendered) > limit and keep > 1:
        keep -= 1
        rendered = render(collapse_after=keep)
    return rendered


def html_size(rendered: RenderedIssue) -> int:
    """Bytes of the HTML a subscriber gets, with room for a long name and unsubscribe URL."""
    return len(rendered.html.encode("utf-8")) + PERSONALIZATION_MARGIN


def substitution_values(rendered: RenderedIssue, name: str, unsubscribe: str) -> dict[str, str]:
    """Placeholder -> value for one subscriber (the SendGrid `substitutions` object)."""
    ph = rendered.placeholders
    shown = (name if name.isprintable() else header_safe(name)).strip() or DEFAULT_NAME
    return {
        ph.name_html: html_lib.escape(shown, quote=True),
        ph.name_text: shown,
        ph.unsubscribe_url: unsubscribe,
    }


def personalize(rendered: RenderedIssue, name: str, unsubscribe: str) -> Personalized:
    """Fill one subscriber's values into the finished HTML and text by plain replacement."""
    values = substitution_values(rendered, name, unsubscribe)
    html, text = rendered.html, rendered.text
    for key, value in values.items():
        html = html.replace(key, value)
        text = text.replace(key, value)
    return Personalized(html=html, text=text)
