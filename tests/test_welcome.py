"""The welcome email, over the real web flow (live uvicorn on 127.0.0.1, real SQLite, the
outbox provider) and the real CLI: sent once per reader, with the latest issue's cards and
none of its ending, passing the pre-send check every issue passes."""

from __future__ import annotations

import time
from pathlib import Path

from newsletter.articles import read_article
from newsletter.check import check_rendered, has_errors
from newsletter.providers import make_provider
from newsletter.records import SubscriberStatus
from newsletter.settings import load_settings, write_default_config
from newsletter.store import Store
from newsletter.subscribers import add_subscriber
from newsletter.welcome import Welcomer, latest_issue, render_welcome
from tests.conftest import run_cli, write
from tests.test_web import (
    ONE_CLICK,
    SAMPLE_ARTICLES,
    LiveWeb,
    confirmation_link,
    publish_next,
    read_eml,
    serve_folder,
    wait_for,
)


def welcomes(folder: Path) -> list[Path]:
    return sorted((folder / "outbox" / "welcome").glob("*.eml"))


def settle(folder: Path, expected: int) -> list[Path]:
    """The welcome is written after the answer (a background task): wait for `expected`,
    then a moment more, so a second one would show."""
    deadline = time.monotonic() + 10
    while len(welcomes(folder)) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    return welcomes(folder)


def enable(folder: Path) -> None:
    config = folder / "newsletter.toml"
    text = config.read_text()
    assert "[welcome]\n" in text  # `init` writes the table, off
    config.write_text(text.replace("enabled = false", "enabled = true"))


def sign_up_and_confirm(web: LiveWeb, address: str, clicks: int = 1) -> None:
    """POST the form, follow the link of the confirmation in the outbox, POST the page."""
    assert web.post_form("/subscribe", {"email": address, "name": "Ada"}).status == 200
    subscriber = web.store.subscribers.by_email(address)
    eml = wait_for(web.settings.outbox_path / "confirmations" / f"{subscriber.id}.eml")
    path = web.path_of(confirmation_link(read_eml(eml), web.url))
    assert web.get(path).status == 200
    for _ in range(clicks):
        reply = web.post_form(path, {})
        assert reply.status == 200, reply.text


def spoiler_lines(article_file: Path, settings) -> list[str]:
    article = read_article(article_file, headings=settings.contract.headings)
    spoilers = settings.contract.spoiler_sections(article.sections)
    return [
        line.strip()
        for section in spoilers
        for line in section.text.splitlines()
        if len(line.strip()) > 40
    ]


def test_confirming_through_the_web_sends_exactly_one_welcome_with_the_latest_issue(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    write_default_config(tmp_path)
    enable(tmp_path)
    with serve_folder(tmp_path) as web:
        add_subscriber(web.store, "first@example.org", "First")
        article = sorted(SAMPLE_ARTICLES.glob("*.txt"))[0]
        publish_next(web, article.name)
        sign_up_and_confirm(web, "reader@example.org", clicks=2)  # a second click: no more
        found = settle(tmp_path, 1)
        assert len(found) == 1, found
        reader = web.store.subscribers.by_email("reader@example.org")
        assert found[0].name == f"{reader.id}.eml"
        assert web.store.subscribers.welcomed(reader.id)
        msg = read_eml(found[0])
        assert msg["Subject"] == f"Welcome to {web.settings.name}"
        # One-click unsubscribe like an issue, with the reader's own link.
        assert msg["List-Unsubscribe-Post"] == ONE_CLICK.decode()
        assert f"/unsubscribe/{reader.token}>" in msg["List-Unsubscribe"]
        html = msg.get_body(("html",)).get_content()
        text = msg.get_body(("plain",)).get_content()
        title = read_article(article, headings=web.settings.contract.headings).title
        pages = web.store.issues.issue_pages(1)
        assert title in html and title in text
        assert "Read the ending" in html and f"/articles/{pages[0].slug}" in html
        assert pages[0].teaser.split(" ")[0] in text
        assert "Hi Ada," in text
        for line in spoiler_lines(article, web.settings):
            assert line not in html and line not in text, line
        # The unsubscribe link in the welcome works with one click.
        reply = web.request("POST", f"/unsubscribe/{reader.token}", ONE_CLICK, {})
        assert reply.status == 200
        assert web.store.subscribers.by_id(reader.id).status == SubscriberStatus.UNSUBSCRIBED


def test_no_welcome_unless_enabled(tmp_path, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    write_default_config(tmp_path)
    with serve_folder(tmp_path) as web:
        sign_up_and_confirm(web, "reader@example.org")
        assert settle(tmp_path, 0) == []
        reader = web.store.subscribers.by_email("reader@example.org")
        assert reader.status == SubscriberStatus.ACTIVE
        assert not web.store.subscribers.welcomed(reader.id)


def test_the_welcome_passes_the_pre_send_check_with_and_without_an_issue(tmp_path):
    write_default_config(tmp_path)
    settings = load_settings(tmp_path / "newsletter.toml")
    store = Store(settings.database_url)
    try:
        empty = render_welcome(settings, latest_issue(settings, store))
        assert not has_errors(check_rendered(empty)), check_rendered(empty)
        assert "first issue is on its way" in empty.text
    finally:
        store.close()


def test_a_claimed_welcome_is_never_sent_twice_and_a_refused_one_is_given_back(tmp_path):
    write_default_config(tmp_path)
    settings = load_settings(tmp_path / "newsletter.toml")
    store = Store(settings.database_url)
    try:
        reader = add_subscriber(store, "r@example.org", "R")
        welcomer = Welcomer(settings, store)
        assert welcomer.welcome(reader) is True
        # A crash after the claim, a second process, a second import: the row says no.
        assert Welcomer(settings, store).welcome(reader) is False
        assert len(welcomes(tmp_path)) == 1

        # The outbox cannot write (its folder is a file): nothing went out, the claim is
        # given back, and the next try sends.
        other = add_subscriber(store, "o@example.org", "O")
        folder = tmp_path / "outbox" / "welcome"
        moved = folder.rename(tmp_path / "welcome-aside")
        folder.write_text("not a folder")
        assert welcomer.welcome_all([other]) == 0
        assert not store.subscribers.welcomed(other.id)
        folder.unlink()
        moved.rename(folder)
        assert Welcomer(settings, store, provider=make_provider(settings)).welcome(other)
        assert len(welcomes(tmp_path)) == 2
    finally:
        store.close()


def test_import_with_welcome_welcomes_the_new_active_readers_once(tmp_path):
    write_default_config(tmp_path)
    enable(tmp_path)
    csv = write(
        tmp_path / "list.csv",
        "email,name,status\na@example.org,A,active\nb@example.org,B,unsubscribed\n",
    )
    done = run_cli(["subscribers", "import", str(csv), "--welcome"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "welcomed 1" in done.stdout
    assert [p.name for p in welcomes(tmp_path)] == ["1.eml"]
    again = run_cli(["subscribers", "import", str(csv), "--welcome"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "welcomed 0" in again.stdout
    assert len(welcomes(tmp_path)) == 1
