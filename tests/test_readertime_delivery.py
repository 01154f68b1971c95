"""Reader-time delivery end to end: `[issue] deliver_at = "local 08:00"` over a real SQLite
file and the real outbox, with the send loop's clock injected (SendHooks.clock) and the
plan's `now` given, never by sleeping: three zones plus readers without one go out in four
waves at their instants, each reader exactly once, and a fresh store (another process's
view after a crash between waves) carries on where the last wave left off."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

from newsletter import publish
from newsletter.delivery import SendContext, SendHooks, run_worker, send_issue
from newsletter.exceptions import ConfigError
from newsletter.providers import make_provider
from newsletter.records import DeliveryState, IssueStatus
from newsletter.settings import load_settings, write_default_config
from newsletter.store import Store
from newsletter.subscribers import signing_secret
from newsletter.tokens import new_token
from tests.conftest import delivery_policy, run_cli
from tests.faults import make_folder

ZONES = ("Asia/Tokyo", "Europe/Paris", "America/New_York", "")  # "": the newsletter's
PLANNED = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
# 08:00 local on 7 December 2026 (no DST anywhere here): the newsletter is in London.
PARIS_AT = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
LONDON_AT = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
NEW_YORK_AT = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)
TOKYO_AT = datetime(2026, 12, 7, 23, 0, tzinfo=UTC)
OUTBOX = {"NEWSLETTER_PROVIDER": "outbox"}
READERS = 23  # ids 1..23, zones in turn, so every batch would mix them


def _folder(tmp_path, url=None):
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=0, batch_size=4, database_url=url)
    config = tmp_path / "newsletter.toml"
    text = config.read_text()
    text = text.replace('timezone = "Europe/Paris"', 'timezone = "Europe/London"', 1)
    text = text.replace('deliver_at = ""', 'deliver_at = "local 08:00"', 1)
    config.write_text(text)
    settings = load_settings(config, env={"NEWSLETTER_PROVIDER": "outbox"})
    store = Store(settings.database_url)
    secret = signing_secret(store)
    store.subscribers.add(
        {
            "email": f"reader{i:02d}@example.com",
            "name": f"Reader {i}",
            "token": new_token(secret),
            "timezone": ZONES[i % len(ZONES)],
        }
        for i in range(READERS)
    )
    publish.sync_queue(store, settings)
    picked, _ = publish.pick(store, settings, PLANNED)
    issue_id = publish.build_checked(store, settings, picked, now=PLANNED).issue_id
    return settings, store, issue_id


def _send_at(settings, store, issue_id, moment):
    hooks = SendHooks(clock=moment.timestamp)
    ctx = SendContext.of(
        store, settings, make_provider(settings), policy=delivery_policy(batch_size=4), hooks=hooks
    )
    return send_issue(ctx, issue_id)


def _outbox(settings, issue_id) -> list[str]:
    folder = settings.outbox_path / f"issue-{issue_id}"
    return sorted(p.name for p in folder.glob("*.eml")) if folder.exists() else []


def _ids_in(zones):
    return sorted(i + 1 for i in range(READERS) if ZONES[i % len(ZONES)] in zones)


def _files(ids):
    return [f"{sid:08d}.eml" for sid in ids]


def test_each_zone_goes_at_its_own_eight_oclock_each_reader_once_and_a_new_store_carries_on(
    tmp_path, database_url
):
    settings, store, issue_id = _folder(tmp_path, database_url)
    assert settings.deliver_at is not None

    waves = store.deliveries.waves(issue_id)
    assert [(w.at, w.zones) for w in waves] == [
        (PARIS_AT, ("Europe/Paris",)),
        (LONDON_AT, ("",)),
        (NEW_YORK_AT, ("America/New_York",)),
        (TOKYO_AT, ("Asia/Tokyo",)),
    ]
    assert [w.left for w in waves] == [6, 5, 6, 6]

    # Before the first instant: nothing is claimed, the issue waits, the next wave named.
    report = _send_at(settings, store, issue_id, PARIS_AT - timedelta(seconds=1))
    assert report.status == IssueStatus.SENDING and report.next_wave == PARIS_AT
    assert report.ok and report.batches == 0
    assert _outbox(settings, issue_id) == []

    report = _send_at(settings, store, issue_id, PARIS_AT)
    assert _outbox(settings, issue_id) == _files(_ids_in({"Europe/Paris"}))
    assert report.next_wave == LONDON_AT and report.counts[DeliveryState.SENT] == 6

    # The same instant again sends nobody twice.
    report = _send_at(settings, store, issue_id, PARIS_AT + timedelta(minutes=30))
    assert report.batches == 0 and report.next_wave == LONDON_AT

    # A crash between waves: a fresh store over the same file carries on.
    store.close()
    store = Store(settings.database_url)
    report = _send_at(settings, store, issue_id, NEW_YORK_AT + timedelta(minutes=5))
    # Late (the scheduler was down): both overdue waves go, Tokyo still waits.
    assert _outbox(settings, issue_id) == _files(_ids_in({"Europe/Paris", "", "America/New_York"}))
    assert report.next_wave == TOKYO_AT and report.status == IssueStatus.SENDING
    progress = {w.at: (w.sent, w.left) for w in store.deliveries.waves(issue_id)}
    assert progress == {
        PARIS_AT: (6, 0),
        LONDON_AT: (5, 0),
        NEW_YORK_AT: (6, 0),
        TOKYO_AT: (0, 6),
    }

    # `status` (the real command) shows each wave's progress and zones, in the editor's zone.
    shown = run_cli(["status", str(issue_id)], cwd=tmp_path, env=OUTBOX)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "reader time (4 waves):" in lines
    assert "  Mon 2026-12-07 07:00 GMT  sent 6, left 0  Europe/Paris" in lines
    assert "  Mon 2026-12-07 08:00 GMT  sent 5, left 0  Europe/London (no zone of their own)" in (
        lines
    )
    assert "  Mon 2026-12-07 23:00 GMT  sent 0, left 6  Asia/Tokyo" in lines

    report = _send_at(settings, store, issue_id, TOKYO_AT)
    assert report.status == IssueStatus.SENT and report.next_wave is None
    assert _outbox(settings, issue_id) == _files(range(1, READERS + 1))
    assert report.counts[DeliveryState.SENT] == READERS
    assert report.counts[DeliveryState.PENDING] == 0


def test_a_worker_leaves_a_waiting_issue_until_its_wave_and_then_sends_it(tmp_path):
    settings, store, issue_id = _folder(tmp_path)

    def work(moment):
        hooks = SendHooks(clock=moment.timestamp)
        ctx = SendContext.of(
            store, settings, make_provider(settings), policy=delivery_policy(), hooks=hooks
        )
        return run_worker(ctx, stop=threading.Event(), once=True, echo=lambda _line: None)

    assert store.deliveries.waiting_until(issue_id, PARIS_AT - timedelta(hours=1)) == PARIS_AT
    early = work(PARIS_AT - timedelta(hours=1))
    assert early.batches == 0 and _outbox(settings, issue_id) == []
    assert store.deliveries.waiting_until(issue_id, PARIS_AT) is None  # due: not waiting
    done = work(PARIS_AT)
    assert done.issues == {issue_id}
    assert _outbox(settings, issue_id) == _files(_ids_in({"Europe/Paris"}))
    assert store.deliveries.waiting_until(issue_id, PARIS_AT) == LONDON_AT


def test_an_unknown_deliver_at_is_refused_naming_the_setting(tmp_path):
    write_default_config(tmp_path)
    config = tmp_path / "newsletter.toml"
    config.write_text(config.read_text().replace('deliver_at = ""', 'deliver_at = "8am"', 1))
    with pytest.raises(ConfigError, match="deliver_at.*'local HH:MM'"):
        load_settings(config)


def test_without_deliver_at_every_reader_goes_at_once(tmp_path):
    write_default_config(tmp_path)
    settings = load_settings(tmp_path / "newsletter.toml", env={"NEWSLETTER_PROVIDER": "outbox"})
    assert settings.deliver_at is None


def test_the_workspace_issue_page_shows_each_wave_and_the_next(tmp_path, monkeypatch):
    from newsletter.editors import add_editor
    from tests.test_admin_http import PASSWORD, Browser
    from tests.test_web import serve_folder

    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    settings, store, issue_id = _folder(tmp_path)
    _send_at(settings, store, issue_id, PARIS_AT)
    with serve_folder(tmp_path, env=OUTBOX) as web:
        add_editor(web.store, "ed@example.com", PASSWORD)
        browser = Browser(web)
        assert browser.sign_in().status == 303
        page = browser.get(f"/admin/issues/{issue_id}")
    assert page.status == 200
    rows = re.findall(
        r"<tr[^>]*><td>(.*?)</td><td>(.*?)</td><td data-wave-sent>(\d+)</td>"
        r"<td data-wave-left>(\d+)</td></tr>",
        page.text,
    )
    assert rows == [
        ("Mon 2026-12-07 07:00 GMT", "Europe/Paris", "6", "0"),
        ("Mon 2026-12-07 08:00 GMT", "Europe/London (no zone of their own)", "0", "5"),
        ("Mon 2026-12-07 13:00 GMT", "America/New_York", "0", "6"),
        ("Mon 2026-12-07 23:00 GMT", "Asia/Tokyo", "0", "6"),
    ]
    assert 'id="next-wave">Next wave: Mon 2026-12-07 08:00 GMT' in page.text


def _etc_zone(utc_hour: int) -> str:
    """The Etc/GMT zone whose 08:00 falls at `utc_hour`:00 UTC (POSIX signs: GMT-9 is +9)."""
    east = (8 - utc_hour) % 24
    east = east - 24 if east > 14 else east
    return "Etc/GMT" if east == 0 else f"Etc/GMT{-east:+d}"


def _past_and_future_waves(tmp_path):
    """Readers 1 and 3 in a zone whose 08:00 came an hour ago, 2 and 4 in one whose 08:00 is
    five hours ahead, planned from the same whole hour (an hour turning over is harmless)."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    past, future = _etc_zone((hour.hour - 1) % 24), _etc_zone((hour.hour + 5) % 24)
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=0)
    config = tmp_path / "newsletter.toml"
    config.write_text(
        config.read_text().replace('deliver_at = ""', 'deliver_at = "local 08:00"', 1)
    )
    settings = load_settings(config, env=OUTBOX)
    store = Store(settings.database_url)
    secret = signing_secret(store)
    store.subscribers.add(
        {"email": f"r{i}@example.com", "name": "", "token": new_token(secret), "timezone": zone}
        for i, zone in enumerate([past, future, past, future])
    )
    publish.sync_queue(store, settings)
    picked, _ = publish.pick(store, settings, datetime.now(UTC))
    planned = hour - timedelta(minutes=90)
    issue_id = publish.build_checked(store, settings, picked, now=planned).issue_id
    return settings, store, issue_id, hour + timedelta(hours=5)


