"""Paced sending ([sending]) through the real send loop: real SQLite files, the real outbox
provider, an injected clock (never a sleep). The caps stop a send mid-issue with nothing in
flight, the next window goes on, a new process (a new Store) counts from the delivery log,
the warm-up plan's day 1 and day 3, the worker waiting for the window, the CLI's exit."""

from __future__ import annotations

import dataclasses
import math
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from newsletter.delivery import SendContext, SendHooks, run_worker, send_issue
from newsletter.pacing import Caps
from newsletter.providers.outbox import OutboxProvider
from newsletter.settings import load_settings
from newsletter.store import Store
from newsletter.store.schema import deliveries, delivery_batches
from tests.conftest import delivery_policy, run_cli
from tests.faults import make_folder
from tests.test_admin_http import web  # noqa: F401 (the live workspace fixture)
from tests.test_delivery import eml_files, one_issue


class Clock:
    """The send's clock (`SendHooks.clock`), and time passing for the delivery log: the log
    stamps what it records with the machine's time, so `advance` ages every record (and the
    warm-up's day 1) in the real SQLite file, as if the time had passed: by whole hours, as
    a wait until the next window (less than an hour from now) reaches the next clock hour."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.waits: list[float] = []

    def __call__(self) -> float:
        return time.time()

    def advance(self, seconds: float) -> None:
        self.waits.append(seconds)
        store = Store(self.database_url)
        back = timedelta(hours=math.ceil(seconds / 3600))
        with store.engine.begin() as conn:
            # Both records of what was sent: the batches and the recipients recorded alone.
            for table, key in ((delivery_batches, "number"), (deliveries, "subscriber_id")):
                rows = conn.execute(
                    select(table.c.issue_id, table.c[key], table.c.updated_at)
                ).all()
                for issue, k, stamp in rows:
                    if stamp is not None:
                        conn.execute(
                            update(table)
                            .where(table.c.issue_id == issue, table.c[key] == k)
                            .values(updated_at=stamp - back)
                        )
        started = store.meta.get("warmup_started")
        if started:
            day = date.fromisoformat(started) - timedelta(days=seconds // 86400)
            store.meta.set("warmup_started", day.isoformat())
        store.close()


def caps(**values) -> Caps:
    return Caps(
        max_per_hour=values.get("max_per_hour", 0),
        max_per_day=values.get("max_per_day", 0),
        warmup=values.get("warmup", ()),
        warmup_start=None,
    )


def context(store, settings, clock, pace: Caps, *, concurrency: int = 1, **hooks):
    policy = delivery_policy(batch_size=20, concurrency=concurrency, pace=pace, zone=UTC)
    return SendContext.of(
        store,
        settings,
        OutboxProvider(settings),
        policy=policy,
        hooks=SendHooks(clock=clock, **hooks),
    )


def next_hour(clock: Clock) -> datetime:
    now = datetime.fromtimestamp(clock(), UTC)
    return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_the_hourly_cap_stops_mid_issue_and_the_next_window_goes_on(tmp_path, concurrency):
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=100)
    store, settings, issue_id = one_issue(tmp_path)
    clock = Clock(settings.database_url)
    ctx = context(store, settings, clock, caps(max_per_hour=30), concurrency=concurrency)

    report = send_issue(ctx, issue_id)
    counts = store.deliveries.counts(issue_id)
    # Batches were sized so the cap is met exactly, never passed, nothing left in flight.
    assert (counts["sent"], counts["pending"], counts["in_flight"]) == (30, 70, 0)
    assert report.status == "sending" and store.issues.issue_status(issue_id) == "sending"
    assert report.paced_until == next_hour(clock)
    expected = f"paused until {report.paced_until:%H:%M} by the hourly cap, 70 left"
    assert report.last_error == expected
    assert store.issues.get_issue(issue_id).last_error == expected

    # Again in the same hour: nothing goes out.
    again = send_issue(ctx, issue_id)
    assert again.batches == 0 and store.deliveries.counts(issue_id)["sent"] == 30
    assert again.paced_until == report.paced_until

    # A restart before the next window (a new process: a new Store, a new context) counts
    # what was sent from the delivery log: still nothing.
    store.close()
    store = Store(settings.database_url)
    ctx = context(store, settings, clock, caps(max_per_hour=30), concurrency=concurrency)
    assert send_issue(ctx, issue_id).batches == 0
    assert store.deliveries.counts(issue_id)["sent"] == 30

    # The next hour: the next 30, and the reason says what is left now.
    clock.advance(3600)
    later = send_issue(ctx, issue_id)
    assert store.deliveries.counts(issue_id)["sent"] == 60
    assert later.last_error == f"paused until {later.paced_until:%H:%M} by the hourly cap, 40 left"
    for _ in range(2):
        clock.advance(3600)
        last = send_issue(ctx, issue_id)
    assert last.status == "sent" and last.paced_until is None
    assert not store.issues.get_issue(issue_id).last_error  # the pace's reason is cleared
    files = sorted(eml_files(tmp_path / "outbox" / f"issue-{issue_id}"))
    assert files == [f"{sid:08d}.eml" for sid in range(1, 101)]  # each reader exactly once
    store.close()


def test_the_warm_up_plan_day_one_then_day_three(tmp_path):
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=100)
    store, settings, issue_id = one_issue(tmp_path)
    clock = Clock(settings.database_url)
    ctx = context(store, settings, clock, caps(warmup=(5, 10, 40)))

    day1 = send_issue(ctx, issue_id)
    assert store.deliveries.counts(issue_id)["sent"] == 5
    today = datetime.fromtimestamp(clock(), UTC).date()
    assert store.meta.get("warmup_started") == today.isoformat()  # day 1 is the first send
    midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
    assert day1.paced_until == midnight
    assert day1.last_error == f"paused until {midnight:%a %d %b %H:%M} by the warm-up, 95 left"

    clock.advance(2 * 86400)  # day 3 of the plan: 40 a day
    store.close()
    store = Store(settings.database_url)
    ctx = context(store, settings, clock, caps(warmup=(5, 10, 40)))
    day3 = send_issue(ctx, issue_id)
    assert store.deliveries.counts(issue_id)["sent"] == 45
    assert day3.last_error is not None and day3.last_error.endswith("by the warm-up, 55 left")
    store.close()


def test_the_daily_cap_counts_every_issue_of_the_day(tmp_path):
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=50)
    store, settings, issue_id = one_issue(tmp_path)
    clock = Clock(settings.database_url)
    ctx = context(store, settings, clock, caps(max_per_hour=100, max_per_day=35))
    report = send_issue(ctx, issue_id)
    assert store.deliveries.counts(issue_id)["sent"] == 35
    assert report.last_error is not None and "by the daily cap, 15 left" in report.last_error
    store.close()


def test_the_worker_waits_for_the_window_instead_of_polling(tmp_path):
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=70)
    store, settings, issue_id = one_issue(tmp_path)
    clock = Clock(settings.database_url)
    ctx = context(store, settings, clock, caps(max_per_hour=30))
    import threading

    lines: list[str] = []
    run_worker(
        ctx,
        stop=threading.Event(),
        once=True,
        poll_seconds=1.0,
        echo=lines.append,
        wait=clock.advance,
    )
    assert store.issues.issue_status(issue_id) == "sent"
    assert store.deliveries.counts(issue_id)["sent"] == 70
    # Two waits, each until the next hour opened (not a poll a second).
    assert len(clock.waits) == 2 and all(w > 1.0 for w in clock.waits)
    assert sum(1 for line in lines if line.startswith("paced: waiting until")) == 2
    files = eml_files(tmp_path / "outbox" / f"issue-{issue_id}")
    assert len(files) == 70
    store.close()


def test_run_stops_at_the_cap_and_says_when_it_goes_on(tmp_path):
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=5)
    config = tmp_path / "newsletter.toml"
    text = config.read_text().replace('provider = "sendgrid"', 'provider = "outbox"')
    config.write_text(text.replace("max_per_hour = 0", "max_per_hour = 3"))
    settings = load_settings(config, env={})
    assert settings.sending.max_per_hour == 3

    run = run_cli(["run"], tmp_path, env={"NEWSLETTER_PROVIDER": "outbox"})
    out = run.stdout + run.stderr
    assert run.returncode == 75, out
    assert "by the hourly cap, 2 left" in out and "`newsletter resume 1` from then" in out
    store = Store(settings.database_url)
    assert store.deliveries.counts(1)["sent"] == 3
    status = run_cli(["status"], tmp_path, env={"NEWSLETTER_PROVIDER": "outbox"})
    assert "by the hourly cap, 2 left" in status.stdout, status.stdout + status.stderr
    # Resumed within the same hour (a new process: counts from the delivery log): nothing.
    again = run_cli(["resume", "1"], tmp_path, env={"NEWSLETTER_PROVIDER": "outbox"})
    assert again.returncode == 75, again.stdout + again.stderr
    assert store.deliveries.counts(1)["sent"] == 3
    assert len(eml_files(tmp_path / "outbox" / "issue-1")) == 3
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


def test_the_scheduler_resumes_nothing_before_the_window_then_goes_on(tmp_path):
    from newsletter import publish
    from newsletter.delivery import SendingLease

    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=50)
    store, settings, issue_id = one_issue(tmp_path)
    clock = Clock(settings.database_url)
    policy = delivery_policy(batch_size=20, pace=caps(max_per_hour=30), zone=UTC)
    ctx = publish.TickContext.of(
        store, settings, OutboxProvider(settings), hooks=SendHooks(clock=clock), policy=policy
    )
    lease = SendingLease.of(store, settings)
    assert lease.acquire()
    first = publish.scheduled_work(ctx, lease)
    assert first is not None and [r.issue_id for r in first.resumed] == [issue_id]
    window = first.resumed[0].paced_until
    assert window is not None and store.deliveries.counts(issue_id)["sent"] == 30
    # Before the window: nothing is resumed at all (not even asked of the log).
    assert publish.scheduled_work(ctx, lease, resume_after=window) is None
    clock.advance(3600)
    # The window has come (the log aged by an hour): the rest goes out by itself.
    after = publish.scheduled_work(ctx, lease, now=window, resume_after=window)
    assert after is not None and after.resumed[0].status == "sent"
    assert store.deliveries.counts(issue_id)["sent"] == 50
    store.close()


def test_the_workspace_shows_why_the_issue_waits(web):  # noqa: F811 (the fixture)
    from newsletter.records import RenderedIssue
    from tests.test_admin_http import Browser
    from tests.test_web import add_subscriber

    for n in range(5):
        add_subscriber(web.store, f"r{n}@example.com", f"R{n}")
    rendered = RenderedIssue(
        slug="paced",
        subject="Paced",
        preheader="",
        html="<p>x</p>",
        text="x",
        archive_html="<p>x</p>",
        placeholder_nonce="0" * 16,
        view_url="",
    )
    issue_id = web.store.issues.create_issue(rendered, [])  # planned for the five readers
    assert web.store.deliveries.counts(issue_id)["pending"] == 5
    clock = Clock(web.settings.database_url)
    ctx = context(web.store, web.settings, clock, caps(max_per_hour=2))
    report = send_issue(ctx, issue_id)
    assert report.paced_until is not None
    browser = Browser(web)
    assert browser.sign_in().status == 303
    page = browser.get(f"/admin/issues/{issue_id}")
    assert f"paused until {report.paced_until:%H:%M} by the hourly cap, 3 left" in page.text
