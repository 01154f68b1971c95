"""newsletter.links is the one place that knows the site's paths: every public URL is built
there, from the settings' base_url, and nowhere else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from newsletter import links
from newsletter.links import SiteAt

REPO = Path(__file__).resolve().parents[1]


def test_every_public_url_comes_from_the_base_url():
    site = SiteAt(base_url="https://news.example.org/letters/")  # a trailing slash, once
    assert links.unsubscribe_url(site, "t0k") == "https://news.example.org/letters/unsubscribe/t0k"
    assert links.confirm_url(site, "t0k") == "https://news.example.org/letters/confirm/t0k"
    assert links.archive_url(site) == "https://news.example.org/letters/archive"
    assert links.view_url(site, "issue-7") == "https://news.example.org/letters/archive/issue-7"
    assert links.article_url(site, "a-b") == "https://news.example.org/letters/articles/a-b"
    assert links.feed_url(site) == "https://news.example.org/letters/feed.xml"
    assert links.admin_url(site, "/queue") == "https://news.example.org/letters/admin/queue"


def test_site_of_reads_the_site_back_from_an_issue_link():
    site = SiteAt(base_url="http://127.0.0.1:8799")
    back = links.site_of(links.view_url(site, "the-archive-of-archives"))
    assert back.base_url == site.base_url
    assert links.unsubscribe_url(back, "x") == "http://127.0.0.1:8799/unsubscribe/x"
    with pytest.raises(ValueError):
        links.site_of("http://127.0.0.1:8799/articles/no-issue")


def test_no_other_module_builds_a_url_on_the_base_url():
    """A path written after base_url outside links.py is a second copy of the site's map."""
    built = re.compile(r"base_url(?:\.rstrip\([^)]*\))?\}/|base_url \+ ['\"]/")
    found = [
        f"{path.relative_to(REPO)}:{n}"
        for path in (REPO / "newsletter").rglob("*.py")
        if path.name != "links.py" and "testing" not in path.parts
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if built.search(line)
    ]
    # web/app.py's redirect to /subscribe is issue 25's (redirects become relative there).
    assert [f for f in found if not f.startswith("newsletter/web/app.py")] == []
    templates = [
        p.name
        for p in (REPO / "templates").glob("*.j2")
        if "base_url }}/" in p.read_text(encoding="utf-8")
    ]
    assert templates == []
