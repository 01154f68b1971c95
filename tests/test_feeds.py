"""Feeds into the queue, against a real HTTP server on 127.0.0.1 serving the samples of
tests/data/feeds/ (WordPress, Ghost, Substack-style Atom, JSON Feed, a malformed export, a
feed listing one guid twice, 10,000 entries) with ETag and Last-Modified; feedparser,
markdownify and httpx for real, the store a real SQLite file, the CLI a subprocess."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from newsletter import publish
from newsletter.articles import read_article
from newsletter.delivery import SendingLease
from newsletter.feeds import poll_feeds
from newsletter.providers import make_provider
from newsletter.records import ArticleStatus
from newsletter.settings import load_settings, write_default_config
from newsletter.store import Store
from newsletter.subscribers import add_subscriber
from tests.conftest import run_cli
from tests.feed_samples import sample, wordpress_with
from tests.pg import database_url, fresh_postgres_url, postgres_url  # noqa: F401

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
LAST_MODIFIED = "Fri, 04 Dec 2026 07:12:09 GMT"
TYPES = {
    ".xml": "application/rss+xml; charset=UTF-8",
    ".atom": "application/atom+xml",
    ".json": "application/feed+json",
}


@dataclass
class Route:
    body: bytes
    content_type: str
    status: int = 200

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@dataclass
class FeedServer:
    """A site serving feeds: conditional GET answered with 304, every request recorded."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def serve(self, path: str, body: bytes, content_type: str | None = None) -> str:
        kind = content_type or TYPES.get(Path(path).suffix, TYPES[".xml"])
        self.routes[path] = Route(body, kind)
        return self.url + path

    def hits(self, path: str) -> list[dict[str, str]]:
        return [headers for p, headers in self.requests if p == path]


@contextmanager
def feed_server() -> Iterator[FeedServer]:
    site = FeedServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            site.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            route = site.routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            if route.status != 200:
                self.send_error(route.status)
                return
            if self.headers.get("If-None-Match") == route.etag or (
                "If-None-Match" not in self.headers
                and self.headers.get("If-Modified-Since") == LAST_MODIFIED
            ):
                self.send_response(304)
                self.send_header("ETag", route.etag)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(route.body)))
            self.send_header("ETag", route.etag)
            self.send_header("Last-Modified", LAST_MODIFIED)
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    site.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()


