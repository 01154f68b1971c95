"""What a newcomer meets in the first ten minutes, through the real `newsletter` command: the
queue keeps moving past a refused article, no phantom missed issue, one ordered listing,
`run` and `status` without extra arguments, honest issue states, and a light `--help`."""

from __future__ import annotations

import email
import email.policy
import json
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from newsletter import publish
from newsletter.records import DeliveryState
from tests.conftest import REPO, run_cli, write
from tests.faults import open_store, start, wait_until

SUBSCRIBERS = "email,name\nann@example.com,Ann\nbob@example.org,Bob\ncarla@example.net,Carla\n"
DRAFT = (
    "---\ntitle: Unfinished Film (2021)\n---\n## Quick Recap\n\nThe hero TK arrives.\n"
    "\n## The Ending\n\nIt ends.\n"
)


def set_config(folder: Path, *pairs: tuple[str, str]) -> None:
    config = folder / "newsletter.toml"
    text = config.read_text()
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    config.write_text(text)


def emails(folder: Path, sub: str) -> list[Path]:
    return (
        sorted((folder / "outbox" / sub).glob("*.eml"))
        if (folder / "outbox" / sub).is_dir()
        else []
    )


def test_a_refused_article_is_held_the_next_goes_out_and_the_editor_is_told_once(
    tmp_path, seed, seed_path
):
    run_cli(["init", "."], tmp_path)
    set_config(tmp_path, ('email = ""', 'email = "chief@example.com"'))
    write(tmp_path / "s.csv", SUBSCRIBERS)
    run_cli(["subscribers", "import", "s.csv"], tmp_path)
    draft = write(tmp_path / "draft.md", DRAFT)
    assert run_cli(["queue", "add", str(draft)], tmp_path).returncode == 0
    assert run_cli(["queue", "add", str(seed_path)], tmp_path).returncode == 0

    out = run_cli(["run"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert seed.title in out.stdout and "sent 3" in out.stdout  # the next article went out
    assert "held draft.md" in out.stderr and "TK" in out.stderr
    assert len(emails(tmp_path, "issue-1")) == 3
    told = emails(tmp_path, "editor")
    assert len(told) == 1
    note = email.message_from_bytes(told[0].read_bytes(), policy=email.policy.default)
    assert note["To"].addresses[0].addr_spec == "chief@example.com"
    body = note.get_body(("plain",)).get_content()
    assert "draft.md" in body and "TK" in body and "newsletter queue release draft.md" in body

    listing = run_cli(["queue", "list"], tmp_path)
    assert "draft.md  [held]" in listing.stdout and "TK" in listing.stdout
    assert "newsletter queue release draft.md" in listing.stdout
    status = run_cli(["status"], tmp_path)
    assert "held draft.md" in status.stdout and "TK" in status.stdout

    # Held means held: the next run does not try it again, nor tell the editor twice.
    again = run_cli(["run"], tmp_path)
    assert "nothing to send" in again.stdout
    assert len(emails(tmp_path, "editor")) == 1 and not emails(tmp_path, "issue-2")

    # The editor fixes it and releases it: the next run checks it again and sends it.
    (tmp_path / "issues" / "draft.md").write_text(DRAFT.replace(" TK", ""))
    released = run_cli(["queue", "release", "draft.md"], tmp_path)
    assert released.returncode == 0, released.stderr
    sent = run_cli(["run"], tmp_path)
    assert "Unfinished Film" in sent.stdout and "sent 3" in sent.stdout
    assert "held" not in run_cli(["queue", "list"], tmp_path).stdout
    missing = run_cli(["queue", "release", "draft.md"], tmp_path)
    assert missing.returncode == 1 and "no held article 'draft.md'" in missing.stderr


def test_a_scheduler_tick_holds_the_refused_article_and_sends_the_next(tmp_path, seed_path):
    """The scheduler's path: the tick that finds a refused article first still goes out."""
    run_cli(["init", "."], tmp_path)
    tick = datetime.now(ZoneInfo("Europe/Paris")) - timedelta(minutes=5)
    set_config(
        tmp_path,
        ('days = ["tue", "fri"]', f'days = ["{tick.strftime("%a").lower()}"]'),
        ('time = "09:00"', f'time = "{tick:%H:%M}"'),
        ("heartbeat_seconds = 10", "heartbeat_seconds = 0.5"),
    )
    write(tmp_path / "s.csv", SUBSCRIBERS)
    run_cli(["subscribers", "import", "s.csv"], tmp_path)
    run_cli(["queue", "add", str(write(tmp_path / "draft.md", DRAFT))], tmp_path)
    run_cli(["queue", "add", str(seed_path)], tmp_path)
    proc = start(["scheduler"], tmp_path, {})
    wait_until(lambda: len(emails(tmp_path, "issue-1")) == 3, timeout=300, interval=0.2)
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    assert len(emails(tmp_path, "issue-1")) == 3, out + err
    assert "held draft.md" in out
    assert "draft.md  [held]" in run_cli(["queue", "list"], tmp_path).stdout


def test_a_brand_new_newsletter_reports_no_missed_issue(tmp_path):
    """./scripts/demo, then the scheduler: the tick before it ever ran was not missed."""
    assert run_cli(["init", ".", "--sample"], tmp_path).returncode == 0
    tick = datetime.now(ZoneInfo("Europe/Paris")) - timedelta(hours=3)
    set_config(
        tmp_path,
        ('days = ["tue", "fri"]', f'days = ["{tick.strftime("%a").lower()}"]'),
        ('time = "09:00"', f'time = "{tick:%H:%M}"'),
        ("grace_hours = 6", "grace_hours = 1"),
        ("heartbeat_seconds = 10", "heartbeat_seconds = 0.5"),
    )
    assert run_cli(["queue", "list"], tmp_path).returncode == 0
    assert run_cli(["run", "--once"], tmp_path).returncode == 0
    sent = len(emails(tmp_path, "issue-1"))
    proc = start(["-v", "scheduler"], tmp_path, {})
    store = open_store(tmp_path)
    assert wait_until(lambda: store.meta.get(publish.SCHEDULER_STARTED), timeout=60)
    store.close()
    time.sleep(1.5)  # a few more heartbeats
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "holding the sending lease" in out
    assert "missed" not in out + err and "held" not in out + err
    listing = run_cli(["queue", "list"], tmp_path)
    assert "missed" not in listing.stdout + listing.stderr
    assert "held" not in listing.stdout + listing.stderr
    assert len(emails(tmp_path, "issue-1")) == sent and not emails(tmp_path, "issue-2")


def test_queue_list_prints_the_listing_and_its_notes_in_order_on_one_stream(tmp_path, seed_path):
    run_cli(["init", "."], tmp_path)
    run_cli(["queue", "add", str(seed_path)], tmp_path)
    both = subprocess.run(
        [sys.executable, "-m", "newsletter.cli", "queue", "list"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    lines = both.stdout.splitlines()
    assert seed_path.name in lines[0] and lines[1].strip().startswith("expected:")
    assert lines[2].startswith("next issue: full layout"), lines
    # One article, a cadence of more ticks: the queue runs dry, said once for all of them.
    assert len(lines) == 4, lines
    assert lines[3].startswith("warning: nothing to send at") and "ticks after it" in lines[3]
    apart = run_cli(["queue", "list"], tmp_path)
    assert apart.stderr == "" and "runs dry" in apart.stdout


def test_run_without_once_does_what_a_due_tick_does(tmp_path, seed_path):
    run_cli(["init", "."], tmp_path)
    write(tmp_path / "s.csv", SUBSCRIBERS)
    run_cli(["subscribers", "import", "s.csv"], tmp_path)
    run_cli(["queue", "add", str(seed_path)], tmp_path)
    out = run_cli(["run"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "sent 3" in out.stdout
    again = run_cli(["run", "--once"], tmp_path)  # still accepted
    assert again.returncode == 0 and "nothing to send" in again.stdout


def test_status_without_a_number_shows_the_latest_issue(tmp_path, seed, seed_path):
    run_cli(["init", "."], tmp_path)
    empty = run_cli(["status"], tmp_path)
    assert empty.returncode == 0 and "no issue yet" in empty.stdout
    write(tmp_path / "s.csv", SUBSCRIBERS)
    run_cli(["subscribers", "import", "s.csv"], tmp_path)
    second = write(
        tmp_path / "second.md",
        "---\ntitle: Second Film (1999)\n---\n## Quick Recap\n\nIt starts.\n"
        "\n## The Ending\n\nIt ends.\n",
    )
    run_cli(["queue", "add", str(seed_path)], tmp_path)
    run_cli(["queue", "add", str(second)], tmp_path)
    assert run_cli(["run"], tmp_path).returncode == 0
    assert run_cli(["run"], tmp_path).returncode == 0
    out = run_cli(["status"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "issue 2: Second Film" in out.stdout
    assert "newsletter status N" in out.stdout and "newsletter issues" in out.stdout
    assert f"issue 1: {seed.title}" in run_cli(["status", "1"], tmp_path).stdout


def test_status_of_an_issue_with_uncertain_and_failed_recipients_is_not_just_sent(
    tmp_path, seed_path
):
    run_cli(["init", "."], tmp_path)
    write(tmp_path / "s.csv", SUBSCRIBERS)
    run_cli(["subscribers", "import", "s.csv"], tmp_path)
    run_cli(["queue", "add", str(seed_path)], tmp_path)
    assert "sent 3" in run_cli(["run"], tmp_path).stdout
    # As after a crash mid-send: two rows the log cannot vouch for, one refused for good.
    store = open_store(tmp_path)
    ids = [r.subscriber_id for r in store.deliveries.in_state(1, DeliveryState.SENT)]
    store.deliveries.settle(1, DeliveryState.SENT, DeliveryState.UNCERTAIN, ids[:2])
    store.deliveries.settle(1, DeliveryState.SENT, DeliveryState.FAILED, ids[2:])
    store.close()
    out = run_cli(["status", "1"], tmp_path)
    assert not re.search(r"^status: sent\b", out.stdout, re.M), out.stdout
    assert "status: finished sending; 2 uncertain left to settle, 1 failed" in out.stdout
    assert "'newsletter resolve 1 --resend'" in out.stdout
    assert "'newsletter resolve 1 --mark-sent'" in out.stdout
    assert "failed (1):" in out.stdout
    assert run_cli(["resolve", "1", "--mark-sent"], tmp_path).returncode == 0
    settled = run_cli(["status", "1"], tmp_path)
    assert "left to settle" not in settled.stdout and "1 failed" in settled.stdout


HEAVY = ("sqlalchemy", "premailer", "sendgrid", "starlette", "selenium", "pydantic")


def loaded_by(args: list[str], cwd: Path) -> set[str]:
    """The top-level modules a `newsletter` command has imported when it ends."""
    probe = (
        "import json, sys\n"
        "from newsletter.cli import main\n"
        "sys.argv = ['newsletter', *json.loads(sys.argv[1])]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    modules = json.loads(out.stderr.strip().splitlines()[-1])
    return {m.split(".")[0] for m in modules}


def test_help_imports_nothing_heavy(tmp_path):
    """`newsletter --help` (and a group's help) load click and the command table only."""
    for args in (["--help"], ["queue", "--help"], ["run", "--help"]):
        assert not loaded_by(args, tmp_path) & set(HEAVY), args


def test_each_command_imports_what_it_uses(tmp_path):
    run_cli(["init", "."], tmp_path)
    for args in (["subscribers", "list"], ["queue", "list"], ["status"]):
        loaded = loaded_by(args, tmp_path)
        assert "sqlalchemy" in loaded  # they read the database...
        assert not loaded & {"premailer", "sendgrid", "starlette", "selenium"}, args  # ...only


def test_the_startup_benchmark_prints_both_figures():
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "startup.py"), "--runs", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "import click" in out.stdout and "newsletter --help" in out.stdout
    assert re.search(r"ratio: \d+\.\d+", out.stdout)


def test_a_wrong_editor_email_names_the_setting(tmp_path):
    run_cli(["init", "."], tmp_path)
    set_config(tmp_path, ('email = ""', 'email = "the chief"'))
    out = run_cli(["queue", "list"], tmp_path)
    assert out.returncode == 1 and "editor" in out.stderr and "email" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_lease_holder_message_shows_the_newsletters_time_zone(tmp_path, seed_path):
    from datetime import timedelta

    from newsletter.delivery import SENDER_LEASE

    assert run_cli(["init", str(tmp_path)], tmp_path).returncode == 0
    toml = tmp_path / "newsletter.toml"
    toml.write_text(
        toml.read_text().replace('timezone = "Europe/Paris"', 'timezone = "Asia/Tokyo"', 1)
    )
    assert 'timezone = "Asia/Tokyo"' in toml.read_text()
    assert run_cli(["queue", "add", str(seed_path)], tmp_path).returncode == 0
    (tmp_path / "readers.csv").write_text("email\nann@example.com\n")
    assert run_cli(["subscribers", "import", "readers.csv"], tmp_path).returncode == 0
    store = open_store(tmp_path)
    try:  # a live sender on another machine holds the lease
        assert store.meta.acquire(SENDER_LEASE, "elsewhere:4242:abcd", timedelta(minutes=10))
    finally:
        store.close()
    done = run_cli(["run"], tmp_path)
    assert done.returncode == 1
    assert "another sender is active: elsewhere:4242:abcd (lease until" in done.stderr
    assert " JST)" in done.stderr and "UTC" not in done.stderr
