"""The cadence and the coming ticks as a calendar, each with the articles it will carry
(`publish.queue_view`, as `queue list` shows them); the cadence form writes newsletter.toml
through `settings.update_cadence`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import get_args

from starlette.responses import Response

from newsletter import publish
from newsletter.exceptions import ConfigError
from newsletter.settings import Weekday, update_cadence
from newsletter.web.admin.base import Ctx

TICKS_SHOWN = 12
DAYS = get_args(Weekday)  # mon ... sun, as the settings file knows them


@dataclass(frozen=True)
class Tick:
    at: datetime
    articles: list[str]


@dataclass(frozen=True)
class Day:
    date: date
    ticks: list[Tick]
    today: bool


def calendar(ctx: Ctx) -> tuple[list[list[Day]], list[Tick]]:
    """Whole weeks (Monday first) from this week to the last coming tick, in the editor's
    zone, and the ticks themselves in order."""
    view = publish.queue_view(ctx.store, ctx.settings, lookahead=TICKS_SHOWN)
    carried: dict[datetime, list[str]] = {}
    for entry in view.entries:
        if entry.expected is not None:
            carried.setdefault(entry.expected, []).append(entry.title or entry.filename)
    ticks = [Tick(t, carried.get(t, [])) for t in view.ticks]
    zone = ctx.zone
    today = datetime.now(zone).date()
    last = max((t.at.astimezone(zone).date() for t in ticks), default=today)
    start = today - timedelta(days=today.weekday())
    by_day: dict[date, list[Tick]] = {}
    for tick in ticks:
        by_day.setdefault(tick.at.astimezone(zone).date(), []).append(tick)
    weeks: list[list[Day]] = []
    day = start
    while day <= last:
        weeks.append(
            [
                Day(day + timedelta(days=i), by_day.get(day + timedelta(days=i), []), False)
                for i in range(7)
            ]
        )
        day += timedelta(days=7)
    weeks = [[dataclasses.replace(d, today=d.date == today) for d in week] for week in weeks]
    return weeks, ticks


def schedule_page(ctx: Ctx, error: str = "", status_code: int = 200) -> Response:
    weeks, ticks = calendar(ctx)
    sched = ctx.settings.schedule
    return ctx.page(
        "admin/schedule.html",
        status_code,
        weeks=weeks,
        ticks=ticks,
        days=DAYS,
        chosen=set(sched.days),
        at=sched.at.strftime("%H:%M"),
        per_issue=sched.articles_per_issue,
        newsletter_zone=ctx.settings.timezone.key,
        error=error,
    )


def save_cadence(ctx: Ctx) -> Response:
    request_days = [d for d in DAYS if ctx.form.get(f"day_{d}")]
    per_issue = ctx.form.get("articles_per_issue", "1")
    try:
        schedule = update_cadence(
            ctx.settings.root,
            request_days,
            ctx.form.get("time", "").strip(),
            # The schema bounds the number; a string of thousands of digits is not parsed.
            int(per_issue) if per_issue.strip().isdigit() and len(per_issue) <= 100 else -1,
        )
    except ConfigError as exc:
        return schedule_page(ctx, str(exc), 400)
    # Only the cadence changes here; the rest (and any environment overrides) stay.
    ctx.web.settings = dataclasses.replace(ctx.settings, schedule=schedule)
    return ctx.redirect(
        "/admin/schedule",
        "Saved the cadence to newsletter.toml; a running scheduler takes it within a heartbeat.",
    )


def schedule_endpoint(ctx: Ctx) -> Response:
    return save_cadence(ctx) if ctx.request.method == "POST" else schedule_page(ctx)
