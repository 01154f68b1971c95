"""A digest issue end to end: published through the outbox, its articles served at their own
addresses by the real web app, in the feed, and the editorial checks in `check` and `run`."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from newsletter import publish
from newsletter.articles import read_article
from newsletter.contract import DEFAULT_CONTRACT
from newsletter.layouts import article_slug
from newsletter.providers import make_provider
from newsletter.records import IssueStatus
from newsletter.resources import sample_articles
from newsletter.spoilers import sentences_of
from newsletter.subscribers import add_subscriber
from tests.conftest import run_cli, write
from tests.test_web import live_web

DATA = Path(__file__).resolve().parent / "data"
ATOM = "{http://www.w3.org/2005/Atom}"


def test_a_digest_issue_and_its_article_pages(tmp_path):
    with live_web(tmp_path) as web:
        add_subscriber(web.store, "reader@example.com", "Reader")
        for path in sample_articles():
            publish.queue_add(web.store, web.settings, path)
        schedule = dataclasses.replace(web.settings.schedule, articles_per_issue=3)
        settings = dataclasses.replace(web.settings, schedule=schedule)
        result = publish.publish_tick(
            publish.TickContext.of(web.store, settings, make_provider(settings))
        )
        assert result.report is not None and result.report.ok

        (eml,) = (settings.outbox_path / f"issue-{result.issue_id}").glob("*.eml")
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        articles = [read_article(p) for p in sample_articles()]
        for article in articles:
            for section in DEFAULT_CONTRACT.spoiler_sections(article.sections):
                for _, sentence in sentences_of(section):
                    assert sentence not in html and sentence not in text

        for article in articles:
            url = f"{web.url}/articles/{article_slug(article)}"
            assert f'href="{url}"' in html and f"Read the ending: {url}" in text
            page = web.get(web.path_of(url))
            assert page.status == 200
            assert "script-src" not in page.headers["Content-Security-Policy"]
            assert "<details" in page.text and "Read the ending" in page.text
            assert "Unsubscribe" not in page.text
        assert web.get("/articles/no-such-film").status == 404

        feed = ET.fromstring(web.get("/feed.xml").text)
        links = [e.find(f"{ATOM}link").get("href") for e in feed.iter(f"{ATOM}entry")]
        for article in articles:
            assert f"{web.url}/articles/{article_slug(article)}" in links

        # A paused issue's articles are not public any more.
        web.store.issues.set_issue_status(result.issue_id, IssueStatus.PAUSED)
        assert web.get(f"/articles/{article_slug(articles[0])}").status == 404


def test_a_title_published_again_gets_an_address_of_its_own(tmp_path):
    with live_web(tmp_path) as web:
        add_subscriber(web.store, "reader@example.com", "Reader")
        first, second = sample_articles()[:2]
        again = write(
            tmp_path / "again.txt",
            first.read_text(encoding="utf-8").replace("Ingrid", "Astrid"),
        )
        slugs = []
        for path in (first, again, second):
            publish.queue_add(web.store, web.settings, path)
            ctx = publish.TickContext.of(web.store, web.settings, make_provider(web.settings))
            result = publish.publish_tick(ctx, layout="digest")
            (eml,) = (web.settings.outbox_path / f"issue-{result.issue_id}").glob("*.eml")
            slugs += re.findall(r"/articles/([a-z0-9-]+)", eml.read_text(errors="replace"))[:1]
        assert slugs[1] == f"{slugs[0]}-2" and slugs[2] != slugs[0]
        assert "Astrid" in web.get(f"/articles/{slugs[1]}").text
        assert "Astrid" not in web.get(f"/articles/{slugs[0]}").text


def test_check_reports_a_leak_as_a_warning_or_an_error(tmp_path):
    run_cli(["init", "."], tmp_path)
    leaky = DATA / "leaky_recap.txt"
    out = run_cli(["check", str(leaky)], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"warning {leaky}:9: 'By the end, Ines betrays her brother" in out.stdout
    assert "echoes 'What Happens in the Ending' at line 12" in out.stdout

    config = tmp_path / "newsletter.toml"
    config.write_text(
        config.read_text().replace('spoiler_leak = "warning"', 'spoiler_leak = "error"')
    )
    out = run_cli(["check", str(leaky)], tmp_path)
    assert out.returncode == 1 and f"error {leaky}:9:" in out.stdout
    assert run_cli(["check", str(DATA / "names_only.txt")], tmp_path).returncode == 0


def test_run_refuses_a_leaking_issue_when_leaks_are_errors(tmp_path):
    run_cli(["init", "."], tmp_path)
    write(tmp_path / "s.csv", "email,name\nreader@example.com,Reader\n")
    run_cli(["subscribers", "import", "s.csv"], tmp_path)
    config = tmp_path / "newsletter.toml"
    config.write_text(
        config.read_text().replace('spoiler_leak = "warning"', 'spoiler_leak = "error"')
    )
    assert run_cli(["queue", "add", str(DATA / "leaky_recap.md")], tmp_path).returncode == 0
    refused = run_cli(["run", "--once", "--layout", "digest"], tmp_path)
    assert refused.returncode == 1 and "gives the ending away" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not list((tmp_path / "outbox").rglob("*.eml"))


def test_preview_follows_the_layout_asked_for(tmp_path):
    run_cli(["init", "."], tmp_path)
    article = str(sample_articles()[0])
    full = run_cli(["preview", article, "--out", "full"], tmp_path)
    digest = run_cli(["preview", article, "--out", "digest", "--layout", "digest"], tmp_path)
    assert full.returncode == 0 and digest.returncode == 0, digest.stderr
    assert "Spoilers below" in (tmp_path / "full" / "email.html").read_text()
    digest_html = (tmp_path / "digest" / "email.html").read_text()
    assert "Spoilers below" not in digest_html and "Read the ending" in digest_html
    assert "Read the ending: " in (tmp_path / "digest" / "email.txt").read_text()
