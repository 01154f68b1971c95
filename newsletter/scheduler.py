"""APScheduler wiring only: it wakes `publish`, it decides nothing.

The cadence job lives in APScheduler's SQLAlchemy job store in the project's database (fixed
id, replaced at each start so restarts never pile up copies; misfire grace time set from the
config instead of APScheduler's 1-second default; coalesced). A heartbeat job renews the
sending lease and catches up on anything due. Which issue goes out, and to whom, is decided
by `publish.scheduled_work` and the delivery log, so two schedulers on one database, a crash
or a restart never send an issue twice.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.blocking import BlockingScheduler

from newsletter import publish
from newsletter.alerts import held_notice
from newsletter.delivery import SendHooks, SendingLease
from newsletter.exceptions import ConfigError, LeaseLost, NewsletterError, WorkerStopping
from newsletter.providers import make_provider
from newsletter.records import utcnow
from newsletter.settings import CONFIG_NAME, Settings, load_settings
from newsletter.store import Store

log = logging.getLogger(__name__)

TICK_JOB_ID = "newsletter-publication-tick"
HEARTBEAT_JOB_ID = "newsletter-heartbeat"
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
            try:
                result = publish.scheduled_work(self.ctx, self.lease)
                self._report(result, reason)
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

    def _alert(self) -> None:
        """Email the editors what needs them (each event once); never stops the scheduler."""
        from newsletter.alerts import send_alerts

        try:
            for alert in send_alerts(self.store, self.settings, self.ctx.provider):
                self.echo(f"alerted the editors: {alert.subject}")
        except Exception:
            log.exception("alerting the editors failed")

    def _report(self, result: publish.TickResult | None, reason: str) -> None:
        if result is None:
            return
        for report in result.resumed:
            self.echo(f"issue {report.issue_id}: {report.status}; {_counts(report.counts)}")
        if result.tick is not None and result.report is None:
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
    held = publish.held_tick(store)
    if held:
        echo(
            f"held: the issue due at {held.astimezone(settings.timezone):%Y-%m-%d %H:%M %Z} "
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
