"""The library and CLI behind the editors' workspace: editor accounts from the command line,
queue moves, the cadence written into newsletter.toml, subscriber search with keyset pages,
and alerts sent once per event. Real SQLite files, real subprocesses, the outbox provider."""

from __future__ import annotations

import tomllib

import pytest

from newsletter import alerts, publish
from newsletter.editors import (
    add_editor,
    authenticate,
    change_password,
    editor_for_session,
    start_session,
)
from newsletter.exceptions import ConfigError, NewsletterError
from newsletter.providers import make_provider
from newsletter.records import IssueStatus, utcnow
from newsletter.resources import sample_articles
from newsletter.settings import load_settings, update_cadence
from newsletter.subscribers import add_subscriber, signing_secret
from newsletter.tokens import new_token
from tests.conftest import run_cli, write
from tests.test_web import uncertain_issue

PASSWORD = "correct horse battery"


def test_editors_from_the_command_line(folder):
    added = run_cli(
        ["editors", "add", "Ed@Example.com", "--tz", "America/New_York"],
        folder,
        input=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert "added editor Ed@example.com" in added.stdout
    assert PASSWORD not in added.stdout + added.stderr
    listed = run_cli(["editors", "list"], folder)
    assert "Ed@example.com" in listed.stdout and "America/New_York" in listed.stdout

    again = run_cli(["editors", "add", "ed@example.com"], folder, input=PASSWORD + "\n")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr
    short = run_cli(["editors", "add", "new@example.com"], folder, input="short\n")
    assert short.returncode == 1 and "at least 10 characters" in short.stderr

    changed = run_cli(["editors", "password", "ed@example.com"], folder, input="another long one\n")
    assert changed.returncode == 0, changed.stderr
    removed = run_cli(["editors", "remove", "ed@example.com"], folder)
    assert removed.returncode == 0 and "removed editor" in removed.stdout
    assert "no editors yet" in run_cli(["editors", "list"], folder).stdout
    gone = run_cli(["editors", "remove", "ed@example.com"], folder)
    assert gone.returncode == 1 and "no editor" in gone.stderr


def test_passwords_are_argon2_hashes_and_changes_end_the_sessions(store):
    editor = add_editor(store, "ed@example.com", PASSWORD)
    assert store.editors.by_email("ed@example.com").password_hash.startswith("$argon2id$")
    assert authenticate(store, "ED@example.com", PASSWORD) == editor
    assert authenticate(store, "ed@example.com", PASSWORD + "!") is None
    assert authenticate(store, "nobody@example.com", PASSWORD) is None
    session = start_session(store, editor)
    assert editor_for_session(store, session) == editor
    change_password(store, "ed@example.com", "a new long password")
    assert editor_for_session(store, session) is None
    with pytest.raises(NewsletterError, match="not a valid address"):
        add_editor(store, "not an address", PASSWORD)


def test_queue_move_on_the_command_line(folder):
    for path in sample_articles():
        assert run_cli(["queue", "add", str(path)], folder).returncode == 0

    def order() -> list[str]:
        out = run_cli(["queue", "list"], folder).stdout
        return [line.split()[1] for line in out.splitlines() if line.strip()[:1].isdigit()]

    first, second, third = order()
    moved = run_cli(["queue", "move", third, "--up"], folder)
    assert moved.returncode == 0 and f"moved {third} up" in moved.stdout
    assert order() == [first, third, second]
    assert "already first" in run_cli(["queue", "move", first, "--up"], folder).stdout
    assert run_cli(["queue", "move", first, "--down"], folder).returncode == 0
    assert order() == [third, first, second]
    missing = run_cli(["queue", "move", "nope.md", "--down"], folder)
    assert missing.returncode == 1 and "no queued article" in missing.stderr


def test_the_cadence_is_written_into_newsletter_toml_keeping_comments(folder):
    path = folder / "newsletter.toml"
    before = path.read_text()
    schedule = update_cadence(folder, ["mon", "thu"], "07:30", 2)
    after = path.read_text()

    def comments(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.lstrip().startswith("#")]

    assert comments(after) == comments(before) and len(comments(before)) > 5
    assert tomllib.loads(after)["schedule"]["days"] == ["mon", "thu"]
    assert schedule.days == ("mon", "thu") and schedule.articles_per_issue == 2
    settings = load_settings(path, env={})
    assert settings.schedule == schedule
    # What the loader refuses is never written.
    for days, at, per_issue, setting in (
        (["mon"], "25:99", 1, r"\[schedule\] time"),
        (["someday"], "09:00", 1, r"\[schedule\] days"),
        (["mon"], "09:00", 0, r"\[schedule\] articles_per_issue"),
    ):
        with pytest.raises(ConfigError, match=setting):
            update_cadence(folder, days, at, per_issue)
        assert path.read_text() == after
    assert before != after


def test_subscriber_search_uses_keyset_pages(store):
    secret = signing_secret(store)
    store.subscribers.add(
        {"email": f"reader{i:04d}@example.com", "name": f"Name {i:04d}", "token": new_token(secret)}
        for i in range(130)
    )
    add_subscriber(store, "zed@example.com", "Ann Lovelace")
    seen: list[str] = []
    after = ""
    while True:
        page = store.subscribers.search(after=after, limit=50)
        seen.extend(r.email for r in page.rows)
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert len(seen) == 131 and len(set(seen)) == 131
    # Address prefixes, paged along the address index.
    first = store.subscribers.search("READER01", limit=20)
    assert [r.email for r in first.rows] == [f"reader{i:04d}@example.com" for i in range(100, 120)]
    rest = store.subscribers.search("reader01", after=first.next_cursor, limit=20)
    assert [r.email for r in rest.rows] == [f"reader{i:04d}@example.com" for i in range(120, 130)]
    assert rest.next_cursor is None
    # Name prefixes, paged along lower(name) then id.
    named = store.subscribers.search("name 00", field="name", limit=60)
    assert [r.name for r in named.rows] == [f"Name {i:04d}" for i in range(60)]
    more = store.subscribers.search("name 00", field="name", after=named.next_cursor, limit=60)
    assert [r.name for r in more.rows] == [f"Name {i:04d}" for i in range(60, 100)]
    assert [r.email for r in store.subscribers.search("ann", field="name").rows] == [
        "zed@example.com"
    ]
    assert store.subscribers.search("ann").rows == []  # no address starts with it
    assert store.subscribers.search("ann", status="unsubscribed", field="name").rows == []


def test_alerts_go_to_every_editor_once_per_event(store, settings):
    add_editor(store, "ed@example.com", PASSWORD)
    add_editor(store, "ann@example.com", PASSWORD)
    provider = make_provider(settings)
    assert alerts.send_alerts(store, settings, provider) == []

    # A held article, a paused issue and uncertain recipients left.
    settings.issues_dir.mkdir(exist_ok=True)
    broken = write(settings.issues_dir / "broken.md", "---\ntitle: [unclosed\n---\n")
    publish.sync_queue(store, settings)
    publish.pick(store, settings, utcnow())  # the scheduler notes the error
    issue_id, _ = uncertain_issue(store, ["u@example.com"])
    store.issues.set_issue_status(issue_id, IssueStatus.PAUSED, error="the key was refused (401)")

    sent = alerts.send_alerts(store, settings, provider)
    subjects = sorted(a.subject for a in sent)
    assert any(s.startswith("Unreadable article: broken.md") for s in subjects)
    assert f"Issue {issue_id} paused: the provider refused the key" in subjects
    assert f"Issue {issue_id}: 1 uncertain recipients" in subjects
    emails = sorted((settings.outbox_path / "alerts").glob("*.eml"))
    assert len(emails) == 2 * len(sent)
    assert alerts.send_alerts(store, settings, provider) == []  # at most once per event
    assert len(sorted((settings.outbox_path / "alerts").glob("*.eml"))) == len(emails)

    # A new event (another error on the same article) is told again.
    write(broken, "---\ntitle: still [unclosed\n---\n")
    publish.pick(store, settings, utcnow())
    assert [a.subject for a in alerts.send_alerts(store, settings, provider)] == [
        "Unreadable article: broken.md"
    ]


def test_the_scheduler_takes_a_new_cadence_and_alerts_the_editors(store, settings):
    import os

    from newsletter.scheduler import SchedulerRunner

    said: list[str] = []
    runner = SchedulerRunner(store, settings, said.append)
    add_editor(store, "ed@example.com", PASSWORD)
    settings.issues_dir.mkdir(exist_ok=True)
    write(settings.issues_dir / "broken.md", "---\ntitle: [unclosed\n---\n")
    publish.pick(store, settings, utcnow())  # the error is noted on the article
    update_cadence(settings.root, ["sat"], "06:45", 2)
    config = settings.root / "newsletter.toml"
    later = (runner.config_mtime or 0) + 1_000_000_000  # a coarse clock must not hide it
    os.utime(config, ns=(later, later))

    runner.wake("heartbeat")
    assert runner.settings.schedule.days == ("sat",)
    assert runner.ctx.settings.schedule.articles_per_issue == 2
    assert any(line.startswith("cadence changed in newsletter.toml") for line in said)
    assert "alerted the editors: Unreadable article: broken.md" in said
    said.clear()
    runner.wake("heartbeat")  # nothing new: no second alert, no second reload
    assert not any("Unreadable article" in line or "cadence" in line for line in said)


def test_an_unknown_address_is_verified_against_a_hash_as_costly_as_a_real_one(store):
    """The sign-in form must not tell who is an editor by its time: the stand-in hash an
    unknown address is verified against has the parameters real hashes get now (it is no
    longer made at import, which cost every command about 0.4 s)."""
    from argon2 import extract_parameters

    from newsletter import editors

    add_editor(store, "ed@example.com", PASSWORD)
    real = store.editors.by_email("ed@example.com").password_hash
    assert extract_parameters(editors._dummy_hash()) == extract_parameters(real)
    assert authenticate(store, "nobody@example.com", PASSWORD) is None
    assert authenticate(store, "ed@example.com", PASSWORD) is not None