def test_run_sends_the_waves_due_and_says_when_the_next_one_is(tmp_path):
    """The real command, on the real clock."""
    settings, store, issue_id, next_at = _past_and_future_waves(tmp_path)
    run = run_cli(["run"], cwd=tmp_path, env=OUTBOX)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"the next wave goes at {next_at:%Y-%m-%d %H:%M} UTC" in run.stdout
    assert _outbox(settings, issue_id) == _files([1, 3])
    assert store.issues.get_issue(issue_id).status == IssueStatus.SENDING


def test_a_process_killed_with_a_wave_batch_in_flight_is_carried_on_by_a_fresh_one(tmp_path):
    """A batch of the Paris wave claimed, its process gone before the request (the claim
    written, nothing else): a fresh store recovers it (the outbox settles what it never
    wrote) and every Paris reader gets the issue once; the later waves still wait."""
    settings, store, issue_id = _folder(tmp_path)
    assert store.deliveries.claim(issue_id, 4, worker="early", now=PARIS_AT - timedelta(1)) is None
    store.close()
    # A real process claims a batch of the due wave as its sender would, then is killed.
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal, sys\n"
            "from datetime import datetime\n"
            "from newsletter.delivery.lease import PROCESS_ID\n"
            "from newsletter.store import Store\n"
            "batch = Store(sys.argv[1]).deliveries.claim(\n"
            "    int(sys.argv[2]), 4, worker=PROCESS_ID, now=datetime.fromisoformat(sys.argv[3]))\n"
            "print(','.join(str(r.subscriber_id) for r in batch.recipients), flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n",
            settings.database_url,
            str(issue_id),
            PARIS_AT.isoformat(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    claimed = [int(x) for x in child.stdout.split(",")]
    assert len(claimed) == 4 and set(claimed) <= set(_ids_in({"Europe/Paris"}))

    fresh = Store(settings.database_url)
    report = _send_at(settings, fresh, issue_id, PARIS_AT + timedelta(minutes=1))
    assert _outbox(settings, issue_id) == _files(_ids_in({"Europe/Paris"}))
    assert report.counts[DeliveryState.SENT] == 6 and report.counts[DeliveryState.UNCERTAIN] == 0
    assert report.next_wave == LONDON_AT


def test_a_tick_plans_the_waves_from_its_own_time_and_sends_none_before_the_first(tmp_path):
    make_folder(tmp_path, "http://127.0.0.1:9", subscribers=0)
    config = tmp_path / "newsletter.toml"
    config.write_text(
        config.read_text().replace('deliver_at = ""', 'deliver_at = "local 08:00"', 1)
    )
    settings = load_settings(config, env=OUTBOX)
    store = Store(settings.database_url)
    secret = signing_secret(store)
    store.subscribers.add(
        {"email": f"t{i}@example.com", "name": "", "token": new_token(secret), "timezone": z}
        for i, z in enumerate(["Asia/Tokyo", "Europe/Paris"])
    )
    hooks = SendHooks(clock=PLANNED.timestamp)
    ctx = publish.TickContext.of(store, settings, make_provider(settings), hooks=hooks)
    result = publish.publish_tick(ctx, PLANNED)
    assert result.report is not None and result.report.batches == 0
    assert result.report.next_wave == PARIS_AT
    assert [w.at for w in store.deliveries.waves(result.report.issue_id)] == [PARIS_AT, TOKYO_AT]


def test_the_scheduler_wakes_once_at_the_next_wave(tmp_path):
    from newsletter.scheduler import WAVE_JOB_ID, SchedulerRunner, build_scheduler

    settings, store, issue_id, next_at = _past_and_future_waves(tmp_path)
    runner = SchedulerRunner(store, settings, lambda _line: None)
    runner.scheduler = build_scheduler(store, settings)
    runner._wake_at_next_waves()
    assert runner.scheduler.get_job(f"{WAVE_JOB_ID}-{issue_id}") is None  # a wave is due now
    _send_at(settings, store, issue_id, datetime.now(UTC))
    runner._wake_at_next_waves()
    job = runner.scheduler.get_job(f"{WAVE_JOB_ID}-{issue_id}")
    assert job is not None and job.trigger.run_date == next_at


def test_a_run_killed_mid_wave_is_resumed_once_and_the_later_wave_still_waits(
    tmp_path, monkeypatch
):
    """The real `newsletter run` sending the due wave through the local SendGrid server
    (slowed), killed with SIGKILL in the middle: a second `run` goes on with that wave,
    nobody gets it twice, the ones in flight at the kill are named uncertain, and the later
    wave is untouched until its instant, then sent once (the send loop's clock injected)."""
    import random
    import time

    from newsletter.testing.sendgrid_server import SendGridServer
    from tests.faults import KEY, kill9, start, wait_until

    due_readers, later_readers = 300, 60
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    past, future = _etc_zone((hour.hour - 1) % 24), _etc_zone((hour.hour + 5) % 24)
    with SendGridServer(api_key=KEY) as server:
        env = make_folder(tmp_path, server.url, subscribers=0, batch_size=10)
        config = tmp_path / "newsletter.toml"
        config.write_text(
            config.read_text().replace('deliver_at = ""', 'deliver_at = "local 08:00"', 1)
        )
        settings = load_settings(config, env=env)
        store = Store(settings.database_url)
        secret = signing_secret(store)
        zones = [past] * due_readers + [future] * later_readers
        random.Random(24).shuffle(zones)  # the waves interleave in id
        store.subscribers.add(
            {
                "email": f"r{i:03d}@example.com",
                "name": "",
                "token": new_token(secret),
                "timezone": z,
            }
            for i, z in enumerate(zones)
        )
        due = {f"r{i:03d}@example.com" for i, z in enumerate(zones) if z == past}
        later = {f"r{i:03d}@example.com" for i, z in enumerate(zones) if z == future}
        publish.sync_queue(store, settings)
        picked, _ = publish.pick(store, settings, datetime.now(UTC))
        issue_id = publish.build_checked(
            store, settings, picked, now=hour - timedelta(minutes=90)
        ).issue_id

        server.faults.slow = 10**6
        server.faults.slow_seconds = 0.15
        proc = start(["run", "--once"], tmp_path, env)
        assert wait_until(lambda: server.stats().requests_accepted >= 3, timeout=60)
        time.sleep(random.uniform(0.0, 0.3))
        kill9(proc)
        caught = {r.email for r in store.deliveries.in_state(issue_id, "in_flight")}
        assert store.issues.get_issue(issue_id).status == IssueStatus.SENDING
        assert len(store.deliveries.in_state(issue_id, "sent")) < due_readers  # mid-wave
        server.faults.slow = 0
        again = run_cli(["run", "--once"], tmp_path, env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        time.sleep(0.3)  # the request the killed sender left behind finishes at the server
        delivered = [m.to for m in server.messages]
        assert len(delivered) == len(set(delivered)), "somebody got the issue twice"
        sent = {r.email for r in store.deliveries.in_state(issue_id, "sent")}
        uncertain = {r.email for r in store.deliveries.in_state(issue_id, "uncertain")}
        assert uncertain == caught and sent | uncertain == due
        assert set(delivered) <= due and sent <= set(delivered)
        waiting = {r.email for r in store.deliveries.in_state(issue_id, "pending")}
        assert waiting == later  # the later wave: nothing of it went, nothing lost

        for name, value in env.items():  # the key the provider reads, as the runs had it
            monkeypatch.setenv(name, value)
        report = _send_at(settings, store, issue_id, hour + timedelta(hours=5, minutes=1))
        assert report.counts[DeliveryState.PENDING] == 0
        delivered = [m.to for m in server.messages]
        assert len(delivered) == len(set(delivered)) and later <= set(delivered)
        assert {r.email for r in store.deliveries.in_state(issue_id, "sent")} == sent | later
        store.close()
