"""Paced sending ([sending]) through the real send loop: real SQLite files, the real outbox
provider, and the application's one clock (`newsletter.clock`) moved by the test, never a
sleep and never a shifted database: the caps stop a send mid-issue with nothing in flight,
the next window goes on, a new process (a new Store, or the real CLI in a subprocess with
NEWSLETTER_TEST_CLOCK) counts from the delivery log, the warm-up plan's day 1 and day 3,
the worker and the scheduler waiting for the window, the CLI's exit."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from newsletter.clock import CLOCK, CLOCK_ENV
from newsletter.delivery import SendContext, SendHooks, run_worker, send_issue
from newsletter.pacing import Caps
from newsletter.providers.outbox import OutboxProvider
from newsletter.settings import load_settings
from newsletter.store import Store
from tests.conftest import delivery_policy, run_cli, stub_issue
from tests.faults import make_folder
from tests.test_admin_http import web  # noqa: F401 (the live workspace fixture)
from tests.test_delivery import eml_files, one_issue

# Where the tests put the clock: 13:20 UTC, forty minutes before the next clock hour.
START = datetime(2026, 12, 7, 13, 20, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def clock() -> Iterator[list[float]]:
    """The whole process's clock stopped at START for the test (the store's stamps, the send
    loop, pacing and the scheduler all read it); yields the waits `wait` was asked for."""
    CLOCK.set(START)
    waits: list[float] = []
    yield waits
    CLOCK.reset()


def wait_on(waits: list[float]):
    """A worker's `wait(seconds)` that moves the clock on by that much instead of sleeping."""

    def wait(seconds: float) -> None:
        waits.append(seconds)
        CLOCK.advance(seconds)

    return wait


def caps(**values) -> Caps:
    return Caps(
        max_per_hour=values.get("max_per_hour", 0),
        max_per_day=values.get("max_per_day", 0),
        warmup=values.get("warmup", ()),
        warmup_start=None,
    )


def context(store, settings, pace: Caps, *, concurrency: int = 1, **hooks):
    """The send's context with the default hooks: its clock is the application's one."""
    policy = delivery_policy(batch_size=20, concurrency=concurrency, pace=pace, zone=UTC)
    return SendContext.of(
        store, settings, OutboxProvider(settings), policy=policy, hooks=SendHooks(**hooks)
    )


def at(hours: int = 0, minutes: int = 0) -> datetime:
    """A clock hour from START's (14:00 is START's next window)."""
    return START.replace(minute=0) + timedelta(hours=hours, minutes=minutes)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_the_hourly_cap_stops_mid_issue_and_the_next_window_goes_on(tmp_path, clock, concurrency):
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=100)
    store, settings, issue_id = one_issue(tmp_path)
    ctx = context(store, settings, caps(max_per_hour=30), concurrency=concurrency)

    report = send_issue(ctx, issue_id)
    counts = store.deliveries.counts(issue_id)
    # Batches were sized so the cap is met exactly, never passed, nothing left in flight.
    assert (counts["sent"], counts["pending"], counts["in_flight"]) == (30, 70, 0)
    assert report.status == "sending" and store.issues.issue_status(issue_id) == "sending"
    assert report.paced_until == at(1)
    expected = "paused until 14:00 by the hourly cap, 70 left"
    assert report.last_error == expected
    assert store.issues.get_issue(issue_id).last_error == expected

    # Again in the same hour, a minute before the window: nothing goes out.
    CLOCK.set(at(1) - timedelta(minutes=1))
    again = send_issue(ctx, issue_id)
    assert again.batches == 0 and store.deliveries.counts(issue_id)["sent"] == 30
    assert again.paced_until == report.paced_until

    # A restart before the next window (a new process: a new Store, a new context) counts
    # what was sent from the delivery log: still nothing.
    store.close()
    store = Store(settings.database_url)
    ctx = context(store, settings, caps(max_per_hour=30), concurrency=concurrency)
    assert send_issue(ctx, issue_id).batches == 0
    assert store.deliveries.counts(issue_id)["sent"] == 30

    # The next hour: the next 30, and the reason says what is left now.
    CLOCK.set(at(1))
    later = send_issue(ctx, issue_id)
    assert store.deliveries.counts(issue_id)["sent"] == 60
    assert later.last_error == "paused until 15:00 by the hourly cap, 40 left"
    for hour in (2, 3):
        CLOCK.set(at(hour, 5))
        last = send_issue(ctx, issue_id)
    assert last.status == "sent" and last.paced_until is None
    assert not store.issues.get_issue(issue_id).last_error  # the pace's reason is cleared
    files = sorted(eml_files(tmp_path / "outbox" / f"issue-{issue_id}"))
    assert files == [f"{sid:08d}.eml" for sid in range(1, 101)]  # each reader exactly once
    # The log was stamped by the clock the test moved: 30, 30, 30 and 10 in four hours.
    assert [store.deliveries.sent_since(at(h)) for h in (0, 1, 2, 3)] == [100, 70, 40, 10]
    store.close()


