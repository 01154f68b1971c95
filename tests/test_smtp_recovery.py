"""Pause, resume, cancel and crash recovery over SMTP (issue 20), as for SendGrid: the real
`newsletter run` in a subprocess sending to the real aiosmtpd server (a child process,
answering each DATA a little late so the send takes a while), paused or cancelled by the
real CLI, or killed with SIGKILL mid-send; what reached the server is counted from its
Maildir, by envelope recipient."""

from __future__ import annotations

import mailbox
import os
import re
from email.parser import BytesHeaderParser

import pytest

from newsletter.testing.smtp_server import SMTPServerProcess
from tests.conftest import run_cli
from tests.faults import kill9, make_folder, open_store, start, wait_until

READERS = 300
EVERYONE = {f"reader{i:04d}@example.com" for i in range(READERS)}


def smtp_folder(tmp_path, port: int) -> dict:
    env = make_folder(tmp_path, "http://127.0.0.1:9", subscribers=READERS, batch_size=10)
    path = tmp_path / "newsletter.toml"
    text = path.read_text()
    for key, value in [
        ("host", '"127.0.0.1"'),
        ("port", str(port)),
        ("security", '"none"'),
        ("connections", "2"),
        ("bounce_address", '"bounces@example.com"'),
    ]:
        text, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
        assert count == 1, key
    path.write_text(text)
    return {**env, "NEWSLETTER_PROVIDER": "smtp"}


def arrived(maildir) -> int:
    try:
        return len(os.listdir(maildir / "new"))
    except FileNotFoundError:
        return 0


def delivered(maildir) -> list[str]:
    """Each message's envelope recipient, as the server took it."""
    parser = BytesHeaderParser()
    box = mailbox.Maildir(maildir, create=False)
    return [parser.parsebytes(bytes(m))["X-Envelope-To"] for m in box]


def states(store, issue_id: int, state: str) -> set[str]:
    return {r.email for r in store.deliveries.in_state(issue_id, state)}


@pytest.fixture
def server(tmp_path):
    faults = {"data_delay_seconds": 0.01}
    with SMTPServerProcess(
        maildir=tmp_path / "md", faults=faults, faults_path=tmp_path / "faults.json"
    ) as srv:
        yield srv


def test_sigkill_mid_send_leaves_only_the_batches_in_flight_uncertain(tmp_path, server):
    env = smtp_folder(tmp_path, server.port)
    proc = start(["run", "--once"], tmp_path, env)
    assert wait_until(lambda: arrived(tmp_path / "md") >= 40, timeout=120, interval=0.01)
    kill9(proc)
    store = open_store(tmp_path)
    try:
        [issue] = store.issues.list_issues()
        assert issue.status == "sending"
        caught = states(store, issue.id, "in_flight")
        assert 0 < len(caught) <= 10 * 4  # at most `concurrency` batches of 10
        again = run_cli(["run", "--once"], tmp_path, env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "resumed an interrupted issue" in again.stdout
        assert f"{len(caught)} uncertain" in again.stdout
        got = delivered(tmp_path / "md")
        assert len(got) == len(set(got)), "somebody got the issue twice"
        sent, uncertain = states(store, issue.id, "sent"), states(store, issue.id, "uncertain")
        assert uncertain == caught  # only those in flight at the kill, by name
        assert sent | uncertain == EVERYONE and not sent & uncertain
        assert sent <= set(got)  # recorded as sent => the server has it
        assert set(got) - sent <= uncertain  # anything else it has was in flight
        status = run_cli(["status", str(issue.id)], tmp_path, env=env)
        assert all(email in status.stdout for email in caught)
    finally:
        store.close()


@pytest.mark.parametrize("then", ["resume", "cancel"])
def test_pause_mid_send_then_resume_or_cancel(tmp_path, server, then):
    env = smtp_folder(tmp_path, server.port)
    proc = start(["run", "--once"], tmp_path, env)
    assert wait_until(lambda: arrived(tmp_path / "md") >= 40, timeout=120, interval=0.01)
    paused = run_cli(["pause", "1"], tmp_path, env=env)
    assert paused.returncode == 0, paused.stdout + paused.stderr
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    store = open_store(tmp_path)
    try:
        counts = store.deliveries.counts(1)
        assert store.issues.issue_status(1) == "paused"
        # The batches under way finished; nothing is in flight or uncertain.
        assert counts["in_flight"] == 0 and counts["uncertain"] == 0, counts
        sent_then = states(store, 1, "sent")
        assert 0 < len(sent_then) < READERS
        assert sorted(delivered(tmp_path / "md")) == sorted(sent_then)
        follow = run_cli([then, "1"], tmp_path, env=env)
        assert follow.returncode == 0, follow.stdout + follow.stderr
        if then == "cancel":
            assert run_cli(["run", "--once"], tmp_path, env=env).returncode == 0
            assert store.issues.issue_status(1) == "cancelled"
            assert sorted(delivered(tmp_path / "md")) == sorted(sent_then)  # nothing more
        else:
            assert store.issues.issue_status(1) == "sent"
            got = delivered(tmp_path / "md")
            assert sorted(got) == sorted(EVERYONE)  # the rest, each exactly once
            assert states(store, 1, "sent") == EVERYONE
    finally:
        store.close()
