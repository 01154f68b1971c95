"""Cadence maths: the editors' cadence as APScheduler's cron trigger, the ticks it gives, and
the editor's local times read as aware datetimes. No database, no files."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from newsletter.exceptions import NewsletterError
from newsletter.settings import Settings


def cadence_trigger(settings: Settings) -> CronTrigger:
    """The editors' cadence (e.g. Tuesdays and Fridays at 09:00 Europe/Paris) as a trigger."""
    sched = settings.schedule
    return CronTrigger(
        day_of_week=",".join(sched.days),
        hour=sched.at.hour,
        minute=sched.at.minute,
        timezone=settings.timezone,
    )


def next_ticks(settings: Settings, after: datetime, count: int) -> list[datetime]:
    trigger = cadence_trigger(settings)
    ticks: list[datetime] = []
    previous = None
    now = after
    for _ in range(count):
        tick = trigger.get_next_fire_time(previous, now)
        if tick is None:
            break
        ticks.append(tick)
        previous, now = tick, tick + timedelta(seconds=1)
    return ticks


def latest_tick(settings: Settings, now: datetime) -> datetime | None:
    """The most recent cadence time at or before `now`."""
    ticks = next_ticks(settings, now - timedelta(days=8), 8 * 7 + 2)
    past = [t for t in ticks if t <= now]
    return past[-1] if past else None


def parse_local_time(value: str | datetime | date, tz: ZoneInfo) -> datetime:
    """'2026-12-01 09:00' in the editor's zone -> aware datetime (stored as UTC)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise NewsletterError(
                f"{value!r} is not a date and time; use e.g. '2026-12-01 09:00'"
            ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)