def test_the_warm_up_plan_day_one_then_day_three(tmp_path, clock):
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=100)
    store, settings, issue_id = one_issue(tmp_path)
    ctx = context(store, settings, caps(warmup=(5, 10, 40)))

    day1 = send_issue(ctx, issue_id)
    assert store.deliveries.counts(issue_id)["sent"] == 5
    assert store.meta.get("warmup_started") == "2026-12-07"  # day 1 is the first send's
    midnight = datetime(2026, 12, 8, tzinfo=UTC)
    assert day1.paced_until == midnight
    assert day1.last_error == "paused until Tue 08 Dec 00:00 by the warm-up, 95 left"

    # Day 2, just after midnight: 10 (a new Store, as after a restart).
    CLOCK.set(midnight + timedelta(minutes=1))
    store.close()
    store = Store(settings.database_url)
    ctx = context(store, settings, caps(warmup=(5, 10, 40)))
    day2 = send_issue(ctx, issue_id)
    assert store.deliveries.counts(issue_id)["sent"] == 15
    assert day2.last_error == "paused until Wed 09 Dec 00:00 by the warm-up, 85 left"

    CLOCK.set(START + timedelta(days=2))  # day 3 of the plan: 40 a day
    day3 = send_issue(ctx, issue_id)
    assert store.deliveries.counts(issue_id)["sent"] == 55
    assert day3.last_error == "paused until Thu 10 Dec 00:00 by the warm-up, 45 left"

    CLOCK.set(START + timedelta(days=3))  # after the plan: no cap at all
    assert send_issue(ctx, issue_id).status == "sent"
    assert store.deliveries.counts(issue_id)["sent"] == 100
    assert store.meta.get("warmup_started") == "2026-12-07"  # day 1 stays where it was
    store.close()


def test_the_daily_cap_counts_every_issue_of_the_day(tmp_path, clock):
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=50)
    store, settings, issue_id = one_issue(tmp_path)
    ctx = context(store, settings, caps(max_per_hour=100, max_per_day=35))
    report = send_issue(ctx, issue_id)
    assert store.deliveries.counts(issue_id)["sent"] == 35
    assert report.last_error == "paused until Tue 08 Dec 00:00 by the daily cap, 15 left"
    # Later the same day, past the hour: the day's cap still holds.
    CLOCK.set(at(9, 30))
    assert send_issue(ctx, issue_id).batches == 0
    CLOCK.set(datetime(2026, 12, 8, 0, 0, tzinfo=UTC))
    assert send_issue(ctx, issue_id).status == "sent"
    assert store.deliveries.counts(issue_id)["sent"] == 50
    store.close()


def test_the_worker_waits_for_the_window_instead_of_polling(tmp_path, clock):
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=70)
    store, settings, issue_id = one_issue(tmp_path)
    ctx = context(store, settings, caps(max_per_hour=30))

    lines: list[str] = []
    run_worker(
        ctx,
        stop=threading.Event(),
        once=True,
        poll_seconds=1.0,
        echo=lines.append,
        wait=wait_on(clock),
    )
    assert store.issues.issue_status(issue_id) == "sent"
    assert store.deliveries.counts(issue_id)["sent"] == 70
    # Two waits, each exactly until the next hour opened (not a poll a second): 13:20 ->
    # 14:00, then 14:00 -> 15:00.
    assert clock == [40 * 60, 3600]
    assert [line for line in lines if line.startswith("paced:")] == [
        "paced: waiting until 14:00",
        "paced: waiting until 15:00",
    ]
    assert [store.deliveries.sent_since(at(h)) for h in (0, 1, 2)] == [70, 40, 10]
    files = eml_files(tmp_path / "outbox" / f"issue-{issue_id}")
    assert len(files) == 70
    store.close()


