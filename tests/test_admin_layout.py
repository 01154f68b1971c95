"""The next issue's layout, chosen in the editors' workspace: stored in the database, shown on
the queue and preview pages, rendered by the preview frames, honoured by the scheduler's tick
and by `run` (where an explicit `--layout` wins), and used up by the issue it was for."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from markupsafe import escape

from newsletter import publish
from newsletter.articles import read_article
from newsletter.check import check_source
from newsletter.contract import DEFAULT_CONTRACT
from newsletter.delivery import SendingLease
from newsletter.providers import make_provider
from newsletter.records import RenderedIssue, utcnow
from newsletter.resources import sample_articles
from newsletter.settings import load_settings
from newsletter.spoilers import sentences_of
from newsletter.store import Store
from newsletter.subscribers import add_subscriber
from tests.conftest import run_cli, write
from tests.test_admin_http import Browser, csrf_of, web  # noqa: F401 (the fixture)
from tests.test_web import SAMPLE_ARTICLES

ORCHARD = SAMPLE_ARTICLES / "003_the-orchard-accounts.md"
DATA = Path(__file__).resolve().parent / "data"
SPOILERS_BELOW = "Spoilers below"  # the full layout's divider


def spoiler_sentences(path) -> list[str]:
    article = read_article(path)
    return [
        sentence
        for section in DEFAULT_CONTRACT.spoiler_sections(article.sections)
        for _, sentence in sentences_of(section)
    ]


def test_digest_chosen_in_the_workspace_is_what_the_tick_sends_and_is_used_up(web):  # noqa: F811
    add_subscriber(web.store, "reader@example.com", "Reader")
    publish.queue_add(web.store, web.settings, ORCHARD)
    article_id = web.store.articles.queued()[0].id
    browser = Browser(web)
    assert browser.sign_in().status == 303

    page = browser.get("/admin/queue")
    assert 'goes out as <strong class="layout">full</strong>' in page.text  # one article
    assert 'value="automatic" checked' in page.text
    token = csrf_of(page)

    # A state change like any other: without the session's token, nothing is stored.
    refused = browser.post("/admin/queue/layout", {"layout": "digest", "back": "/admin/queue"})
    assert refused.status == 403 and web.store.issues.next_layout() is None
    reply = browser.post(
        "/admin/queue/layout", {"csrf_token": token, "layout": "digest", "back": "/admin/queue"}
    )
    assert reply.status == 303 and reply.headers["location"] == "/admin/queue"
    assert web.store.issues.next_layout() == "digest"
    page = browser.get("/admin/queue")
    assert "The next issue goes out as digest." in page.text  # the flash message
    assert 'goes out as <strong class="layout">digest</strong>' in page.text
    assert "chosen here" in page.text and 'value="digest" checked' in page.text
    bad = browser.post("/admin/queue/layout", {"csrf_token": token, "layout": "poster"})
    assert bad.status == 400 and "unknown layout &#39;poster&#39;" in bad.text
    assert web.store.issues.next_layout() == "digest"

    # The preview shows, and its frames render, the chosen layout.
    preview = browser.get(f"/admin/queue/{article_id}/preview")
    assert '<dd id="layout"><strong class="layout">digest</strong>: chosen' in preview.text
    frame = browser.get(f"/admin/queue/{article_id}/email?view=desktop")
    assert "Read the ending" in frame.text and SPOILERS_BELOW not in frame.text

    # The scheduler's tick, as `newsletter scheduler` runs it, a minute after a cadence time.
    tick = publish.latest_tick(web.settings, utcnow())
    ctx = publish.TickContext.of(web.store, web.settings, make_provider(web.settings))
    with SendingLease(web.store, web.settings.schedule.lease) as lease:
        result = publish.scheduled_work(ctx, lease, tick + timedelta(minutes=1))
    assert result is not None and result.issue_id is not None and result.report.ok
    issue = web.store.issues.get_issue(result.issue_id)
    assert "Read the ending" in issue.html and SPOILERS_BELOW not in issue.html
    for sentence in spoiler_sentences(ORCHARD):
        assert sentence not in issue.html and sentence not in issue.text

    # Used up by the issue it was for: the page says automatic again, and the next issue is.
    assert web.store.issues.next_layout() is None
    page = browser.get("/admin/queue")
    assert 'value="automatic" checked' in page.text and "chosen here" not in page.text
    publish.queue_add(web.store, web.settings, SAMPLE_ARTICLES / "002_static-over-galveston.txt")
    again = publish.publish_tick(ctx)
    assert SPOILERS_BELOW in web.store.issues.get_issue(again.issue_id).html


def test_choosing_from_the_preview_returns_to_it_and_automatic_clears(web):  # noqa: F811
    publish.queue_add(web.store, web.settings, ORCHARD)
    article_id = web.store.articles.queued()[0].id
    browser = Browser(web)
    assert browser.sign_in().status == 303
    back = f"/admin/queue/{article_id}/preview"
    page = browser.get(back)
    assert 'id="next-layout"' in page.text  # the article goes out in the next issue
    fields = {"csrf_token": csrf_of(page), "layout": "full", "back": back}
    reply = browser.post("/admin/queue/layout", fields)
    assert reply.status == 303 and reply.headers["location"] == back
    assert web.store.issues.next_layout() == "full"
    # Only a preview page of the workspace is a place to go back to.
    reply = browser.post("/admin/queue/layout", {**fields, "back": "https://evil.example/"})
    assert reply.headers["location"] == "/admin/queue"
    reply = browser.post("/admin/queue/layout", {**fields, "layout": "automatic"})
    assert reply.status == 303 and web.store.issues.next_layout() is None


def issue(slug: str) -> RenderedIssue:
    return RenderedIssue(
        subject=slug,
        preheader="",
        html=f"<p>{slug}</p>",
        text=slug,
        archive_html="",
        placeholder_nonce="0" * 16,
        view_url="",
        slug=slug,
    )


def test_an_issue_uses_up_only_the_choice_it_was_built_with(tmp_path):
    """An editor who changes the choice while a tick builds the issue keeps the new one."""
    store = Store(f"sqlite:///{tmp_path / 'n.db'}")
    try:
        store.issues.set_next_layout("full")
        store.issues.create_issue(issue("a"), [], layout_choice="digest")
        assert store.issues.next_layout() == "full"
        store.issues.create_issue(issue("b"), [], layout_choice="full")
        assert store.issues.next_layout() is None
    finally:
        store.close()


def test_run_once_honours_the_choice_and_an_explicit_layout_wins(tmp_path):
    run_cli(["init", "."], tmp_path)
    write(tmp_path / "s.csv", "email,name\nreader@example.com,Reader\n")
    assert run_cli(["subscribers", "import", "s.csv"], tmp_path).returncode == 0
    first, second = sample_articles()[:2]
    settings = load_settings(tmp_path / "newsletter.toml", env={})

    def choose(layout: str) -> None:
        store = Store(settings.database_url)
        try:
            publish.choose_next_layout(store, layout)
        finally:
            store.close()

    def issue_html(issue_id: int) -> tuple[str, str | None]:
        """The issue's HTML and the choice left for the next one; the issue row keeps the
        layout it was rendered in, and that is what the HTML shows."""
        store = Store(settings.database_url)
        try:
            issue = store.issues.get_issue(issue_id)
            shown = "full" if SPOILERS_BELOW in issue.html else "digest"
            assert issue.layout == shown and issue.rendered("").layout == shown
            return issue.html, store.issues.next_layout()
        finally:
            store.close()

    assert run_cli(["queue", "add", str(first)], tmp_path).returncode == 0
    assert "next issue: full layout (automatic)" in run_cli(["queue", "list"], tmp_path).stdout
    # The CLI sets the same choice as the workspace's form, and shows it.
    chose = run_cli(["queue", "layout", "digest"], tmp_path)
    assert chose.returncode == 0 and "the next issue goes out as digest" in chose.stdout
    listing = run_cli(["queue", "list"], tmp_path).stdout
    assert "next issue: digest layout (chosen with 'queue layout')" in listing
    assert run_cli(["queue", "layout", "sideways"], tmp_path).returncode == 2
    out = run_cli(["run", "--once"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    html, left = issue_html(1)
    assert "Read the ending" in html and SPOILERS_BELOW not in html and left is None

    assert run_cli(["queue", "add", str(second)], tmp_path).returncode == 0
    choose("digest")
    out = run_cli(["run", "--once", "--layout", "full"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    html, left = issue_html(2)
    assert SPOILERS_BELOW in html and left is None  # the issue it was for is made


def test_the_preview_reports_what_check_reports_spoiler_leaks_included(web):  # noqa: F811
    """The workspace's check results are `newsletter check FILE`'s: an article whose recap
    gives its ending away shows the spoiler-leak warning on its preview page."""
    publish.queue_add(web.store, web.settings, DATA / "leaky_recap.txt")
    article_id = web.store.articles.queued()[0].id
    browser = Browser(web)
    assert browser.sign_in().status == 303
    page = browser.get(f"/admin/queue/{article_id}/preview")
    assert page.status == 200
    path = web.settings.issues_dir / "leaky_recap.txt"
    leaks = [f for f in check_source(web.settings, None, (str(path),)) if f.code == "spoiler-leak"]
    assert leaks  # the CLI's check finds the leak...
    findings = page.text[page.text.index('<ul id="findings">') :].split("</ul>")[0]
    for leak in leaks:  # ...and the preview shows each one
        assert str(escape(leak.message)) in findings
