"""APScheduler wiring only: it wakes `publish`, it decides nothing.

The cadence job lives in APScheduler's SQLAlchemy job store in the project's database (fixed
id, replaced at each start so restarts never pile up copies; misfire grace time set from the
config instead of APScheduler's 1-second default; coalesced). A heartbeat job renews the
sending lease and catches up on anything due. Before either sends through a real provider,
the doctor's gate (`doctor.gate.unattended`) may stop it. Which issue goes out, and to whom, is decided
by `publish.scheduled_work` and the delivery log, so two schedulers on one database, a crash
or a restart never send an issue twice.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.blocking import BlockingScheduler

from newsletter import publish
from newsletter.alerts import held_notice
from newsletter.approval import awaiting_notice
from newsletter.delivery import SendHooks, SendingLease
from newsletter.exceptions import ConfigError, LeaseLost, NewsletterError, WorkerStopping
from newsletter.providers import make_provider
from newsletter.records import utcnow
from newsletter.settings import CONFIG_NAME, Settings, load_settings
from newsletter.store import Store

log = logging.getLogger(__name__)

TICK_JOB_ID = "newsletter-publication-tick"
HEARTBEAT_JOB_ID = "newsletter-heartbeat"
BOUNCES_JOB_ID = "newsletter-bounces"
WAVE_JOB_ID = "newsletter-wave"  # + "-<issue id>": reader time's next wave of an issue
JOBS_TABLE = "apscheduler_jobs"


class SchedulerRunner:
    """One scheduler process: its lease, its provider, and a lock so its own two jobs never
    send at the same time."""

    def __init__(self, store: Store, settings: Settings, echo: Callable[[str], None]) -> None:
        self.settings = settings
        self.store = store
        self.echo = echo
        self.lease = SendingLease.of(store, settings)
        self.ctx = publish.TickContext.of(
            store, settings, make_provider(settings), hooks=SendHooks(heartbeat=self.heartbeat)
        )
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.was_holder = False
        self.scheduler: BlockingScheduler | None = None
        self.config_mtime = _mtime(settings.root / CONFIG_NAME)
        self.refused_at: datetime | None = None  # the doctor's report that stops sending
        self.paced_until: datetime | None = None  # a cap's next window (see _note_pace)

    def heartbeat(self) -> None:
        """Between batches: stop if asked, else keep the lease."""
        if self.stopping.is_set():
            raise WorkerStopping("stopping: the rest of the issue goes out at the next start")
        self.lease.renew()

    def reload_cadence(self) -> bool:
        """Take a cadence changed in newsletter.toml (the workspace's schedule page writes
        it there) without a restart: the heartbeat serves due ticks from these settings, and
        the cadence job is rescheduled. True when the cadence changed."""
        path = self.settings.root / CONFIG_NAME
        mtime = _mtime(path)
        if mtime is None or mtime == self.config_mtime:
            return False
        self.config_mtime = mtime
        try:
            schedule = load_settings(path).schedule
        except ConfigError as exc:
            self.echo(f"newsletter.toml changed but cannot be used; keeping the cadence: {exc}")
            return False
        if schedule == self.settings.schedule:
            return False
        self.settings = dataclasses.replace(self.settings, schedule=schedule)
        self.ctx = dataclasses.replace(self.ctx, settings=self.settings)
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.reschedule_job(
                TICK_JOB_ID, trigger=publish.cadence_trigger(self.settings)
            )
        ticks = publish.next_ticks(self.settings, utcnow(), 3)
        self.echo(
            "cadence changed in newsletter.toml; next ticks: "
            + ", ".join(
                f"{t.astimezone(self.settings.timezone):%a %Y-%m-%d %H:%M %Z}" for t in ticks
            )
        )
        return True

    def wake(self, reason: str) -> None:
        if self.stopping.is_set() or not self.lock.acquire(blocking=False):
            return
        try:
            self.reload_cadence()
            if not self.lease.acquire():
                if self.was_holder:
                    self.echo("lost the sending lease: standing by")
                self.was_holder = False
                return
            if not self.was_holder:
                self.echo(f"holding the sending lease as {self.lease.holder}")
            self.was_holder = True
            self._poll_feeds()  # before the tick: new entries can make this issue
            try:
                if self._deliverability_refuses():
                    return
                result = publish.scheduled_work(self.ctx, self.lease, resume_after=self.paced_until)
                self._note_pace(result)
                self._report(result, reason)
                self._wake_at_next_waves()
            finally:
                self._alert()
        except (WorkerStopping, LeaseLost) as exc:
            self.echo(str(exc))
        except NewsletterError as exc:
            self.echo(f"error: {exc}")
        except Exception:  # a job must never kill the scheduler; the log keeps the details
            log.exception("scheduled work failed")
        finally:
            self.lock.release()

    def _deliverability_refuses(self) -> bool:
        """The doctor's gate (once a day through a real provider, cached): on errors nothing
        is sent, the issues in progress are paused with the reason and the editors alerted.
        Said once per report, not at every heartbeat."""
        from newsletter.doctor.gate import unattended

        gate = unattended(self.settings, self.store, now=utcnow())
        said = gate.report.checked_at if gate.report is not None and gate.refuse else None
        if said is not None and said != self.refused_at:
            for line in gate.lines:
                self.echo(line)
        self.refused_at = said
        return gate.refuse

    def read_bounces(self) -> None:
        """`newsletter bounces` on the configured mailbox ([bounces] every_minutes); each
        message acts once, so two schedulers reading the same mailbox do no harm."""
        from newsletter.bounces.apply import apply_mailbox

        if self.stopping.is_set():
            return
        source = self.settings.bounces.source
        try:
            report = apply_mailbox(self.store, self.settings, source)
        except NewsletterError as exc:
            self.echo(f"bounces: error: {exc}")
            return
        except Exception:  # the mailbox must never kill the scheduler
            log.exception("reading the bounce mailbox failed")
            return
        fresh = report.read - report.already_handled
        self.echo(
            f"bounces: {fresh} new of {report.read} in {source}: permanent {report.permanent}, "
            f"temporary {report.temporary}, complaints {report.complaints}, not understood "
            f"{len(report.not_understood)}"
            + (f"; now bounced: {', '.join(report.bounced)}" if report.bounced else "")
            + (f"; now complained: {', '.join(report.complained)}" if report.complained else "")
        )

    def _poll_feeds(self) -> None:
        """Fetch the feeds whose interval has come; a feed's failure is recorded and
        reported, and never stops the scheduler (nor the other feeds)."""
        if not self.settings.feeds:
            return
        from newsletter.feeds import poll_feeds

        try:
            report = poll_feeds(self.store, self.settings, due_only=True)
        except Exception:
            log.exception("polling the feeds failed")
            return
        for outcome in report.feeds:
            if outcome.error:
                self.echo(f"feed failed, retried at {outcome.retry_at:%H:%M}: {outcome.error}")
            elif outcome.queued or outcome.held:
                self.echo(
                    f"feed {outcome.url}: queued {len(outcome.queued)}, held {len(outcome.held)}"
                )

    def _alert(self) -> None:
        """Email the editors what needs them (each event once); never stops the scheduler."""
        from newsletter.alerts import send_alerts

        try:
            for alert in send_alerts(self.store, self.settings, self.ctx.provider):
                self.echo(f"alerted the editors: {alert.subject}")
        except Exception:
            log.exception("alerting the editors failed")

    def _note_pace(self, result: publish.TickResult | None) -> None:
        """Remember the first window a cap of [sending] waits for: the heartbeats before it
        resume nothing (they would find the same counts), the first after it goes on."""
        if self.paced_until is not None and utcnow() >= self.paced_until:
            self.paced_until = None
        if result is None:
            return
        reports = [*result.resumed, *([result.report] if result.report else [])]
        if reports:
            windows = [r.paced_until for r in reports if r.paced_until is not None]
            self.paced_until = min(windows) if windows else None
            if windows:
                self.echo(f"paced: going on at {min(windows):%Y-%m-%d %H:%M %Z}")

    def _wake_at_next_waves(self) -> None:
        """Reader time: one wake-up at each waiting issue's next wave (a one-off job, kept
        in memory: a restart finds the waves again here), so a wave goes at its instant."""
        if self.scheduler is None:
            return
        now = utcnow()
        for issue_id in self.store.issues.unfinished_issues():
            at = self.store.deliveries.waiting_until(issue_id, now)
            if at is not None:
                self.scheduler.add_job(
                    wave_tick,
                    "date",
                    run_date=at,
                    id=f"{WAVE_JOB_ID}-{issue_id}",
                    replace_existing=True,
                    jobstore="memory",
                )

    def _report(self, result: publish.TickResult | None, reason: str) -> None:
        if result is None:
            return
        for report in result.resumed:
            self.echo(f"issue {report.issue_id}: {report.status}; {_counts(report.counts)}")
            if report.next_wave is not None:
                self.echo(f"issue {report.issue_id}: next wave at {report.next_wave:%H:%M} UTC")
        if result.tick is not None and result.awaiting is not None:
            self.echo(f"tick {result.tick:%Y-%m-%d %H:%M %Z}: {awaiting_notice(result.awaiting)}")
        elif result.tick is not None and result.report is None:
            self.echo(f"tick {result.tick:%Y-%m-%d %H:%M %Z}: nothing to send (queue empty)")
        if result.report is not None:
            self.echo(
                f"tick {result.tick:%Y-%m-%d %H:%M %Z} ({reason}): issue {result.issue_id} "
                f"({', '.join(result.articles)}): {result.report.status}; "
                f"{_counts(result.report.counts)}"
            )
        for error in result.errors:
            self.echo(f"skipped: {error}")
        for held in result.held_articles:
            self.echo(held_notice(held.filename, held.title))


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{state} {n}" for state, n in counts.items() if n)


_RUNNER: SchedulerRunner | None = None


def scheduled_tick() -> None:
    """The persisted cadence job's target: wake this process's runner."""
    if _RUNNER is not None:
        _RUNNER.wake("cadence")


def heartbeat_tick() -> None:
    if _RUNNER is not None:
        _RUNNER.wake("heartbeat")


def wave_tick() -> None:
    if _RUNNER is not None:
        _RUNNER.wake("reader-time wave")


def bounces_tick() -> None:
    if _RUNNER is not None:
        _RUNNER.read_bounces()


def build_scheduler(store: Store, settings: Settings) -> BlockingScheduler:
    grace = int(settings.schedule.grace.total_seconds())
    scheduler = BlockingScheduler(
        jobstores={
            "default": SQLAlchemyJobStore(engine=store.engine, tablename=JOBS_TABLE),
            "memory": MemoryJobStore(),
        },
        executors={"default": ThreadPoolExecutor(2)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": grace},
        timezone=settings.timezone,
    )
    scheduler.add_job(
        scheduled_tick,
        trigger=publish.cadence_trigger(settings),
        id=TICK_JOB_ID,
        name="publication cadence",
        replace_existing=True,
        jobstore="default",
    )
    scheduler.add_job(
        heartbeat_tick,
        "interval",
        seconds=settings.schedule.heartbeat.total_seconds(),
        id=HEARTBEAT_JOB_ID,
        jobstore="memory",
        next_run_time=utcnow(),
    )
    if settings.bounces.every_minutes and settings.bounces.source:
        scheduler.add_job(
            bounces_tick,
            "interval",
            minutes=settings.bounces.every_minutes,
            id=BOUNCES_JOB_ID,
            jobstore="memory",
            next_run_time=utcnow(),  # once at start, then every N minutes
        )
    return scheduler


def run_scheduler(store: Store, settings: Settings, echo: Callable[[str], None] = print) -> None:
    """Run until Ctrl-C or SIGTERM; a send in progress stops cleanly between batches."""
    global _RUNNER
    _RUNNER = runner = SchedulerRunner(store, settings, echo)
    scheduler = runner.scheduler = build_scheduler(store, settings)

    def stop(signum, _frame) -> None:
        runner.stopping.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    ticks = publish.next_ticks(settings, utcnow(), 3)
    echo(
        "scheduler running; next ticks: "
        + ", ".join(f"{t.astimezone(settings.timezone):%a %Y-%m-%d %H:%M %Z}" for t in ticks)
    )
    missed = publish.missed_tick(store)
    if missed:
        echo(
            f"missed: the issue due at {missed.astimezone(settings.timezone):%Y-%m-%d %H:%M %Z} "
            "was missed; run 'newsletter run' to send it now"
        )
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        runner.stopping.set()
        if scheduler.running:
            scheduler.shutdown(wait=True)
        runner.lease.release()
        signal.signal(signal.SIGTERM, previous)
        _RUNNER = None
        echo("scheduler stopped")
