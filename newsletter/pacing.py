"""Paced sending, the arithmetic only: how many messages may go now under an hourly cap, a
daily cap and a warm-up plan for a new sending domain, and when the next window opens.

Pure: it reads no clock (the caller passes `now`, aware), no database (the caller passes the
sends recorded in the current hour and day) and no settings file (`Caps.parse` takes the
values). `newsletter.delivery.pace` calls it before each claim, with the counts from the
delivery log.

Windows are clock hours and calendar days in `zone` (the newsletter's): the hourly count is
of sends since hh:00, the daily one of sends since midnight. A warm-up plan
`"50,100,500,1000,5000"` caps day 1 (the day of `warmup_start`, today while it is None: the
first paced send starts the plan) at 50, day 2 at 100 and so on; after its last day only
`max_per_day` applies. 0 means no limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from newsletter.exceptions import ConfigError

HOURLY, DAILY, WARMUP = "hourly cap", "daily cap", "warm-up"


@dataclass(frozen=True, kw_only=True)
class Caps:
    """The limits: 0 is no limit; `warmup` the daily caps from `warmup_start` on."""

    max_per_hour: int
    max_per_day: int
    warmup: tuple[int, ...]
    warmup_start: date | None

    @property
    def limited(self) -> bool:
        return bool(self.max_per_hour or self.max_per_day or self.warmup)

    @classmethod
    def parse(
        cls,
        *,
        max_per_hour: int = 0,
        max_per_day: int = 0,
        warmup: str = "",
        warmup_start: date | None = None,
        source: str = "[sending]",
    ) -> Caps:
        """From the settings' values; ConfigError naming the key for a wrong one."""
        for key, value in (("max_per_hour", max_per_hour), ("max_per_day", max_per_day)):
            if value < 0:
                raise ConfigError(f"{source} {key}: must be 0 (no limit) or more, got {value}")
        plan: list[int] = []
        for n, item in enumerate((p.strip() for p in warmup.split(",")) if warmup.strip() else ()):
            if not item.isdigit() or int(item) == 0:
                raise ConfigError(
                    f"{source} warmup: item {n + 1} ({item!r}) is not a positive whole number "
                    '(e.g. "50,100,500,1000,5000")'
                )
            plan.append(int(item))
        return cls(
            max_per_hour=max_per_hour,
            max_per_day=max_per_day,
            warmup=tuple(plan),
            warmup_start=warmup_start,
        )


@dataclass(frozen=True, kw_only=True)
class Window:
    """One cap as the claim counts it, inside its transaction: at most `limit` sends since
    `since` (the hour's or the day's start), every process's batches in flight included."""

    since: datetime
    limit: int


def windows(caps: Caps, *, now: datetime, zone: ZoneInfo) -> tuple[Window, ...]:
    """The caps that hold at `now`: the clock hour's and the calendar day's (the smaller of
    `max_per_day` and the warm-up's cap for today), those that are not 0."""
    local = now.astimezone(zone)
    hour = local.replace(minute=0, second=0, microsecond=0)
    midnight = datetime.combine(local.date(), datetime.min.time(), zone)
    day_cap = _min_cap(caps.max_per_day, warmup_cap(caps, local.date()))
    found = [Window(since=hour, limit=caps.max_per_hour)] if caps.max_per_hour else []
    return (*found, Window(since=midnight, limit=day_cap)) if day_cap else tuple(found)


@dataclass(frozen=True, kw_only=True)
class Allowance:
    """How many may go now (None: no limit at all), and if that is 0, when the window that
    allows more opens and which limit holds the send back until then."""

    now: int | None
    next_window: datetime | None = None
    held_by: str = ""

    def describe(self, pending: int, zone: ZoneInfo) -> str:
        """What `run` and the workspace say: "paused until 14:00 by the hourly cap, 12,000
        left" (the date too when the window opens on another day)."""
        if self.now != 0 or self.next_window is None:
            return f"sending, {pending:,} left"
        local = self.next_window.astimezone(zone)
        when = f"{local:%H:%M}" if self.held_by == HOURLY else f"{local:%a %d %b %H:%M}"
        return f"paused until {when} by the {self.held_by}, {pending:,} left"


def warmup_cap(caps: Caps, day: date) -> int:
    """The warm-up plan's cap for `day` (0: no warm-up cap that day)."""
    if not caps.warmup:
        return 0
    if caps.warmup_start is None:
        return caps.warmup[0]  # not started: the first paced send is day 1
    index = (day - caps.warmup_start).days
    if index < 0:
        return caps.warmup[0]  # a start set in the future: the first day's cap meanwhile
    return caps.warmup[index] if index < len(caps.warmup) else 0


def _min_cap(*caps: int) -> int:
    limits = [c for c in caps if c > 0]
    return min(limits) if limits else 0


def allowance(
    caps: Caps, *, now: datetime, zone: ZoneInfo, sent_this_hour: int, sent_today: int
) -> Allowance:
    """How many may go at `now`, given the sends recorded since the hour and the day began."""
    if now.tzinfo is None:
        raise ValueError("pacing needs an aware time")
    local = now.astimezone(zone)
    day_cap = _min_cap(caps.max_per_day, warmup_cap(caps, local.date()))
    day_left = None if day_cap == 0 else max(day_cap - sent_today, 0)
    hour_left = None if caps.max_per_hour == 0 else max(caps.max_per_hour - sent_this_hour, 0)
    lefts = [x for x in (hour_left, day_left) if x is not None]
    if not lefts:
        return Allowance(now=None)
    may = min(lefts)
    if may > 0:
        return Allowance(now=may)
    if day_left == 0:
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), zone)
        held = WARMUP if day_cap == warmup_cap(caps, local.date()) and caps.warmup else DAILY
        return Allowance(now=0, next_window=midnight, held_by=held)
    next_hour = local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return Allowance(now=0, next_window=next_hour, held_by=HOURLY)
