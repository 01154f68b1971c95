"""The digest layout and the article pages: no spoiler text in the email, the ending on the
article's own page behind a reveal that needs no JavaScript."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from newsletter.articles import read_article
from newsletter.contract import DEFAULT_CONTRACT
from newsletter.layouts import DIGEST, FULL, article_slug, choose_layout
from newsletter.render import html_size, render_article_pages, render_fitting, render_issue
from newsletter.resources import sample_articles
from newsletter.spoilers import sentences_of
from tests.test_check import write_long_article

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def articles(seed_path):
    return [read_article(p) for p in (seed_path, *sample_articles())]


def spoiler_sentences(articles):
    for article in articles:
        for section in DEFAULT_CONTRACT.spoiler_sections(article.sections):
            for _, sentence in sentences_of(section):
                yield sentence


def visible_text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).replace("&#39;", "'").split())


def test_choose_layout():
    assert choose_layout(FULL, 1) == FULL
    assert choose_layout(DIGEST, 1) == DIGEST
    assert choose_layout(FULL, 3) == DIGEST
    assert choose_layout(DIGEST, 3, requested=FULL) == FULL
    with pytest.raises(ValueError, match="unknown layout 'cards'"):
        choose_layout(FULL, 1, requested="cards")


def test_several_articles_make_a_digest_with_no_spoiler_text(articles, settings):
    rendered = render_issue(articles, settings)
    html, text = visible_text(rendered.html), rendered.text
    for sentence in spoiler_sentences(articles):
        assert sentence not in html and sentence not in text, sentence
    for article in articles:
        url = f"{settings.base_url}/articles/{article_slug(article)}"
        assert html.count(article.title) >= 1 and f'href="{url}"' in rendered.html
        assert f"Read the ending: {url}" in text
        assert str(article.year) in text and "/10" in text
    assert rendered.html.count("Read the ending") == len(articles)
    assert "Spoilers below" not in rendered.html and "SPOILERS BELOW" not in text


def test_one_article_follows_the_setting_and_the_cli_can_ask(articles, settings):
    full = render_issue(articles[:1], settings)
    assert "Spoilers below" in full.html  # today's layout: the ending after the divider
    digest = render_issue(articles[:1], settings, layout=DIGEST)
    assert "Spoilers below" not in digest.html and "Read the ending" in digest.html
    full_again = render_issue(articles, settings, layout=FULL)
    assert full_again.html.count("Spoilers below") == len(articles)


def test_the_digest_never_needs_the_clipping_fallback(tmp_path, settings):
    long = [read_article(write_long_article(tmp_path, n, 60)) for n in range(1, 5)]
    assert html_size(render_issue(long, settings, layout=FULL)) > 102 * 1024
    digest = render_fitting(long, settings)
    assert html_size(digest) < 102 * 1024
    assert "#article-" not in digest.html  # nothing had to be collapsed
    # The full layout still falls back to collapsing later articles.
    full = render_fitting(long, settings, layout=FULL)
    assert html_size(full) <= 102 * 1024 and "Read the full piece" in full.html


def test_article_pages_hide_the_ending_in_details(articles, settings):
    pages = render_article_pages(articles, settings)
    assert [p.slug for p in pages] == [article_slug(a) for a in articles]
    page = pages[0]
    assert page.url == f"{settings.base_url}/articles/{page.slug}"
    assert f'<link rel="canonical" href="{page.url}">' in page.html
    before, _, after = page.html.partition("<details")
    assert "Quick Recap" in before and "What Happens in the Ending" not in before
    assert "<summary" in after and "What Happens in the Ending" in after
    assert "<script" not in page.html
    for sentence in spoiler_sentences(articles[:1]):
        assert sentence not in visible_text(before)