def test_run_stops_at_the_cap_and_says_when_it_goes_on(tmp_path):
    """The real CLI in subprocesses, each started with NEWSLETTER_TEST_CLOCK: `run` stops at
    the cap (exit 75) saying when it can go on; `resume` in the same hour (a new process)
    sends nothing; in the next window it sends the rest."""
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=5)
    config = tmp_path / "newsletter.toml"
    text = config.read_text().replace('provider = "sendgrid"', 'provider = "outbox"')
    config.write_text(text.replace("max_per_hour = 0", "max_per_hour = 3"))
    settings = load_settings(config, env={})
    assert settings.sending.max_per_hour == 3

    def cli(args, moment):
        env = {"NEWSLETTER_PROVIDER": "outbox", CLOCK_ENV: moment.isoformat()}
        return run_cli(args, tmp_path, env=env)

    run = cli(["run"], START)
    out = run.stdout + run.stderr
    assert run.returncode == 75, out
    # The newsletter's zone is Paris: 14:00 UTC is 15:00 there.
    assert "paused until 15:00 by the hourly cap, 2 left" in out, out
    assert "`newsletter resume 1` from then" in out
    store = Store(settings.database_url)
    assert store.deliveries.counts(1)["sent"] == 3
    status = cli(["status"], START + timedelta(minutes=1))
    assert "paused until 15:00 by the hourly cap, 2 left" in status.stdout, status.stderr
    # Resumed within the same hour (a new process: counts from the delivery log): nothing.
    again = cli(["resume", "1"], at(1) - timedelta(minutes=2))
    assert again.returncode == 75, again.stdout + again.stderr
    assert store.deliveries.counts(1)["sent"] == 3
    assert len(eml_files(tmp_path / "outbox" / "issue-1")) == 3
    # In the next window: the rest, and the issue is sent.
    done = cli(["resume", "1"], at(1, 1))
    assert done.returncode == 0, done.stdout + done.stderr
    assert store.deliveries.counts(1)["sent"] == 5
    assert store.issues.issue_status(1) == "sent"
    assert len(eml_files(tmp_path / "outbox" / "issue-1")) == 5
    store.close()


def test_a_wrong_warm_up_plan_is_a_located_error(tmp_path):
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=1)
    config = tmp_path / "newsletter.toml"
    config.write_text(config.read_text().replace('warmup = ""', 'warmup = "50,lots"'))
    from newsletter.exceptions import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    assert "[sending] warmup: item 2 ('lots')" in str(caught.value)


def test_settings_give_the_policy_its_caps(tmp_path):
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=1)
    config = tmp_path / "newsletter.toml"
    text = config.read_text().replace('warmup = ""', 'warmup = "50, 100,500"')
    config.write_text(text.replace("max_per_day = 0", "max_per_day = 2000"))
    from newsletter.delivery import DeliveryPolicy

    policy = DeliveryPolicy.from_settings(load_settings(config, env={}))
    assert policy.pace == dataclasses.replace(
        caps(max_per_day=2000, warmup=(50, 100, 500)), warmup_start=None
    )


def test_the_scheduler_resumes_nothing_before_the_window_then_goes_on(tmp_path, clock):
    from newsletter import publish
    from newsletter.delivery import SendingLease

    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=50)
    store, settings, issue_id = one_issue(tmp_path)
    policy = delivery_policy(batch_size=20, pace=caps(max_per_hour=30), zone=UTC)
    ctx = publish.TickContext.of(
        store, settings, OutboxProvider(settings), hooks=SendHooks(), policy=policy
    )
    lease = SendingLease.of(store, settings)
    assert lease.acquire()
    first = publish.scheduled_work(ctx, lease)
    assert first is not None and [r.issue_id for r in first.resumed] == [issue_id]
    window = first.resumed[0].paced_until
    assert window == at(1) and store.deliveries.counts(issue_id)["sent"] == 30
    # Before the window: nothing is resumed at all (not even asked of the log).
    CLOCK.set(window - timedelta(seconds=1))
    assert publish.scheduled_work(ctx, lease, resume_after=window) is None
    assert store.deliveries.counts(issue_id)["sent"] == 30
    # The window has come (the clock, not the data, moved): the rest goes out by itself.
    CLOCK.set(window)
    assert lease.acquire()  # renewed at the new time, as the scheduler's heartbeat does
    after = publish.scheduled_work(ctx, lease, resume_after=window)
    assert after is not None and after.resumed[0].status == "sent"
    assert store.deliveries.counts(issue_id)["sent"] == 50
    store.close()


def test_the_workspace_shows_why_the_issue_waits(web, clock):  # noqa: F811 (the fixture)
    from tests.test_admin_http import Browser
    from tests.test_web import add_subscriber

    for n in range(5):
        add_subscriber(web.store, f"r{n}@example.com", f"R{n}")
    rendered = stub_issue("paced", "Paced")
    issue_id = web.store.issues.create_issue(rendered, [])  # planned for the five readers
    assert web.store.deliveries.counts(issue_id)["pending"] == 5
    ctx = context(web.store, web.settings, caps(max_per_hour=2))
    report = send_issue(ctx, issue_id)
    assert report.paced_until == at(1)
    browser = Browser(web)
    assert browser.sign_in().status == 303
    page = browser.get(f"/admin/issues/{issue_id}")
    assert "paused until 14:00 by the hourly cap, 3 left" in page.text


