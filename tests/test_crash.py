"""Every subscriber exactly once, whatever fails: real subprocesses killed with SIGKILL,
two schedulers on one database, downtime over a send time, a database that stops writing."""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from datetime import timedelta

import pytest

from newsletter import publish
from newsletter.records import utcnow
from newsletter.store import Store
from newsletter.testing.sendgrid_server import SendGridServer
from tests.conftest import run_cli
from tests.faults import KEY, check_exactly_once, kill9, make_folder, open_store, start, wait_until


@pytest.fixture
def server():
    with SendGridServer(api_key=KEY) as srv:
        yield srv


def in_flight(store: Store, issue_id: int) -> set[str]:
    return {r.email for r in store.deliveries.in_state(issue_id, "in_flight")}


def backend(database_url: str) -> str | None:
    """The fixture's URL for PostgreSQL; None keeps the folder's own SQLite file."""
    return None if database_url.startswith("sqlite") else database_url


@pytest.mark.parametrize("trial", range(2))
def test_sigkill_mid_send_then_resume(tmp_path, server, trial, database_url):
    subscribers = 400
    env = make_folder(
        tmp_path,
        server.url,
        subscribers=subscribers,
        batch_size=10,
        database_url=backend(database_url),
    )
    server.faults.slow = 10**6
    server.faults.slow_seconds = 0.15
    proc = start(["run", "--once"], tmp_path, env)
    store = open_store(tmp_path)
    # Wait for the send to be under way, then kill at a random point.
    assert wait_until(lambda: server.stats().requests_accepted >= 1 + 4 * trial, timeout=60)
    time.sleep(random.uniform(0.0, 0.4))
    kill9(proc)
    [issue] = store.issues.list_issues()
    assert issue.status == "sending", (issue, store.deliveries.counts(issue.id))
    issue_id = issue.id
    caught = in_flight(store, issue_id)
    assert len(caught) <= 10 * 4  # at most `concurrency` batches of 10 in flight
    server.faults.slow = 0
    again = run_cli(["run", "--once"], tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert "resumed an interrupted issue" in again.stdout
    if caught:
        assert f"{len(caught)} uncertain" in again.stdout
    time.sleep(0.3)  # let the server finish the request the killed sender left behind
    check_exactly_once(server, store, issue_id, subscribers, caught)
    # The editor settles them: resend only those, once.
    if caught:
        status = run_cli(["status", str(issue_id)], tmp_path, env=env)
        assert all(email in status.stdout for email in caught)
        before = len(server.messages)
        undelivered = caught - {m.to for m in server.messages}
        resolved = run_cli(["resolve", str(issue_id), "--resend"], tmp_path, env=env)
        assert resolved.returncode == 0
        assert run_cli(["run", "--once"], tmp_path, env=env).returncode == 0
        assert len(server.messages) == before + len(caught)
        assert undelivered <= {m.to for m in server.messages}
    store.close()


def test_sigkill_during_the_first_request_leaves_only_its_batch_uncertain(
    tmp_path, server, database_url
):
    """The other threads claim nothing while the first request waits for its answer (the
    probe for a refused key): killed then, only the batch whose request left is uncertain,
    not the batches that never left (they were, when threads claimed before waiting)."""
    env = make_folder(
        tmp_path, server.url, subscribers=200, batch_size=10, database_url=backend(database_url)
    )
    server.faults.slow = 1
    server.faults.slow_seconds = 3.0  # the first request's answer is slow
    proc = start(["run", "--once"], tmp_path, env)
    store = open_store(tmp_path)
    assert wait_until(lambda: store.issues.list_issues(), timeout=60)
    issue_id = store.issues.list_issues()[0].id
    assert wait_until(lambda: in_flight(store, issue_id), timeout=60)
    time.sleep(1.0)  # the request is out, waiting for its answer; four threads are running
    kill9(proc)
    caught = in_flight(store, issue_id)
    assert 0 < len(caught) <= 10  # the first batch only
    again = run_cli(["run", "--once"], tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert f"{len(caught)} uncertain" in again.stdout
    time.sleep(3.0)  # the killed sender's request is answered (and delivered) meanwhile
    check_exactly_once(server, store, issue_id, 200, caught)
    store.close()


def test_resend_uncertain_setting_prefers_a_duplicate_to_a_gap(tmp_path, server):
    env = make_folder(tmp_path, server.url, subscribers=200, batch_size=10)
    config = tmp_path / "newsletter.toml"
    config.write_text(
        config.read_text().replace("resend_uncertain = false", "resend_uncertain = true")
    )
    server.faults.slow = 10**6
    server.faults.slow_seconds = 0.15
    proc = start(["run", "--once"], tmp_path, env)
    assert wait_until(lambda: server.stats().requests_accepted >= 2, timeout=60)
    kill9(proc)
    store = open_store(tmp_path)
    issue_id = store.issues.unfinished_issues()[0]
    server.faults.slow = 0
    assert run_cli(["run", "--once"], tmp_path, env=env).returncode == 0
    counts = store.deliveries.counts(issue_id)
    assert counts["sent"] == 200 and counts["uncertain"] == 0
    assert {m.to for m in server.messages} == {f"reader{i:04d}@example.com" for i in range(200)}
    store.close()


def test_two_schedulers_on_one_database_send_once(tmp_path, server, database_url):
    env = make_folder(
        tmp_path,
        server.url,
        subscribers=200,
        batch_size=20,
        tick_ago=timedelta(minutes=5),
        database_url=backend(database_url),
    )
    server.faults.slow = 10**6
    server.faults.slow_seconds = 0.05
    first = start(["scheduler"], tmp_path, env)
    second = start(["scheduler"], tmp_path, env)
    store = open_store(tmp_path)
    try:
        assert wait_until(lambda: len(server.messages) >= 200, timeout=90)
        time.sleep(1.5)  # give the standby every chance to (wrongly) send again
    finally:
        for proc in (first, second):
            proc.terminate()
        outputs = [p.communicate(timeout=30) for p in (first, second)]
    delivered = [m.to for m in server.messages]
    assert len(delivered) == 200 and len(set(delivered)) == 200
    holders = [out for out, _ in outputs if "holding the sending lease" in out]
    assert len(holders) == 1, outputs
    assert all(p.returncode == 0 for p in (first, second)), outputs
    assert "scheduler stopped" in outputs[0][0] and "scheduler stopped" in outputs[1][0]
    store.close()


def test_standby_scheduler_takes_over_when_the_holder_is_killed(tmp_path, server, database_url):
    env = make_folder(
        tmp_path,
        server.url,
        subscribers=600,
        batch_size=10,
        tick_ago=timedelta(minutes=5),
        database_url=backend(database_url),
    )
    server.faults.slow = 10**6
    server.faults.slow_seconds = 0.1
    procs = [start(["scheduler"], tmp_path, env) for _ in range(2)]
    store = open_store(tmp_path)
    assert wait_until(lambda: server.stats().requests_accepted >= 3, timeout=60)
    holder_pid = int(store.meta.holder("sender")[0].split(":")[1])
    holder = next(p for p in procs if p.pid == holder_pid)
    standby = next(p for p in procs if p.pid != holder_pid)
    kill9(holder)
    issue_id = store.issues.list_issues()[0].id
    caught = in_flight(store, issue_id)
    try:
        finished = wait_until(
            lambda: (
                store.deliveries.counts(issue_id)["pending"] == 0
                and store.deliveries.counts(issue_id)["in_flight"] == 0
            ),
            timeout=90,
        )
    finally:
        standby.terminate()
        out, err = standby.communicate(timeout=30)
    assert finished, (store.deliveries.counts(issue_id), out, err[-3000:])
    assert "holding the sending lease" in out  # the standby took over
    time.sleep(0.3)
    check_exactly_once(server, store, issue_id, 600, caught)
    store.close()


def test_restart_after_downtime_sends_once_and_beyond_grace_holds(tmp_path, server):
    env = make_folder(tmp_path, server.url, subscribers=30, tick_ago=timedelta(minutes=20))
    # The scheduler was down over the send time (20 minutes ago, grace 6 hours): it goes out.
    out = run_scheduler_for(tmp_path, env, seconds=1, until=lambda: len(server.messages) == 30)
    assert "issue 1" in out and len(server.messages) == 30
    # Restarted again: that tick was served, nothing goes out twice.
    out = run_scheduler_for(tmp_path, env, seconds=3)
    assert len(server.messages) == 30 and "issue 2" not in out
    # The cadence job lives in the database under one fixed id: restarts never pile up copies.
    import sqlite3

    with sqlite3.connect(tmp_path / "newsletter.db") as db:
        jobs = db.execute("SELECT id, next_run_time FROM apscheduler_jobs").fetchall()
    assert [job_id for job_id, _ in jobs] == ["newsletter-publication-tick"]
    assert jobs[0][1] > time.time()  # the next cadence tick, kept across restarts


def test_a_tick_missed_beyond_grace_waits_for_the_editor(tmp_path, server):
    env = make_folder(
        tmp_path, server.url, subscribers=10, tick_ago=timedelta(hours=3), grace_hours=1
    )
    # A scheduler first served this newsletter a day ago, then went down over the tick.
    store = open_store(tmp_path)
    store.meta.set(publish.SCHEDULER_STARTED, (utcnow() - timedelta(days=1)).isoformat())
    store.close()
    out = run_scheduler_for(tmp_path, env, seconds=3)
    assert server.messages == []
    assert "missed" in out
    listing = run_cli(["queue", "list"], tmp_path, env=env)
    assert "was missed while the scheduler was down" in listing.stdout
    sent = run_cli(["run", "--once"], tmp_path, env=env)
    assert "sent 10" in sent.stdout and len(server.messages) == 10
    listing = run_cli(["queue", "list"], tmp_path, env=env)
    assert "was missed" not in listing.stdout + listing.stderr


def run_scheduler_for(folder, env, seconds: float, until=None) -> str:
    """Start the scheduler, wait until it holds the sending lease (and `until` holds) however
    slow the machine is, let it run `seconds` more, then stop it."""
    proc = start(["-v", "scheduler"], folder, env)
    store = open_store(folder)
    try:
        holding = wait_until(
            lambda: f":{proc.pid}:" in (store.meta.holder("sender") or ("",))[0], timeout=180
        )
        assert holding, "the scheduler never took the sending lease"
        if until is not None:
            assert wait_until(until, timeout=180)
        time.sleep(seconds)
    finally:
        store.close()
        proc.terminate()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out + err


def test_pause_resume_cancel_between_batches(tmp_path, server):
    env = make_folder(tmp_path, server.url, subscribers=600, batch_size=10)
    server.faults.slow = 10**6
    server.faults.slow_seconds = 0.6  # longer than a CLI start on a loaded machine
    proc = start(["run", "--once"], tmp_path, env)
    assert wait_until(lambda: server.stats().requests_accepted >= 2, timeout=60)
    assert run_cli(["pause", "1"], tmp_path, env=env).returncode == 0
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "paused" in out
    store = open_store(tmp_path)
    counts = store.deliveries.counts(1)
    assert counts["pending"] > 0 and counts["in_flight"] == 0
    sent_at_pause = counts["sent"]
    assert len(server.messages) == sent_at_pause
    status = run_cli(["status", "1"], tmp_path, env=env)
    assert "status: paused" in status.stdout
    # Paused issues are not resumed by a run...
    run_cli(["run", "--once"], tmp_path, env=env)
    assert len(server.messages) == sent_at_pause
    # ...until the editor resumes them.
    server.faults.slow = 0
    assert run_cli(["resume", "1"], tmp_path, env=env).returncode == 0
    assert run_cli(["run", "--once"], tmp_path, env=env).returncode == 0
    assert store.deliveries.counts(1)["sent"] == 600 and len(server.messages) == 600
    # A finished issue cannot be cancelled; the error says why.
    cancel = run_cli(["cancel", "1"], tmp_path, env=env)
    assert cancel.returncode == 1 and "issue 1 is sent" in cancel.stderr
    store.close()


def test_cancel_stops_a_send(tmp_path, server):
    env = make_folder(tmp_path, server.url, subscribers=600, batch_size=10)
    server.faults.slow = 10**6
    server.faults.slow_seconds = 0.6  # longer than a CLI start on a loaded machine
    proc = start(["run", "--once"], tmp_path, env)
    assert wait_until(lambda: server.stats().requests_accepted >= 2, timeout=60)
    assert run_cli(["cancel", "1"], tmp_path, env=env).returncode == 0
    proc.communicate(timeout=60)
    sent = len(server.messages)
    server.faults.slow = 0
    run_cli(["run", "--once"], tmp_path, env=env)
    assert len(server.messages) == sent < 600


@pytest.mark.skipif(shutil.which("chattr") is None, reason="chattr is not installed")
def test_database_that_stops_writing_mid_send_loses_nothing(tmp_path, server):
    env = make_folder(tmp_path, server.url, subscribers=400, batch_size=10)
    db = tmp_path / "newsletter.db"
    server.faults.slow = 10**6
    server.faults.slow_seconds = 0.2
    proc = start(["run", "--once"], tmp_path, env)
    assert wait_until(lambda: server.stats().requests_accepted >= 2, timeout=60)
    # The database and its write-ahead log stop accepting writes (the -shm index is memory
    # mapped: making it immutable would crash SQLite with SIGBUS rather than fail a write).
    files = [p for p in (db, db.with_name(db.name + "-wal")) if p.exists()]
    locked = subprocess.run(["chattr", "+i", *map(str, files)], capture_output=True)
    if locked.returncode != 0:
        kill9(proc)
        pytest.skip(f"cannot make the database immutable here: {locked.stderr.strip()}")
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        subprocess.run(["chattr", "-i", *map(str, files)], check=True)
    assert proc.returncode == 1
    assert "database" in err and "Traceback" not in err
    server.faults.slow = 0
    time.sleep(0.5)
    again = run_cli(["run", "--once"], tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    store = open_store(tmp_path)
    delivered = [m.to for m in server.messages]
    assert len(delivered) == len(set(delivered))
    counts = store.deliveries.counts(1)
    assert counts["pending"] == 0 and counts["in_flight"] == 0
    assert counts["sent"] + counts["uncertain"] == 400
    store.close()
