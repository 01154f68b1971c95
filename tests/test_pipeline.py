"""The publishing pipeline end to end, through the real `newsletter` command."""

import email
import email.policy
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

from newsletter import publish
from newsletter.providers.outbox import OutboxProvider
from newsletter.settings import load_settings
from newsletter.store import Store
from tests.conftest import run_cli, write

SUBSCRIBERS = (
    "email,name\r\n"
    "ann@example.com,Ann Archer\r\n"
    'bob@example.org,"Bob, the Builder"\r\n'
    "carla@example.net,Carla\r\n"
)


def read_eml(path: Path) -> email.message.EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def test_seed_article_end_to_end(tmp_path, seed):
    seed_path = seed.path
    assert run_cli(["init", "."], tmp_path).returncode == 0
    write(tmp_path / "subs.csv", SUBSCRIBERS)
    out = run_cli(["subscribers", "import", "subs.csv"], tmp_path)
    assert out.returncode == 0 and "imported 3" in out.stdout
    out = run_cli(["queue", "add", str(seed_path)], tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "issues" / seed_path.name).exists()

    out = run_cli(["run", "--once"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert seed.title in out.stdout and "sent 3" in out.stdout

    files = sorted((tmp_path / "outbox").rglob("*.eml"))
    assert len(files) == 3
    recipients = {}
    for path in files:
        msg = read_eml(path)
        recipients[msg["To"].addresses[0].addr_spec] = msg
        assert msg["Subject"] == seed.title
        assert msg.get_content_type() == "multipart/alternative"
        parts = list(msg.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        assert all(p.get_content_charset() == "utf-8" for p in parts)
        unsubscribe = msg["List-Unsubscribe"].strip("<>")
        assert unsubscribe.startswith("http://127.0.0.1:8000/unsubscribe/")
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        html = msg.get_body(("html",)).get_content()
        text = msg.get_body(("plain",)).get_content()
        assert unsubscribe in html and unsubscribe in text
        assert "Spoilers below" in html and seed.spoiler_words in html
    assert set(recipients) == {"ann@example.com", "bob@example.org", "carla@example.net"}
    assert recipients["bob@example.org"]["To"].addresses[0].display_name == "Bob, the Builder"
    assert "Hi Ann Archer," in recipients["ann@example.com"].get_body(("plain",)).get_content()
    tokens = {m["List-Unsubscribe"] for m in recipients.values()}
    assert len(tokens) == 3  # each subscriber has their own link

    again = run_cli(["run", "--once"], tmp_path)
    assert again.returncode == 0 and "nothing to send" in again.stdout
    assert len(sorted((tmp_path / "outbox").rglob("*.eml"))) == 3

    status = run_cli(["status", "1"], tmp_path)
    assert "sent 3" in status.stdout and "status: sent" in status.stdout


def test_a_broken_article_is_skipped_and_the_others_go_out(tmp_path, seed_path):
    run_cli(["init", "."], tmp_path)
    (tmp_path / "newsletter.toml").write_text(
        (tmp_path / "newsletter.toml")
        .read_text()
        .replace("articles_per_issue = 1", "articles_per_issue = 2")
    )
    write(tmp_path / "subs.csv", SUBSCRIBERS)
    run_cli(["subscribers", "import", "subs.csv"], tmp_path)
    # Dropped straight into issues/: picked up without `queue add`.
    write(tmp_path / "issues" / "a_broken.txt", "Broken\nsummary\nRating: ten\nQuick Recap\nx\n")
    shutil.copy(seed_path, tmp_path / "issues" / "b_seed.txt")
    out = run_cli(["run", "--once"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "a_broken.txt:3: rating 'ten' is not a number out of 10" in out.stderr
    assert "sent 3" in out.stdout
    listing = run_cli(["queue", "list"], tmp_path)
    assert "a_broken.txt" in listing.stdout and "error" in listing.stdout


def test_queue_add_list_remove_and_not_before(tmp_path, seed):
    seed_path = seed.path
    run_cli(["init", "."], tmp_path)
    second = write(
        tmp_path / "second.md",
        "---\ntitle: Second Film (1999)\n---\n"
        "## Quick Recap\nIt starts.\n## Final Thoughts\nGood.\n",
    )
    assert (
        run_cli(
            [
                "queue",
                "add",
                str(seed_path),
                "--not-before",
                "2099-12-01 09:00",
                "--tz",
                "America/New_York",
            ],
            tmp_path,
        ).returncode
        == 0
    )
    assert run_cli(["queue", "add", str(second)], tmp_path).returncode == 0
    listing = run_cli(["queue", "list"], tmp_path)
    lines = listing.stdout.splitlines()
    assert seed_path.name in lines[0] and "not before" in lines[0]
    assert "2099-12-01 15:00 CET" in lines[0]  # 09:00 New York, shown in Paris time
    assert "second.md" in lines[2]
    assert "runs dry" in listing.stdout

    settings = load_settings(tmp_path / "newsletter.toml", env={})
    store = Store(settings.database_url)
    picked, _ = publish.pick(store, settings, datetime.now(UTC))
    assert [p.article.title for p in picked] == ["Second Film (1999)"]  # the first must wait
    store.close()

    removed = run_cli(["queue", "remove", "second.md"], tmp_path)
    assert removed.returncode == 0
    assert "second.md" not in run_cli(["queue", "list"], tmp_path).stdout
    missing = run_cli(["queue", "remove", "nope.md"], tmp_path)
    assert missing.returncode == 1 and "no queued article 'nope.md'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_queue_add_refuses_a_broken_article_with_file_and_line(tmp_path):
    run_cli(["init", "."], tmp_path)
    bad = write(tmp_path / "bad.txt", "Title\nsummary\nRating: 12/10\nQuick Recap\nx\n")
    out = run_cli(["queue", "add", str(bad)], tmp_path)
    assert out.returncode == 1
    assert "bad.txt:3: rating 12 is not between 0 and 10" in out.stderr
    assert "Traceback" not in out.stderr


def test_empty_queue_sends_nothing_and_says_so(tmp_path):
    run_cli(["init", "."], tmp_path)
    out = run_cli(["run", "--once"], tmp_path)
    assert out.returncode == 0 and "nothing to send" in out.stdout


def test_preview_writes_html_and_text(tmp_path, seed):
    seed_path = seed.path
    run_cli(["init", "."], tmp_path)
    out = run_cli(["preview", str(seed_path), "--out", "pv"], tmp_path)
    assert out.returncode == 0, out.stderr
    paths = out.stdout.split()
    assert paths == [str(tmp_path / "pv" / "email.html"), str(tmp_path / "pv" / "email.txt")]
    html = Path(paths[0]).read_text()
    assert "Hi Sam Sample," in html and seed.words in html
    assert not re.search(r"nl_[0-9a-f]{16}_", html)  # every placeholder filled


def test_environment_overrides_the_database_url(tmp_path):
    run_cli(["init", "."], tmp_path)
    other = tmp_path / "elsewhere.db"
    write(tmp_path / "s.csv", SUBSCRIBERS)
    run_cli(
        ["subscribers", "import", "s.csv"],
        tmp_path,
        env={"NEWSLETTER_DATABASE_URL": f"sqlite:///{other}"},
    )
    assert other.exists()
    listing = run_cli(["subscribers", "list"], tmp_path)
    assert "ann@example.com" not in listing.stdout  # the default database is untouched


def test_unsubscribed_before_their_batch_do_not_get_it(settings, store, seed_path):
    from newsletter.subscribers import add_subscriber

    for i in range(5):
        add_subscriber(store, f"user{i}@example.com", f"User {i}")
    publish.queue_add(store, settings, seed_path)
    picked, _ = publish.pick(store, settings, datetime.now(UTC))
    issue_id = publish.build_issue(store, settings, picked)
    store.subscribers.suppress("user3@example.com", "unsubscribed")
    from newsletter.delivery import SendContext, send_issue

    report = send_issue(SendContext.of(store, settings, OutboxProvider(settings)), issue_id)
    assert report.counts["sent"] == 4 and report.counts["skipped"] == 1
    assert "user3@example.com" not in store.deliveries.sent_emails(issue_id)


def test_run_refuses_an_issue_whose_check_fails_unless_forced(tmp_path):
    run_cli(["init", "."], tmp_path)
    write(tmp_path / "s.csv", SUBSCRIBERS)
    run_cli(["subscribers", "import", "s.csv"], tmp_path)
    draft = write(
        tmp_path / "draft.md",
        "---\ntitle: Unfinished Film (2021)\n---\n## Quick Recap\n\nThe hero TK arrives.\n"
        "\n## The Ending\n\nLorem ipsum dolor sit amet.\n",
    )
    run_cli(["queue", "add", str(draft)], tmp_path)
    check = run_cli(["check", str(draft)], tmp_path)
    assert check.returncode == 1 and "TK" in check.stdout
    refused = run_cli(["run", "--once"], tmp_path)
    assert refused.returncode == 1
    assert "its check found errors" in refused.stderr and "Traceback" not in refused.stderr
    assert not list((tmp_path / "outbox").rglob("*.eml"))
    forced = run_cli(["run", "--once", "--force"], tmp_path)
    assert forced.returncode == 0 and "sent 3" in forced.stdout
