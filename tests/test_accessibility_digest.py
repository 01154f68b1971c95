"""axe-core over the digest layout and an article page, in light and dark mode: the email as
a client shows it (a fragment: the client supplies landmarks and the page's <h1>), the digest's
web edition and an article's page as the archive serves them."""

from __future__ import annotations

import pytest

from newsletter.articles import read_article
from newsletter.layouts import DIGEST
from newsletter.render import personalize, render_article_pages, render_issue
from newsletter.resources import sample_articles
from tests.test_accessibility import axe_violations, browser, pytestmark  # noqa: F401

EMAIL_FRAGMENT_RULES = ("region", "landmark-one-main", "page-has-heading-one")


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_digest_and_article_page_have_no_axe_violations(settings, browser, tmp_path, dark):  # noqa: F811
    articles = [read_article(p) for p in sample_articles()]
    rendered = render_issue(articles, settings, layout=DIGEST)
    email_page = tmp_path / "digest-email.html"
    body = personalize(rendered, "Sam Sample", f"{settings.base_url}/unsubscribe/token")
    email_page.write_text(body.html, encoding="utf-8")
    web_page = tmp_path / "digest-web.html"
    web_page.write_text(rendered.archive_html, encoding="utf-8")
    article_page = tmp_path / "article.html"
    article_page.write_text(render_article_pages(articles[:1], settings)[0].html, encoding="utf-8")

    found = {
        "email": axe_violations(browser, email_page.as_uri(), dark, EMAIL_FRAGMENT_RULES),
        "web edition": axe_violations(browser, web_page.as_uri(), dark),
        "article page": axe_violations(browser, article_page.as_uri(), dark),
    }
    assert {name: v for name, v in found.items() if v} == {}
