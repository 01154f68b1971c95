"""Several `newsletter worker` processes sharing one issue: each batch claimed once, a dead
worker's batch held as uncertain, every subscriber exactly once -- on SQLite (one writer at a
time) and on PostgreSQL (SELECT ... FOR UPDATE SKIP LOCKED)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from newsletter import publish
from newsletter.delivery import SendingLease, recover_in_flight
from newsletter.exceptions import LeaseLost
from newsletter.settings import load_settings
from newsletter.store import Store
from newsletter.testing.sendgrid_server import SendGridServer
from tests.conftest import delivery_policy
from tests.faults import KEY, kill9, make_folder, start, wait_until


@pytest.fixture
def server():
    with SendGridServer(api_key=KEY) as srv:
        yield srv


def prepared(folder, server, subscribers: int, batch_size: int, database_url: str):
    """A folder with an issue built and planned, waiting for workers."""
    if database_url.startswith("sqlite"):
        database_url = None  # the folder's own newsletter.db
    env = make_folder(
        folder,
        server.url,
        subscribers=subscribers,
        batch_size=batch_size,
        database_url=database_url,
    )
    settings = load_settings(folder / "newsletter.toml", env={})
    store = Store(settings.database_url)
    picked, _ = publish.pick(store, settings, datetime.now(UTC))
    issue_id = publish.build_issue(store, settings, picked)
    return env, store, issue_id


def test_three_workers_share_one_issue_exactly_once(tmp_path, server, database_url):
    env, store, issue_id = prepared(tmp_path, server, 3000, 50, database_url)
    server.faults.slow = 10**6
    server.faults.slow_seconds = 0.02
    workers = [start(["worker", "--once"], tmp_path, env) for _ in range(3)]
    outputs = [w.communicate(timeout=120) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    delivered = [m.to for m in server.messages]
    assert len(delivered) == 3000 and len(set(delivered)) == 3000
    sent = store.deliveries.in_state(issue_id, "sent")
    assert len(sent) == 3000
    assert len({row.worker for row in sent}) >= 2  # the work really was shared
    assert store.issues.get_issue(issue_id).status == "sent"
    store.close()


def test_a_killed_worker_leaves_only_its_batch_uncertain(tmp_path, server, database_url):
    env, store, issue_id = prepared(tmp_path, server, 2000, 20, database_url)
    server.faults.slow = 10**6
    server.faults.slow_seconds = 0.1
    victim = start(["worker"], tmp_path, env)
    others = [start(["worker", "--once"], tmp_path, env) for _ in range(2)]
    assert wait_until(lambda: server.stats().requests_accepted >= 10, timeout=60)
    kill9(victim)
    rows = store.deliveries.in_state(issue_id, "in_flight")
    caught = {r.email for r in rows if r.worker.split(":")[1] == str(victim.pid)}
    for proc in others:
        proc.communicate(timeout=120)
    time.sleep(0.3)
    delivered = [m.to for m in server.messages]
    assert len(delivered) == len(set(delivered))
    uncertain = {r.email for r in store.deliveries.in_state(issue_id, "uncertain")}
    assert uncertain == caught
    counts = store.deliveries.counts(issue_id)
    assert counts["sent"] + counts["uncertain"] == 2000 and counts["pending"] == 0
    store.close()


def test_a_remote_workers_claim_is_taken_over_only_after_the_timeout(
    tmp_path, server, database_url
):
    _, store, issue_id = prepared(tmp_path, server, 30, 10, database_url)
    batch = store.deliveries.claim(issue_id, 10, worker="another-host:4242:cafe")
    policy = delivery_policy(claim_timeout=timedelta(seconds=1), concurrency=1)
    assert (
        recover_in_flight(store.deliveries, issue_id, policy) == 0
    )  # a live remote sender's batch
    assert len(store.deliveries.in_state(issue_id, "in_flight")) == 10
    time.sleep(1.2)
    assert recover_in_flight(store.deliveries, issue_id, policy) == 10  # abandoned: now uncertain
    assert {r.batch for r in store.deliveries.in_state(issue_id, "uncertain")} == {batch.number}
    store.close()


def test_a_claim_takes_exactly_its_batch(tmp_path, server, database_url):
    """Regression: on PostgreSQL, UPDATE ... IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)
    can re-run its subquery per row and claim every pending row at once."""
    _, store, issue_id = prepared(tmp_path, server, 95, 10, database_url)
    sizes = []
    after = 0
    while batch := store.deliveries.claim(issue_id, 10, worker="w", after=after):
        sizes.append(len(batch.recipients))
        after = batch.last_id
        assert store.deliveries.counts(issue_id)["in_flight"] == sum(sizes)
    assert sizes == [10] * 9 + [5]
    store.close()


def test_the_lease_renews_between_batches_without_a_write_each_time_and_still_notices_a_loss(
    tmp_path,
):
    store = Store(f"sqlite:///{tmp_path / 'lease.db'}")
    lease = SendingLease(store, timedelta(seconds=1), holder="host-a:1:x")
    assert lease.acquire()
    expires = store.meta.holder("sender")[1]
    lease.renew()  # right after acquiring: nothing to write
    assert store.meta.holder("sender")[1] == expires
    time.sleep(1.2)  # a stall longer than the lease: another sender takes it over
    assert store.meta.acquire("sender", "host-b:2:y", timedelta(seconds=60))
    with pytest.raises(LeaseLost):
        lease.renew()
    store.close()
