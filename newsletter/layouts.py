"""Issue layouts and the article pages of the web edition.

`full` puts the lead article in the email in full, its spoiler sections after a divider.
`digest` puts every article in as a card (title, year, rating, recap teaser) with a "Read the
ending" button to the article's own page, so no spoiler text reaches the inbox at all. An
issue of several articles is a digest unless the editor asks otherwise for that issue.

Each article's page (`/articles/<slug>`) is the canonical place for its full text: its
spoiler-free sections, then the spoiler sections inside a `<details>` reveal that works
without JavaScript.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from newsletter.articles import Article, Section
from newsletter.contract import DEFAULT_CONTRACT, Contract
from newsletter.teaser import recap_teaser

FULL = "full"
DIGEST = "digest"
LAYOUTS = (FULL, DIGEST)
TEMPLATES = {
    FULL: ("issue.html.j2", "issue.txt.j2"),
    DIGEST: ("digest.html.j2", "digest.txt.j2"),
}
ARTICLE_TEMPLATE = "article.html.j2"


def choose_layout(setting: str, count: int, requested: str | None = None) -> str:
    """The layout of one issue: the editor's choice for it, else `digest` for several
    articles, else the setting."""
    for value in (requested, setting):
        if value is not None and value not in LAYOUTS:
            raise ValueError(f"unknown layout {value!r}: use {' or '.join(LAYOUTS)}")
    if requested:
        return requested
    return DIGEST if count > 1 else setting


def layout_of(html: str) -> str:
    """The layout of an issue stored before issues kept theirs (migration 0008), from its
    HTML: only the digest has cards."""
    return DIGEST if 'class="digest-card"' in html else FULL


def article_slug(article: Article) -> str:
    """The article's address on the web edition, from its title: stable across issues."""
    value = re.sub(r"['\u2019]", "", article.title)
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    value = re.sub(r"[^a-zA-Z0-9]+", "-", value).strip("-").lower()
    return value[:120] or "article"


def rating_text(article: Article) -> str | None:
    if article.rating is None:
        return None
    return f"{article.rating:.1f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Card:
    """What the digest shows of one article: nothing from a spoiler section."""

    title: str
    year: int | None
    author: str | None
    rating: float | None
    rating_text: str | None
    teaser: str
    url: str


@dataclass(frozen=True)
class ArticleView:
    """What an article page shows: the spoiler-free sections, then the reveal."""

    title: str
    year: int | None
    author: str | None
    rating: float | None
    rating_text: str | None
    url: str
    safe: tuple[Section, ...]
    spoilers: tuple[Section, ...]


def teaser_for(article: Article, contract: Contract = DEFAULT_CONTRACT) -> str:
    """The recap teaser, from the contract's first spoiler-free section."""
    return recap_teaser(article, safe=contract.safe_sections(article.sections))


def card(article: Article, url: str, contract: Contract = DEFAULT_CONTRACT) -> Card:
    return Card(
        title=article.title,
        year=article.year,
        author=article.author,
        rating=article.rating,
        rating_text=rating_text(article),
        teaser=teaser_for(article, contract),
        url=url,
    )


def article_view(article: Article, url: str, contract: Contract = DEFAULT_CONTRACT) -> ArticleView:
    return ArticleView(
        title=article.title,
        year=article.year,
        author=article.author,
        rating=article.rating,
        rating_text=rating_text(article),
        url=url,
        safe=contract.safe_sections(article.sections),
        spoilers=contract.spoiler_sections(article.sections),
    )


def cards(
    articles: Sequence[Article], urls: Sequence[str], contract: Contract = DEFAULT_CONTRACT
) -> list[Card]:
    return [card(a, u, contract) for a, u in zip(articles, urls, strict=True)]


def full_article(article: Article, collapsed: bool, contract: Contract = DEFAULT_CONTRACT) -> dict:
    """What the full layout shows of one article: the spoiler-free sections (the first is
    the recap the teaser comes from), then the spoiler sections after the divider."""
    safe = contract.safe_sections(article.sections)
    return {
        "title": article.title,
        "year": article.year,
        "rating": article.rating,
        "rating_text": rating_text(article),
        "author": article.author,
        "summary": article.summary,
        "teaser": teaser_for(article, contract),
        "recap": safe[0] if safe else None,
        "safe": safe,
        "spoilers": contract.spoiler_sections(article.sections),
        "collapsed": collapsed,
    }


def issue_articles(
    layout: str,
    articles: Sequence[Article],
    urls: Sequence[str],
    contract: Contract = DEFAULT_CONTRACT,
    collapse_after: int | None = None,
) -> list:
    """The `articles` of a layout's template context: cards for the digest, whole articles
    (the later ones maybe collapsed) for the full layout."""
    if layout == DIGEST:
        return cards(articles, urls, contract)
    return [
        full_article(a, collapse_after is not None and i >= collapse_after, contract)
        for i, a in enumerate(articles)
    ]