def test_two_worker_processes_never_pass_the_hourly_cap_together(tmp_path, database_url):
    """Two real `newsletter worker` processes on one database (SQLite, then PostgreSQL),
    each with its clock started at 13:20 (NEWSLETTER_TEST_CLOCK), against a slow provider so
    their batches are in flight at once: the hour's sends reach the cap and never pass it
    (each claim is cut inside its transaction to what the cap leaves, counting the other's
    batches in flight), nothing is left in flight, the rest waits pending, and both say so."""
    import signal

    from newsletter.testing.sendgrid_server import SendGridServer
    from tests.faults import KEY, start, wait_until
    from tests.test_workers import prepared

    cap, readers = 95, 300
    with SendGridServer(api_key=KEY) as server:
        env, store, issue_id = prepared(tmp_path, server, readers, 10, database_url)
        config = tmp_path / "newsletter.toml"
        config.write_text(
            config.read_text().replace("max_per_hour = 0", f"max_per_hour = {cap}", 1)
        )
        server.faults.slow = 10**6  # every request waits: the workers' batches overlap
        server.faults.slow_seconds = 0.15
        env = {**env, CLOCK_ENV: START.isoformat()}
        workers = [start(["worker", "--once"], tmp_path, env) for _ in range(2)]

        def settled() -> bool:
            counts = store.deliveries.counts(issue_id)
            return counts["sent"] + counts["failed"] >= cap and counts["in_flight"] == 0

        try:
            assert wait_until(settled, timeout=90), store.deliveries.counts(issue_id)
            # The workers now wait for 14:00 (forty minutes off on their clocks): stop them.
            wait_until(lambda: False, timeout=1.0)  # a last batch would show up in the log
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            outputs = [w.communicate(timeout=60) for w in workers]
        counts = store.deliveries.counts(issue_id)
        assert (counts["sent"], counts["in_flight"], counts["pending"]) == (
            cap,
            0,
            readers - cap,
        ), (counts, outputs)
        assert len(server.messages) == cap  # what the provider was actually asked to send
        assert store.deliveries.sent_since(at(0)) == cap
        sent = store.deliveries.in_state(issue_id, "sent")
        assert len({row.worker for row in sent}) == 2, outputs  # both really sent
        assert all("paced: waiting until" in out for out, _ in outputs), outputs
        assert store.issues.get_issue(issue_id).last_error == (
            f"paused until 15:00 by the hourly cap, {readers - cap} left"
        )
        store.close()


def test_a_claim_is_cut_to_what_the_window_leaves_counting_batches_in_flight(tmp_path, clock):
    """The store's side of the cap across processes: a claim given the hour's window takes
    at most what is left of it, counting every batch in flight (another worker's), and at
    the cap answers `AtCap` (not None: the issue is not done)."""
    from newsletter.pacing import Window
    from newsletter.records import AtCap

    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=50)
    store, settings, issue_id = one_issue(tmp_path)
    hour = (Window(since=at(0), limit=25),)
    first = store.deliveries.claim(issue_id, 20, worker="a", windows=hour)
    assert first is not None and len(first.recipients) == 20
    assert store.deliveries.in_flight_count() == 20
    second = store.deliveries.claim(issue_id, 20, worker="b", windows=hour)  # 20 in flight
    assert second is not None and len(second.recipients) == 5
    full = store.deliveries.claim(issue_id, 20, worker="b", windows=hour)
    assert full == AtCap(issue_id)
    store.deliveries.mark_sent(first, "m1")
    store.deliveries.mark_sent(second, "m2")
    assert store.deliveries.sent_since(at(0)) == 25 and store.deliveries.in_flight_count() == 0
    assert store.deliveries.claim(issue_id, 20, windows=hour) == AtCap(issue_id)
    # The next hour's window: the claim takes its full size again.
    later = store.deliveries.claim(issue_id, 20, windows=(Window(since=at(1), limit=25),))
    assert later is not None and len(later.recipients) == 20
    store.close()


def test_the_last_batch_filling_the_cap_exactly_finishes_the_issue(tmp_path, clock):
    """50 readers at 25 an hour: the second hour's claims fill the cap exactly and leave
    nobody pending; the issue is sent then, not left claiming at the cap."""
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=50)
    store, settings, issue_id = one_issue(tmp_path)
    ctx = context(store, settings, caps(max_per_hour=25))
    assert send_issue(ctx, issue_id).last_error == "paused until 14:00 by the hourly cap, 25 left"
    CLOCK.set(at(1))
    report = send_issue(ctx, issue_id)
    assert report.status == "sent" and report.paced_until is None
    assert store.deliveries.counts(issue_id)["sent"] == 50
    store.close()