def unreachable_url() -> str:
    """An address on 127.0.0.1 where nothing listens (bound, then closed)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/feed/"


def folder_with_feeds(folder: Path, feeds: list[dict]) -> Path:
    write_default_config(folder)
    config = folder / "newsletter.toml"
    lines = []
    for feed in feeds:
        lines.append("\n[[feeds]]")
        lines += [f"{k} = {v!r}".replace("'", '"') for k, v in feed.items()]
    config.write_text(config.read_text() + "\n".join(lines) + "\n")
    return folder


@pytest.fixture
def site():
    with feed_server() as server:
        yield server


def opened(folder: Path):
    settings = load_settings(folder / "newsletter.toml")
    return settings, Store(settings.database_url)


def test_wordpress_ghost_substack_and_json_feeds_become_articles_of_the_contract(tmp_path, site):
    urls = [
        site.serve("/wp/feed/", sample("wordpress.xml")),
        site.serve("/ghost/rss/", sample("ghost.xml")),
        site.serve("/substack/feed.atom", sample("substack.atom")),
        site.serve("/micro/feed.json", sample("jsonfeed.json")),
    ]
    settings, store = opened(folder_with_feeds(tmp_path, [{"url": u} for u in urls]))
    report = poll_feeds(store, settings, NOW)
    assert [f.error for f in report.feeds] == [None] * 4
    wp, ghost, substack, micro = report.feeds
    # WordPress: two endings explained, oldest first; the roundup without sections is held.
    assert len(wp.queued) == 2 and wp.queued[0].startswith("feed-winter-harbour-2024")
    [(held_title, held_errors)] = wp.held
    assert held_title == "Five Films We Watched This Week"
    assert ":6: " in held_errors and "no sections" in held_errors  # file and line
    salt = read_article(settings.issues_dir / wp.queued[1], headings=settings.contract.headings)
    assert salt.title == "The Salt Road (2025): Ending Explained"
    assert salt.author == "Priya Natarajan"
    assert salt.summary == "Two drivers, one convoy, and a border that closes at dawn."
    assert [s.heading for s in salt.sections] == [
        "Quick Recap",
        "What Happens in the Ending",
        "Final Thoughts",
    ]
    assert "**Jonas**" in (settings.issues_dir / wp.queued[1]).read_text()
    assert "alert(" not in (settings.issues_dir / wp.queued[1]).read_text()  # sanitised
    # "quick recap" (h3) takes the contract's spelling; "Themes" is mapped to the spoiler
    # section it is short for.
    winter = read_article(settings.issues_dir / wp.queued[0], headings=settings.contract.headings)
    assert [s.heading for s in winter.sections] == [
        "Quick Recap",
        "What Happens in the Ending",
        "Themes and Symbolism",
    ]
    assert len(ghost.queued) == 1 and not ghost.held
    lanterns = (settings.issues_dir / ghost.queued[0]).read_text()
    assert "lanterns.jpg" not in lanterns and "*Yuki*" in lanterns
    # Substack: the titled entry is queued; the one without a title is written and held
    # with the contract's located error, named by its link: the editor adds a title.
    assert len(substack.queued) == 1
    [(what, why)] = substack.held
    assert what == "Untitled entry https://lastreel.example/p/untitled-note"
    assert re.fullmatch(
        r"feed-entry-\w{10}\.md:\d+: no title: add 'title:' to the front matter", why
    )
    untitled = settings.issues_dir / why.split(":")[0]
    assert "A short note without a title." in untitled.read_text()
    assert len(micro.queued) == 1
    jf = read_article(settings.issues_dir / micro.queued[0], headings=settings.contract.headings)
    assert jf.title == "The Long Table (2026): Ending Explained" and jf.author == "Ana Lima"

    queue = store.articles.queued(held=True)
    assert [a.status for a in queue].count(ArticleStatus.QUEUED) == 5
    held_row, untitled_row = [a for a in queue if a.status == ArticleStatus.HELD]
    assert held_row.title == "Five Films We Watched This Week"
    assert "does not fit the article contract" in held_row.last_error
    assert untitled_row.filename == untitled.name and "no title" in untitled_row.last_error
    # The editor releases it once fixed: it is queued like any held article.
    store.articles.release_article(untitled.name)
    assert untitled.name in [a.filename for a in store.articles.queued()]
    assert (report.queued, report.held, report.skipped) == (5, 2, 0)  # before the release


def test_each_entry_is_taken_once_across_rounds_restarts_and_edits(tmp_path, site):
    url = site.serve("/wp/feed/", sample("wordpress.xml"))
    double = site.serve("/double/rss", sample("same-guid-twice.xml"))
    folder = folder_with_feeds(tmp_path, [{"url": url}, {"url": double}])
    settings, store = opened(folder)
    first = poll_feeds(store, settings, NOW)
    assert len(first.feeds[0].queued) == 2
    assert (len(first.feeds[1].queued), first.feeds[1].skipped) == (1, 1)  # the same guid twice
    # Unchanged: the conditional GET is answered 304, nothing is read again.
    second = poll_feeds(store, settings, NOW + timedelta(hours=1))
    assert [f.not_modified for f in second.feeds] == [True, True]
    assert site.hits("/wp/feed/")[-1]["if-none-match"] == site.routes["/wp/feed/"].etag
    assert site.hits("/wp/feed/")[-1]["if-modified-since"] == LAST_MODIFIED
    # The site edits a post (same guid, new text) and adds one: only the new one is taken,
    # also by a new process on the same database.
    store.close()
    edited = sample("wordpress.xml").replace(b"Two drivers", b"Two tired drivers")
    edited = edited.replace(
        b"\t<item>",
        b"\t<item><title>The New One (2026): Ending Explained</title>"
        b'<guid isPermaLink="false">https://endings.example/?p=1500</guid>'
        b"<description><![CDATA[<h2>Quick Recap</h2><p>New.</p><h2>Final Thoughts</h2>"
        b"<p>Fine.</p>]]></description></item>\n\t<item>",
        1,
    )
    site.serve("/wp/feed/", edited)
    settings, store = opened(folder)
    third = poll_feeds(store, settings, NOW + timedelta(hours=2))
    assert [len(f.queued) for f in third.feeds] == [1, 0]
    assert third.feeds[0].queued[0].startswith("feed-the-new-one-2026")
    assert third.feeds[0].skipped == 3
    names = [a.filename for a in store.articles.queued(held=True)]
    assert len(names) == len(set(names)) == 5


def test_a_failing_feed_is_reported_retried_and_never_blocks_the_others(tmp_path, site):
    good = site.serve("/ghost/rss/", sample("ghost.xml"))
    broken = site.serve("/broken/feed.xml", sample("malformed.xml"))
    flaky = site.serve("/flaky/feed.json", sample("jsonfeed.json"))
    site.routes["/flaky/feed.json"].status = 503
    gone = unreachable_url()
    folder = folder_with_feeds(
        tmp_path,
        [{"url": u, "every_minutes": 60} for u in (gone, broken, flaky, good)],
    )
    settings, store = opened(folder)
    report = poll_feeds(store, settings, NOW)
    by_url = {f.url: f for f in report.feeds}
    assert by_url[good].queued and by_url[good].error is None
    assert "cannot fetch it" in by_url[gone].error and gone in by_url[gone].error
    assert "line 10" in by_url[broken].error and "not a readable feed" in by_url[broken].error
    assert "answered 503" in by_url[flaky].error
    assert by_url[flaky].retry_at == NOW + timedelta(minutes=2)  # sooner than its hour
    assert store.feeds.state(flaky).failures == 1
    # The scheduler's round (due only): the failed ones are due again before the good one.
    site.routes["/flaky/feed.json"].status = 200
    later = poll_feeds(store, settings, NOW + timedelta(minutes=3), due_only=True)
    assert {f.url for f in later.feeds} == {gone, broken, flaky}
    assert [f for f in later.feeds if f.url == flaky][0].queued
    assert store.feeds.state(flaky).failures == 0 and store.feeds.state(flaky).last_error is None
    assert store.feeds.state(gone).failures == 2
    assert store.feeds.state(gone).next_at == NOW + timedelta(minutes=3 + 4)


def test_a_new_feed_of_ten_thousand_entries_takes_its_backlog_and_remembers_the_rest(
    tmp_path, site
):
    url = site.serve("/big/feed/", wordpress_with(10_000))
    settings, store = opened(folder_with_feeds(tmp_path, [{"url": url, "backlog": 3}]))
    [outcome] = poll_feeds(store, settings, NOW).feeds
    assert outcome.error is None and outcome.skipped == 9_997
    assert [n.split("-")[4] for n in outcome.queued] == ["9998", "9999", "10000"]
    assert len(store.articles.queued()) == 3
    # The site changes its ETag (a new post): the 10,000 are known, only the new one goes.
    site.serve("/big/feed/", wordpress_with(10_001))
    [again] = poll_feeds(store, settings, NOW + timedelta(hours=1)).feeds
    assert len(again.queued) == 1 and again.skipped == 10_000
    assert again.queued[0].startswith("feed-the-salt-road-10001-2025")


def test_the_scheduler_polls_each_feed_on_its_interval_and_the_tick_sends_the_entry(tmp_path, site):
    fast = site.serve("/ghost/rss/", sample("ghost.xml"))
    slow = site.serve("/micro/feed.json", sample("jsonfeed.json"))
    folder = folder_with_feeds(
        tmp_path, [{"url": fast, "every_minutes": 10}, {"url": slow, "every_minutes": 120}]
    )
    settings, store = opened(folder)
    poll_feeds(store, settings, NOW, due_only=True)
    poll_feeds(store, settings, NOW + timedelta(minutes=11), due_only=True)
    assert (len(site.hits("/ghost/rss/")), len(site.hits("/micro/feed.json"))) == (2, 1)
    poll_feeds(store, settings, NOW + timedelta(minutes=121), due_only=True)
    assert (len(site.hits("/ghost/rss/")), len(site.hits("/micro/feed.json"))) == (3, 2)
    add_subscriber(store, "reader@example.com", "Reader")
    ctx = publish.TickContext.of(store, settings, make_provider(settings))
    with SendingLease(store, settings.schedule.lease) as lease:
        slot = publish.latest_tick(settings, NOW + timedelta(days=1))
        result = publish.scheduled_work(ctx, lease, slot + timedelta(minutes=1))
    assert result is not None and result.report is not None and result.report.ok
    assert result.articles == ["Paper Lanterns (2026): Ending Explained"]


def test_feeds_poll_reports_queued_held_skipped_and_failures(tmp_path, site):
    url = site.serve("/wp/feed/", sample("wordpress.xml"))
    gone = unreachable_url()
    folder = folder_with_feeds(tmp_path, [{"url": url}, {"url": gone}])
    run = run_cli(["feeds", "poll"], folder)
    assert run.returncode == 1, run.stderr
    assert f"{url}: queued 2, held 1, skipped 0" in run.stdout
    assert "held Five Films We Watched This Week:" in run.stdout
    assert f"failed {gone}: feed {gone}: cannot fetch it" in run.stderr
    assert "queued 2, held 1, skipped 0; 1 feed failed (retried later)" in run.stdout
    assert "Traceback" not in run.stderr
    again = run_cli(["feeds", "poll"], folder)
    assert f"{url}: not modified" in again.stdout
    listed = run_cli(["feeds", "list"], folder)
    assert f"{gone}: fetched" in listed.stdout and "failing (2)" in listed.stdout
    queue = run_cli(["queue", "list"], folder)
    assert "The Salt Road (2025)" in queue.stdout


def test_a_feed_setting_error_names_the_entry(tmp_path):
    folder = folder_with_feeds(tmp_path, [{"url": "ftp://example.com/feed"}])
    run = run_cli(["feeds", "poll"], folder)
    assert run.returncode == 1
    assert "[[feeds]] (item 1) url: must be an http:// or https:// address" in run.stderr


def test_the_running_scheduler_polls_the_feeds_it_is_due_to_at_each_wake_up(tmp_path, site):
    """The scheduler's own wake-up (real clock): both feeds at the first, none at the next
    (their intervals have not passed), and what it queued is said on its output."""
    from newsletter.scheduler import SchedulerRunner

    fast = site.serve("/ghost/rss/", sample("ghost.xml"))
    gone = unreachable_url()
    folder = folder_with_feeds(
        tmp_path, [{"url": fast, "every_minutes": 10}, {"url": gone, "every_minutes": 10}]
    )
    settings, store = opened(folder)
    said: list[str] = []
    runner = SchedulerRunner(store, settings, said.append)
    try:
        runner.wake("heartbeat")
        runner.wake("heartbeat")
    finally:
        runner.lease.release()
    assert len(site.hits("/ghost/rss/")) == 1
    assert f"feed {fast}: queued 1, held 0" in said
    assert any(line.startswith("feed failed, retried at") and gone in line for line in said)
    assert [a.title for a in store.articles.queued()] == ["Paper Lanterns (2026): Ending Explained"]


def test_the_workspace_shows_failing_feeds_and_held_entries_with_their_lines(tmp_path, site):
    from newsletter.editors import add_editor
    from tests.test_admin_http import PASSWORD, Browser
    from tests.test_web import serve_folder

    url = site.serve("/wp/feed/", sample("wordpress.xml"))
    gone = unreachable_url()
    folder = folder_with_feeds(tmp_path, [{"url": url}, {"url": gone}])
    with serve_folder(folder) as live:
        add_editor(live.store, "ed@example.com", PASSWORD)
        poll_feeds(live.store, live.settings, NOW)
        browser = Browser(live)
        assert browser.sign_in().status == 303
        page = browser.get("/admin/feeds")
        assert page.status == 200
        assert "Failing (1 in a row, retried)" in page.text and "cannot fetch it" in page.text
        assert "Five Films We Watched This Week" in page.text
        held = page.text[page.text.index('id="held-entries"') :]
        assert re.search(r"feed-five-films-we-watched-this-week-\w+\.md:6: no sections", held)
        assert "2 queued · 1 held" in page.text
        queue = browser.get("/admin/queue").text
        # The queue lists the held article too, with the reader's located error.
        assert re.search(r"Held: \S*feed-five-films\S*\.md:6: no sections", queue)


def test_a_feeds_layout_is_the_next_issues_unless_the_editors_chose_one(tmp_path, site):
    url = site.serve("/ghost/rss/", sample("ghost.xml"))
    other = site.serve("/micro/feed.json", sample("jsonfeed.json"))
    folder = folder_with_feeds(
        tmp_path, [{"url": url, "layout": "digest"}, {"url": other, "layout": "full"}]
    )
    settings, store = opened(folder)
    poll_feeds(store, settings, NOW)
    assert store.issues.next_layout() == "digest"  # the first feed's; the second left it
    store.issues.set_next_layout(None)
    assert poll_feeds(store, settings, NOW + timedelta(hours=2)).queued == 0
    assert store.issues.next_layout() is None  # nothing new queued: nothing chosen


def test_feeds_and_approvals_on_both_backends(tmp_path, site, database_url):  # noqa: F811
    """The new tables on SQLite and PostgreSQL: entries taken once, an issue prepared,
    rejected (articles held again) and a new one approved, each decision logged."""
    from newsletter import approval
    from newsletter.editors import add_editor

    url = site.serve("/wp/feed/", sample("wordpress.xml"))
    folder = folder_with_feeds(tmp_path, [{"url": url}])
    config = folder / "newsletter.toml"
    config.write_text(config.read_text().replace('approval = "none"', 'approval = "required"'))
    settings = load_settings(config, env={"NEWSLETTER_DATABASE_URL": database_url})
    store = Store(settings.database_url)
    try:
        assert poll_feeds(store, settings, NOW).queued == 2
        site.serve("/wp/feed/", sample("wordpress.xml") + b"\n")  # a new ETag, same entries
        assert poll_feeds(store, settings, NOW + timedelta(hours=1)).skipped == 3
        add_editor(store, "ed@example.com", "correct horse battery")
        add_subscriber(store, "reader@example.com", "Reader")
        ctx = publish.TickContext.of(store, settings, make_provider(settings))
        slot = publish.next_ticks(settings, NOW, 1)[0]
        first = publish.prepare_next(ctx, NOW)
        held = approval.reject(store, settings, first, "ed@example.com", "not this week").held
        assert len(held) == 1 and store.issues.issue_status(first) == "rejected"
        second = publish.prepare_next(ctx, NOW)
        assert second not in (None, first)
        approval.approve(store, settings, second, "ed@example.com")  # feeds name nobody
        sent = publish.publish_tick(ctx, slot, scheduled_for=slot)
        assert sent.issue_id == second and sent.report.ok
        assert [r.decision for r in approval.reviews(store, first)] == ["rejected"]
        assert [r.decision for r in approval.reviews(store, second)] == ["approved"]
    finally:
        store.close()


def test_feeds_list_names_every_feed_in_the_files_order_before_any_fetch(tmp_path):
    """`feeds list` reads each feed's status through `feeds.feed_statuses`: a feed never
    fetched says so with its interval, in the order newsletter.toml lists them."""
    folder = folder_with_feeds(
        tmp_path,
        [
            {"url": "https://example.com/b.xml", "every_minutes": 90},
            {"url": "https://example.com/a.xml"},
        ],
    )
    listed = run_cli(["feeds", "list"], folder)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "https://example.com/b.xml: never fetched (every 1:30:00)",
        "https://example.com/a.xml: never fetched (every 1:00:00)",
    ]
