"""`newsletter check ISSUE_ID` runs the editorial rules too: the stored subject and preheader
and the issue's articles, read again from issues/, through the real CLI on a real SQLite
database. What it cannot check it says, never skipping in silence; an article whose file is
gone is checked for leaks on the article page stored with the issue."""

from __future__ import annotations

import os
import time
from pathlib import Path

from newsletter.articles import read_article
from newsletter.check import check_source
from newsletter.check.editorial import _page_article
from newsletter.contract import DEFAULT_CONTRACT
from newsletter.records import IssueStatus, PublishedArticle, RenderedIssue, utcnow
from newsletter.render import render_article_pages
from newsletter.resources import sample_articles
from newsletter.settings import load_settings, settings_from_dict, write_default_config
from newsletter.store import Store
from tests.conftest import run_cli, write

DATA = Path(__file__).resolve().parent / "data"


def sent_leaky_issue(folder: Path) -> Path:
    """A one-article issue whose Quick Recap gives the ending away, sent through the outbox."""
    assert run_cli(["init", "."], folder).returncode == 0
    write(folder / "s.csv", "email,name\nreader@example.com,Reader\n")
    assert run_cli(["subscribers", "import", "s.csv"], folder).returncode == 0
    assert run_cli(["queue", "add", str(DATA / "leaky_recap.txt")], folder).returncode == 0
    sent = run_cli(["run", "--once"], folder)
    assert sent.returncode == 0 and "issue 1:" in sent.stdout, sent.stdout + sent.stderr
    return folder / "issues" / "leaky_recap.txt"


def test_check_of_a_stored_issue_reports_its_spoiler_leak(tmp_path):
    stored = sent_leaky_issue(tmp_path)
    out = run_cli(["check", "1"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"warning {stored}:9: 'By the end, Ines betrays her brother" in out.stdout
    assert "echoes 'What Happens in the Ending' at line 12" in out.stdout
    # The subject went out with the issue: it is what the check compares, not a new one.
    assert "could not run" not in out.stdout and "edited after" not in out.stdout

    config = tmp_path / "newsletter.toml"
    config.write_text(
        config.read_text().replace('spoiler_leak = "warning"', 'spoiler_leak = "error"')
    )
    out = run_cli(["check", "1"], tmp_path)
    assert out.returncode == 1 and f"error {stored}:9:" in out.stdout


def test_check_of_a_stored_issue_says_what_it_could_not_check(tmp_path):
    stored = sent_leaky_issue(tmp_path)
    # Edited since it went out: checked as it is now, and said so.
    later = time.time() + 5
    os.utime(stored, (later, later))
    out = run_cli(["check", "1"], tmp_path)
    assert "leaky_recap.txt was edited after issue 1 was made" in out.stdout
    assert "gives the ending away" in out.stdout

    # Gone: the contract check, which needs the file, is named as not run; the leak check
    # runs on the article page stored with the issue.
    page = "/articles/the-salt-road-2023-ending-explained"
    hidden = stored.rename(tmp_path / "elsewhere.txt")
    out = run_cli(["check", "1"], tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr
    assert f"warning {stored}: 'The Salt Road (2023): Ending Explained' of issue 1 cannot" in (
        out.stdout
    )
    assert (
        "its article contract check could not run; its spoiler-leak check ran on the article "
        f"page stored with the issue, {page}"
    ) in out.stdout
    assert f"warning issue 1, {page}: 'By the end, Ines betrays her brother" in out.stdout
    assert "echoes 'What Happens in the Ending' on the stored article page" in out.stdout

    # Queued again: the article is no longer the issue's; its page is all that is left.
    hidden.rename(stored)
    assert run_cli(["queue", "add", str(stored)], tmp_path).returncode == 0
    out = run_cli(["check", "1"], tmp_path)
    assert "issue 1 names no article file any more (it carried 'The Salt Road" in out.stdout
    assert "the article contract check could not run" in out.stdout
    assert f"warning issue 1, {page}: 'By the end, Ines betrays her brother" in out.stdout


def test_an_issue_with_neither_files_nor_pages_says_no_editorial_check_ran(tmp_path):
    write_default_config(tmp_path)
    settings = load_settings(tmp_path / "newsletter.toml", env={})
    store = Store(settings.database_url)
    try:
        issue_id = store.issues.create_issue(
            RenderedIssue(
                subject="Old issue",
                preheader="",
                html="<p>x</p>",
                text="x",
                archive_html="",
                placeholder_nonce="0" * 16,
                view_url="",
                slug="old-issue",
            ),
            [],
        )
        findings = check_source(settings, store, (str(issue_id),))
    finally:
        store.close()
    (not_run,) = [f for f in findings if f.code == "editorial-not-run"]
    assert not_run.where == f"issue {issue_id}"
    assert "the article contract and spoiler-leak checks could not run" in not_run.message


def test_an_article_page_reads_back_as_the_sections_it_was_made_from(tmp_path):
    """The fallback reads the stored page: the same headings, paragraphs and reveal."""
    settings = settings_from_dict({}, tmp_path)
    for path in (DATA / "leaky_recap.txt", DATA / "leaky_recap.md", *sample_articles()):
        article = read_article(path)
        (page,) = render_article_pages([article], settings)
        stored = PublishedArticle(
            slug=page.slug,
            issue_id=1,
            position=1,
            title=page.title,
            teaser=page.teaser,
            html=page.html,
            issue_status=IssueStatus.SENT,
            published_at=utcnow(),
        )
        read, safe, spoilers = _page_article(stored)
        assert [s.heading for s in spoilers] == [
            s.heading for s in DEFAULT_CONTRACT.spoiler_sections(article.sections)
        ], path
        assert [s.heading for s in safe] == [
            s.heading for s in DEFAULT_CONTRACT.safe_sections(article.sections)
        ], path
        for back, original in zip(read.sections, article.sections, strict=True):
            paragraphs = [" ".join(p.split()) for p in original.text.split("\n\n")]
            assert back.text.split("\n\n") == paragraphs, (path, original.heading)
