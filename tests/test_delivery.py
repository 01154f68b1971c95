"""The send loop when something goes wrong (issue 25, points 1-3 and security 9): an
unexpected error pauses the issue with nothing lost, an unreachable provider leaves the rows
pending, SIGINT stops a real `run` between batches, a refused key stops a sandbox validation.
Real outbox files, the local SendGrid server, real subprocesses and signals."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from newsletter import publish
from newsletter.delivery import SendContext, SendingLease, resume_issue, send_issue
from newsletter.providers import Accepted, Message, OutgoingBatch
from newsletter.providers.outbox import OutboxProvider
from newsletter.settings import load_settings
from newsletter.store import Store
from newsletter.testing.sendgrid_server import SendGridServer
from tests.conftest import delivery_policy, run_cli
from tests.faults import KEY, make_folder, open_store, start, wait_until


class FailingOnNth:
    """The real outbox, except that its `nth` send raises an error no provider outcome names
    (as an invalid `from_email` once did inside the email library) until `fixed`."""

    def __init__(self, outbox: OutboxProvider, nth: int, *, after_writing: bool = False) -> None:
        self.outbox = outbox
        self.name, self.max_batch = outbox.name, outbox.max_batch
        self.nth = nth
        self.after_writing = after_writing  # raise once the files are written, not before
        self.sends = 0
        self.fixed = False

    def send(self, batch: OutgoingBatch) -> Accepted:
        self.sends += 1
        if self.fixed or self.sends < self.nth:
            return self.outbox.send(batch)
        if self.after_writing:
            self.outbox.send(batch)
        raise ValueError("injected: the provider broke on this batch")

    def send_message(self, message: Message) -> str:
        return self.outbox.send_message(message)

    def settle_uncertain(self, issue_id: int, subscriber_ids: Iterable[int]) -> dict[int, bool]:
        return self.outbox.settle_uncertain(issue_id, subscriber_ids)


class Forgetful:
    """The real outbox, whose answer leaves out the id of one subscriber it wrote (a
    provider answering per recipient that lost track of one)."""

    def __init__(self, outbox: OutboxProvider, forget: int) -> None:
        self.outbox, self.forget = outbox, forget
        self.name, self.max_batch = outbox.name, outbox.max_batch

    def send(self, batch: OutgoingBatch) -> Accepted:
        accepted = self.outbox.send(batch)
        assert isinstance(accepted.message_ids, dict)
        ids = {sid: mid for sid, mid in accepted.message_ids.items() if sid != self.forget}
        return Accepted(ids, rejected=accepted.rejected)

    def send_message(self, message: Message) -> str:
        return self.outbox.send_message(message)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once closed


def eml_files(folder) -> list[str]:
    try:
        return [n for n in os.listdir(folder) if n.endswith(".eml")]
    except FileNotFoundError:
        return []


def one_issue(folder) -> tuple[Store, object, int]:
    settings = load_settings(folder / "newsletter.toml", env={"NEWSLETTER_PROVIDER": "outbox"})
    store = Store(settings.database_url)
    publish.sync_queue(store, settings)
    picked, _ = publish.pick(store, settings, datetime.now(UTC))
    return store, settings, publish.build_issue(store, settings, picked)


# -- 1: an unexpected error never ends in `sent` ----------------------------------------------
@pytest.mark.parametrize(
    ("concurrency", "after_writing"), [(1, False), (4, False), (1, True), (4, True)]
)
def test_an_unexpected_error_pauses_the_issue_and_resume_sends_each_reader_once(
    tmp_path, concurrency, after_writing
):
    """Raised while building (nothing written: the batch goes back to pending) or once the
    request was written (the outbox settles it: those readers count as sent)."""
    readers = 300
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=readers)
    store, settings, issue_id = one_issue(tmp_path)
    provider = FailingOnNth(OutboxProvider(settings), nth=5, after_writing=after_writing)
    policy = delivery_policy(batch_size=20, concurrency=concurrency, max_failed_batches=3)
    ctx = SendContext.of(store, settings, provider, policy=policy)

    report = send_issue(ctx, issue_id)
    counts = store.deliveries.counts(issue_id)
    assert report.status == "paused" and store.issues.issue_status(issue_id) == "paused"
    assert counts["pending"] > 0 and counts["in_flight"] == 0 and counts["uncertain"] == 0
    assert counts["sent"] + counts["pending"] == readers
    if concurrency == 1:  # the fifth batch broke: written and settled, or never written
        assert counts["sent"] == (5 if after_writing else 4) * 20
    stored = store.issues.get_issue(issue_id).last_error or ""
    assert "unexpected error while sending (ValueError: injected" in stored
    assert f"{counts['pending']} readers still to send" in stored
    assert f"`newsletter resume {issue_id}`" in stored and report.last_error == stored
    # Nothing more goes out while it is paused ...
    assert send_issue(ctx, issue_id).counts["sent"] == counts["sent"]
    # ... until the cause is fixed and the editor resumes it.
    provider.fixed = True
    resumed = resume_issue(ctx, issue_id, lease=SendingLease.of(store, settings))
    assert resumed is not None and resumed.status == "sent"
    assert resumed.delivered == counts["pending"]
    assert store.deliveries.counts(issue_id)["sent"] == readers
    files = sorted(eml_files(tmp_path / "outbox" / f"issue-{issue_id}"))
    assert files == [f"{sid:08d}.eml" for sid in range(1, readers + 1)]  # each exactly once
    store.close()


def test_a_reader_the_answer_does_not_name_is_uncertain_not_left_in_flight(tmp_path):
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=30)
    store, settings, issue_id = one_issue(tmp_path)
    provider = Forgetful(OutboxProvider(settings), forget=17)
    ctx = SendContext.of(store, settings, provider, policy=delivery_policy(batch_size=10))
    report = send_issue(ctx, issue_id)
    counts = store.deliveries.counts(issue_id)
    assert (counts["sent"], counts["uncertain"], counts["in_flight"]) == (29, 1, 0)
    [row] = store.deliveries.in_state(issue_id, "uncertain")
    assert row.subscriber_id == 17 and "did not name this reader" in (row.error or "")
    assert report.status == "sent" and report.delivered == 29 and not report.ok
    store.close()


def test_sent_only_when_no_row_is_pending_or_in_flight(tmp_path):
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=3)
    store, _settings, issue_id = one_issue(tmp_path)
    batch = store.deliveries.claim(issue_id, 2, worker="w")
    assert batch is not None
    assert not store.issues.finish_sending(issue_id)  # one pending, two in flight
    store.deliveries.mark_sent(batch, "id")
    assert not store.issues.finish_sending(issue_id)  # one still pending
    last = store.deliveries.claim(issue_id, 2, worker="w")
    assert last is not None
    store.deliveries.mark_sent(last, "id")
    assert store.issues.finish_sending(issue_id)
    assert store.issues.issue_status(issue_id) == "sent"
    store.close()


# -- 3: an unreachable provider is no refusal -------------------------------------------------
def test_an_unreachable_provider_leaves_the_rows_pending_and_resume_delivers_them(tmp_path):
    readers = 25
    host = f"http://127.0.0.1:{closed_port()}"
    env = make_folder(tmp_path, host, subscribers=readers, batch_size=10)
    result = run_cli(["run"], tmp_path, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    expected = (
        f"cannot reach the provider at {host}: connection refused; {readers} readers still "
        "to send; `newsletter resume 1` when it is back"
    )
    assert expected in result.stdout
    assert "paused" in result.stdout and "failed 0" in result.stdout
    store = open_store(tmp_path)
    counts = store.deliveries.counts(1)
    assert counts["pending"] == readers and counts["failed"] == 0 and counts["in_flight"] == 0
    status = run_cli(["status", "1"], tmp_path, env=env).stdout
    assert "status: paused" in status and "refused them for good" not in status
    with SendGridServer(api_key=KEY) as server:
        env["SENDGRID_API_HOST"] = server.url
        resumed = run_cli(["resume", "1"], tmp_path, env=env)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert f"sent {readers}" in resumed.stdout
        delivered = [m.to for m in server.messages]
    assert len(delivered) == readers == len(set(delivered))
    assert store.deliveries.counts(1)["sent"] == readers
    assert store.issues.issue_status(1) == "sent"
    store.close()


# -- 2: SIGINT stops a run between batches ------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_run_between_batches_and_resume_sends_the_rest(tmp_path, signum):
    readers = 20_000
    env = make_folder(tmp_path, "http://127.0.0.1:9", subscribers=readers, batch_size=200)
    env["NEWSLETTER_PROVIDER"] = "outbox"
    folder = tmp_path / "outbox" / "issue-1"
    proc = start(["run"], tmp_path, env)
    assert wait_until(lambda: len(eml_files(folder)) > 0, timeout=120, interval=0.001)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "Aborted" not in out + err
    written = len(eml_files(folder))
    assert 0 < written < readers
    store = open_store(tmp_path)
    counts = store.deliveries.counts(1)
    assert counts["in_flight"] == 0 and counts["uncertain"] == 0
    assert counts["sent"] == written and counts["pending"] == readers - written
    assert (
        f"stopped by {signum.name}: issue 1: {written} sent now, {readers - written} left; "
        "`newsletter resume 1` (or `newsletter run`) sends the rest" in out
    )
    assert store.issues.issue_status(1) == "sending"  # left resumable
    resumed = run_cli(["resume", "1"], tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    files = sorted(eml_files(folder))
    assert files == [f"{sid:08d}.eml" for sid in range(1, readers + 1)]  # each exactly once
    assert store.deliveries.counts(1)["sent"] == readers
    assert store.issues.issue_status(1) == "sent"
    store.close()


# -- security 9: a refused key stops a sandbox validation at once ------------------------------
def test_sandbox_validation_stops_at_the_first_refused_key(tmp_path):
    with SendGridServer(api_key=KEY) as server:
        env = make_folder(tmp_path, server.url, subscribers=2500)
        store, _settings, issue_id = one_issue(tmp_path)
        store.close()
        env["SENDGRID_API_KEY"] = "SG.wrong-key"
        result = run_cli(["send-test", str(issue_id), "--sandbox"], tmp_path, env=env)
        assert result.returncode == 1
        assert "refused the API key (401)" in result.stdout
        assert "stopped at the first refusal" in result.stdout
        assert "sandbox: 1 requests" in result.stdout
        assert len(server.request_log) == 1 and server.request_log[0].status == 401
        assert "SG.wrong-key" not in result.stdout + result.stderr
