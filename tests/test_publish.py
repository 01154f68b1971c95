"""`run` through the real `newsletter` command, as issue 25 met it: with nobody to send to it
refuses and keeps the article; it says what the check warns about before sending; and
`run --dry-run` shows what would go to whom while sending, making and using up nothing."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from newsletter import publish
from newsletter.delivery import SendingLease
from newsletter.exceptions import NoActiveSubscriber
from newsletter.providers import make_provider
from newsletter.records import ArticleStatus, utcnow
from tests.conftest import run_cli, write
from tests.faults import open_store

SUBSCRIBERS = "email,name\nann@example.com,Ann\nbob@example.org,Bob\ncarla@example.net,Carla\n"
DRAFT = (
    "---\ntitle: Unfinished Film (2021)\n---\n## Quick Recap\n\nThe hero TK arrives.\n"
    "\n## The Ending\n\nIt ends.\n"
)
NO_SUBSCRIBER = (
    "no active subscriber: nothing was sent and the article stays queued; "
    "add readers with `newsletter subscribers import FILE`"
)


def emails(folder: Path) -> list[Path]:
    return sorted((folder / "outbox").rglob("*.eml")) if (folder / "outbox").is_dir() else []


def queued(folder: Path) -> dict[str, ArticleStatus]:
    store = open_store(folder)
    try:
        return {row.filename: row.status for row in store.articles.queued(held=True)}
    finally:
        store.close()


def issues(folder: Path) -> list[int]:
    store = open_store(folder)
    try:
        return [issue.id for issue in store.issues.list_issues()]
    finally:
        store.close()


def test_run_with_no_active_subscriber_refuses_and_keeps_the_article_queued(tmp_path, seed_path):
    run_cli(["init", "."], tmp_path)
    assert run_cli(["queue", "add", str(seed_path)], tmp_path).returncode == 0
    # An unsubscribed reader is nobody to send to either.
    write(tmp_path / "gone.csv", "email,name,status\ngone@example.com,Gone,unsubscribed\n")
    assert run_cli(["subscribers", "import", "gone.csv"], tmp_path).returncode == 0

    refused = run_cli(["run"], tmp_path)
    assert refused.returncode == 1
    assert NO_SUBSCRIBER in refused.stderr and "Traceback" not in refused.stderr
    assert issues(tmp_path) == [] and not emails(tmp_path)
    assert queued(tmp_path) == {seed_path.name: ArticleStatus.QUEUED}
    assert "no issue yet" in run_cli(["status"], tmp_path).stdout  # nor one in the archive

    # Readers added, the same article goes out.
    write(tmp_path / "s.csv", SUBSCRIBERS)
    run_cli(["subscribers", "import", "s.csv"], tmp_path)
    sent = run_cli(["run"], tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert "sent 3" in sent.stdout and len(emails(tmp_path)) == 3
    assert queued(tmp_path) == {}


def test_run_prints_the_checks_warnings_one_line_each_before_sending(tmp_path, seed_path):
    """`init` leaves the sample's made-up postal address and a loopback base_url: both are
    said, one line each, before the issue goes out."""
    run_cli(["init", "."], tmp_path)
    write(tmp_path / "s.csv", SUBSCRIBERS)
    run_cli(["subscribers", "import", "s.csv"], tmp_path)
    run_cli(["queue", "add", str(seed_path)], tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}
    env["PYTHONUNBUFFERED"] = "1"  # one stream, in the order it was written
    out = subprocess.run(
        [sys.executable, "-m", "newsletter.cli", "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout
    lines = out.stdout.splitlines()
    postal = [n for n, line in enumerate(lines) if "sample's made-up address" in line]
    loopback = [n for n, line in enumerate(lines) if "point to 127.0.0.1" in line]
    sent = [n for n, line in enumerate(lines) if line.startswith("issue 1: sent")]
    assert len(postal) == 1 and len(loopback) == 1 and len(sent) == 1, out.stdout
    assert lines[postal[0]].startswith("warning settings: postal_address")
    assert lines[loopback[0]].startswith("warning html:")
    assert max(postal[0], loopback[0]) < sent[0]  # before the issue went out


def test_run_dry_run_shows_what_would_go_to_whom_and_uses_up_nothing(tmp_path, seed, seed_path):
    run_cli(["init", "."], tmp_path)
    write(tmp_path / "s.csv", SUBSCRIBERS)
    run_cli(["subscribers", "import", "s.csv"], tmp_path)
    run_cli(["queue", "add", str(seed_path)], tmp_path)
    assert run_cli(["queue", "layout", "digest"], tmp_path).returncode == 0

    dry = run_cli(["run", "--dry-run"], tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "would send to 3 active subscriber(s)" in dry.stdout
    assert "  layout: digest" in dry.stdout
    assert f"  article: {seed_path.name} ({seed.title})" in dry.stdout
    assert "sample's made-up address" in dry.stdout
    subject = next(
        line.removeprefix("  subject: ")
        for line in dry.stdout.splitlines()
        if line.startswith("  subject: ")
    )
    # Nothing sent, no issue made, the article and the layout choice still there.
    assert not emails(tmp_path) and issues(tmp_path) == []
    assert queued(tmp_path) == {seed_path.name: ArticleStatus.QUEUED}
    assert (
        "digest layout (chosen with 'queue layout')" in run_cli(["queue", "list"], tmp_path).stdout
    )

    # The real run sends what the dry run showed.
    sent = run_cli(["run"], tmp_path)
    assert sent.returncode == 0, sent.stderr
    first = email.message_from_bytes(emails(tmp_path)[0].read_bytes(), policy=email.policy.default)
    assert first["Subject"] == subject and len(emails(tmp_path)) == 3


def test_run_dry_run_tells_what_it_would_hold_without_holding_it(tmp_path, seed, seed_path):
    run_cli(["init", "."], tmp_path)
    run_cli(["queue", "add", str(write(tmp_path / "draft.md", DRAFT))], tmp_path)
    run_cli(["queue", "add", str(seed_path)], tmp_path)

    # No reader yet: the dry run shows the plan and says the real run would refuse.
    lonely = run_cli(["run", "--dry-run"], tmp_path)
    assert lonely.returncode == 1 and NO_SUBSCRIBER in lonely.stderr
    assert "would send to 0 active subscriber(s)" in lonely.stdout

    write(tmp_path / "s.csv", SUBSCRIBERS)
    run_cli(["subscribers", "import", "s.csv"], tmp_path)
    dry = run_cli(["run", "--dry-run"], tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "would hold draft.md: its check found errors:" in dry.stdout and "TK" in dry.stdout
    assert f"  article: {seed_path.name} ({seed.title})" in dry.stdout
    assert "draft.md (" not in dry.stdout.split("would send", 1)[1]  # not among those sent
    assert queued(tmp_path) == {
        "draft.md": ArticleStatus.QUEUED,
        seed_path.name: ArticleStatus.QUEUED,
    }
    assert not emails(tmp_path) and issues(tmp_path) == []

    forced = run_cli(["run", "--dry-run", "--force"], tmp_path)
    assert forced.returncode == 0 and "would hold" not in forced.stdout
    assert "  article: draft.md (Unfinished Film (2021))" in forced.stdout


def test_a_scheduled_tick_with_no_active_subscriber_builds_nothing_and_says_so_once(
    store, settings, seed_path
):
    """The scheduler's path: the tick is refused once (not at every heartbeat), the article
    stays queued for the next tick."""
    publish.queue_add(store, settings, seed_path)
    tick = publish.latest_tick(settings, utcnow())
    ctx = publish.TickContext.of(store, settings, make_provider(settings))
    with SendingLease(store, settings.schedule.lease) as lease:
        with pytest.raises(NoActiveSubscriber, match="no active subscriber"):
            publish.scheduled_work(ctx, lease, tick + timedelta(minutes=1))
        assert publish.scheduled_work(ctx, lease, tick + timedelta(minutes=2)) is None
    assert store.issues.list_issues() == []
    assert [row.filename for row in store.articles.queued()] == [seed_path.name]
