"""The public pages (archive index, issue pages, feed) over real HTTP: rendered once per
publication version and revalidated with ETag / Last-Modified; cancels and publications made
by other processes show at the next request, on every server of the database. Also the 500
page's security headers and the trailing-slash redirect's Location (issue 10, point 9)."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import closing, contextmanager
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import pytest

from newsletter.records import RenderedIssue
from newsletter.store import Store
from newsletter.web.app import PAGE_CSP
from newsletter.web.archive import ARCHIVE_CSP
from newsletter.web.cache import PUBLIC_CACHE_CONTROL
from tests.conftest import run_cli
from tests.pg import database_url, fresh_postgres_url, postgres_url  # noqa: F401
from tests.test_web import LiveWeb, live_web

ATOM = "{http://www.w3.org/2005/Atom}"
PUBLIC = ("/archive", "/feed.xml")
BASE = "https://news.example.org"


@pytest.fixture
def web(tmp_path, monkeypatch) -> Iterator[LiveWeb]:
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    with live_web(tmp_path) as live:
        yield live


def new_issue(store: Store, slug: str, subject: str) -> int:
    """A public issue (status `sending`) as `run` makes it, without sending anything."""
    return store.issues.create_issue(
        RenderedIssue(
            slug=slug,
            subject=subject,
            preheader=f"About {subject}",
            html=f"<p>{subject}</p>",
            text=subject,
            archive_html=f"<!DOCTYPE html><title>{subject}</title><p>{subject}</p>",
            placeholder_nonce="0" * 16,
            view_url="",
        ),
        [],
    )


def feed_titles(body: bytes) -> list[str]:
    return [e.findtext(f"{ATOM}title") for e in ET.fromstring(body).iter(f"{ATOM}entry")]


def test_public_pages_carry_validators_and_answer_304(web):
    issue_id = new_issue(web.store, "first", "First light")
    created = web.store.issues.get_issue(issue_id).created_at
    for path in (*PUBLIC, "/archive/first"):
        page = web.get(path)
        assert page.status == 200, path
        etag = page.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10, etag
        assert page.headers["Cache-Control"] == PUBLIC_CACHE_CONTROL
        modified = parsedate_to_datetime(page.headers["Last-Modified"])
        assert modified.tzinfo is not None and abs((modified - created).total_seconds()) < 5
        assert web.get(path).body == page.body  # served again, byte for byte

        for matching in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            again = web.request("GET", path, headers={"If-None-Match": matching})
            assert again.status == 304, (path, matching)
            assert again.body == b""
            assert again.headers["ETag"] == etag
            assert again.headers["Cache-Control"] == PUBLIC_CACHE_CONTROL
            assert again.headers["Last-Modified"] == page.headers["Last-Modified"]
        stale = web.request("GET", path, headers={"If-None-Match": '"something-else"'})
        assert stale.status == 200 and stale.body == page.body

        since = page.headers["Last-Modified"]
        assert web.request("GET", path, headers={"If-Modified-Since": since}).status == 304
        earlier = format_datetime(modified.replace(year=modified.year - 1), usegmt=True)
        assert web.request("GET", path, headers={"If-Modified-Since": earlier}).status == 200
        assert web.request("GET", path, headers={"If-Modified-Since": "yesterday"}).status == 200
        # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
        both = {"If-None-Match": '"something-else"', "If-Modified-Since": since}
        assert web.request("GET", path, headers=both).status == 200

    issue = web.get("/archive/first")
    assert issue.headers["Content-Security-Policy"] == ARCHIVE_CSP
    assert issue.headers["Content-Type"] == "text/html; charset=utf-8"
    assert web.get("/archive").headers["Content-Security-Policy"] == PAGE_CSP
    assert web.get("/feed.xml").headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    missing = web.get("/archive/no-such-issue")
    assert missing.status == 404 and missing.headers["Cache-Control"] == "no-store"
    assert "ETag" not in missing.headers


def test_a_cancel_elsewhere_and_a_new_issue_show_at_the_next_request(
    tmp_path,
    monkeypatch,
    database_url,  # noqa: F811
):
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    database = {"NEWSLETTER_DATABASE_URL": database_url}
    with live_web(tmp_path, env=database) as web:
        _cancel_and_publish(web, tmp_path, database)


def _cancel_and_publish(web: LiveWeb, folder: Path, database: dict[str, str]) -> None:
    first = new_issue(web.store, "first", "First light")
    second = new_issue(web.store, "second", "Second wind")
    before = {path: web.get(path) for path in (*PUBLIC, "/archive/second")}
    assert "Second wind" in before["/archive"].text
    assert feed_titles(before["/feed.xml"].body) == ["Second wind", "First light"]

    # Cancelled by the CLI, another process with its own connection.
    done = run_cli(["cancel", str(second)], cwd=folder, env=database)
    assert done.returncode == 0, done.stderr
    index = web.get("/archive")
    assert "Second wind" not in index.text and "First light" in index.text
    assert feed_titles(web.get("/feed.xml").body) == ["First light"]
    assert web.get("/archive/second").status == 404
    assert web.get("/archive/first").status == 200
    for path in PUBLIC:
        old = before[path].headers["ETag"]
        revalidated = web.request("GET", path, headers={"If-None-Match": old})
        assert revalidated.status == 200, path
        assert revalidated.headers["ETag"] != old
    gone = web.request("GET", "/archive/second", headers={"If-None-Match": "*"})
    assert gone.status == 404

    # Published through another Store (another connection pool), as `run` would.
    other = Store(web.settings.database_url)
    try:
        new_issue(other, "third", "Third time")
    finally:
        other.close()
    assert "Third time" in web.get("/archive").text
    assert feed_titles(web.get("/feed.xml").body) == ["Third time", "First light"]
    assert web.get("/archive/third").status == 200
    assert web.store.issues.get_issue(first).status == "sending"


def test_pages_are_rendered_once_per_version_not_per_request(web):
    """Once rendered, a page is served without reading the issues again: with the issues
    table moved away under the running server, the warm pages still answer, and the first
    change that needs them again (a new version) fails loudly rather than serving old pages."""
    new_issue(web.store, "first", "First light")
    warm = {path: web.get(path) for path in (*PUBLIC, "/archive/first")}
    with closing(sqlite3.connect(web.store.engine.url.database)) as conn, conn:
        conn.execute("ALTER TABLE issues RENAME TO issues_away")
    for path, page in warm.items():
        again = web.get(path)
        assert again.status == 200 and again.body == page.body, path
        assert again.headers["ETag"] == page.headers["ETag"]
    web.store.publication.bump()
    assert web.get("/archive").status == 500


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_process(folder: Path, base_url: str, database: str, *options: str) -> Iterator[LiveWeb]:
    """`newsletter serve` in a subprocess of its own on the folder's database; servers of one
    newsletter share its public base_url (the pages' links)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}
    env["NEWSLETTER_BASE_URL"] = base_url
    env["NEWSLETTER_DATABASE_URL"] = database
    log = folder / f"serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "newsletter.cli", "serve", "--port", str(port), *options],
            cwd=folder,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "newsletter serve did not start"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield LiveWeb(None, None, url)  # type: ignore[arg-type]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_serve_logs_each_request_unless_told_not_to(tmp_path):
    run_cli(["init"], cwd=tmp_path).check_returncode()
    database = f"sqlite:///{tmp_path / 'newsletter.db'}"
    for options, logged in (((), True), (("--no-access-log",), False)):
        with serve_process(tmp_path, BASE, database, *options) as web:
            assert web.get("/archive").status == 200
        port = web.url.rsplit(":", 1)[1]
        output = (tmp_path / f"serve-{port}.log").read_text()
        assert "Application startup complete" in output  # the server's own lines stay
        assert ('"GET /archive HTTP/1.1" 200' in output) is logged, output


def test_two_servers_on_one_database_agree(tmp_path, database_url):  # noqa: F811
    run_cli(["init"], cwd=tmp_path).check_returncode()
    database = {"NEWSLETTER_DATABASE_URL": database_url}
    store = Store(database_url)
    try:
        first = new_issue(store, "first", "First light")
        with (
            serve_process(tmp_path, BASE, database_url) as one,
            serve_process(tmp_path, BASE, database_url) as two,
        ):
            for path in (*PUBLIC, "/archive/first"):
                a, b = one.get(path), two.get(path)
                assert a.status == b.status == 200
                assert a.headers["ETag"] == b.headers["ETag"], path
                assert a.headers["Last-Modified"] == b.headers["Last-Modified"], path
                # One server's validator is good at the other.
                again = two.request("GET", path, headers={"If-None-Match": a.headers["ETag"]})
                assert again.status == 304

            new_issue(store, "second", "Second wind")
            for server in (one, two):
                assert "Second wind" in server.get("/archive").text
            assert one.get("/feed.xml").headers["ETag"] == two.get("/feed.xml").headers["ETag"]

            done = run_cli(["cancel", str(first)], cwd=tmp_path, env=database)
            assert done.returncode == 0, done.stderr
            for server in (one, two):
                assert "First light" not in server.get("/archive").text
                assert feed_titles(server.get("/feed.xml").body) == ["Second wind"]
                assert server.get("/archive/first").status == 404
            assert one.get("/archive").headers["ETag"] == two.get("/archive").headers["ETag"]
    finally:
        store.close()


# --------------------------------------------------------------------------- issue 10, point 9


def test_a_server_error_carries_the_security_headers(web):
    new_issue(web.store, "first", "First light")
    # Break the database under the running server: the next page that reads it fails.
    with closing(sqlite3.connect(web.store.engine.url.database)) as conn, conn:
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("DROP TABLE deliveries")
        conn.execute("DROP TABLE articles")
        conn.execute("DROP TABLE issues")
    for path in ("/archive", "/feed.xml", "/archive/first"):
        page = web.get(path)
        assert page.status == 500, path
        assert page.headers["Content-Security-Policy"] == PAGE_CSP
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Cache-Control"] == "no-store"
        assert "Something went wrong" in page.text
        assert "Traceback" not in page.text and "no such table" not in page.text


def test_the_trailing_slash_redirect_stays_on_the_site_whatever_the_host(tmp_path, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    base = "https://news.example.org/letters"
    with live_web(tmp_path, env={"NEWSLETTER_BASE_URL": base}) as web:
        forged = {"Host": "evil.example"}
        for path, target in (
            ("/archive/", "/archive"),
            ("/feed.xml/", "/feed.xml"),
            ("/subscribe/?from=footer", "/subscribe?from=footer"),
        ):
            answer = web.request("GET", path, headers=forged)
            assert answer.status == 307, path
            # Relative, below base_url's path: never the forged host, never another port.
            assert answer.headers["Location"] == "/letters" + target
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert web.request("GET", "/nothing-here/", headers=forged).status == 404
