"""Reader-time delivery's pure parts: a reader's time zone held to the IANA names (the CSV
`timezone` column and the sign-up form), the `local HH:MM` of `[issue] deliver_at`, and an
audience grouped by the UTC instant its readers' next local HH:MM falls on, so an issue goes
out in as few waves as the zones need (zones sharing an offset share a wave). Standard
library only; sending the waves is the delivery layer's job."""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

_LOCAL = re.compile(r"^\s*local\s+([01]?\d|2[0-3]):([0-5]\d)\s*$", re.IGNORECASE)
MAX_ZONE = 64  # the column's width


@functools.cache
def _zones() -> dict[str, str]:
    """Every IANA name the system (or the tzdata package) knows, by its lower case."""
    return {name.lower(): name for name in available_timezones()}


def zone_name(value: str) -> str:
    """The IANA name for `value` ("" stays "": the newsletter's zone), its case as IANA
    writes it; ValueError naming the value for anything else."""
    value = value.strip()
    if not value:
        return ""
    found = _zones().get(value.lower()) if len(value) <= MAX_ZONE else None
    if found is None:
        shown = value if len(value) <= MAX_ZONE else value[:MAX_ZONE] + "…"
        raise ValueError(f"unknown time zone {shown!r}: expected an IANA name such as Europe/Paris")
    return found


def parse_deliver_at(value: str) -> time:
    """`local HH:MM` (each reader's own clock) as a time of day."""
    match = _LOCAL.match(value)
    if match is None:
        raise ValueError(f"{value!r}: expected 'local HH:MM', e.g. 'local 08:00'")
    return time(int(match.group(1)), int(match.group(2)))


def next_local(after: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The first moment at or after `after` when the clock in `zone` shows `at` (a time a
    DST change skips is read as the zone's rules read it), in UTC."""
    local = after.astimezone(zone)
    for days in range(3):
        day = local.date() + timedelta(days=days)
        candidate = datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
        if candidate >= after:
            return candidate
    raise AssertionError("unreachable: a local time comes back within two days")


@dataclass(frozen=True, kw_only=True)
class ReaderTime:
    """`[issue] deliver_at = "local HH:MM"`: each reader's copy at `at` on their own clock,
    `zone` (the newsletter's) for readers without one."""

    at: time
    zone: ZoneInfo


@dataclass(frozen=True, kw_only=True)
class Wave:
    """The readers whose local time comes at one UTC instant."""

    at: datetime
    zones: tuple[str, ...]  # the zones in it ("" is the newsletter's own)
    subscriber_ids: tuple[int, ...]


def waves(
    audience: Iterable[tuple[int, str]], after: datetime, at: time, default: ZoneInfo
) -> list[Wave]:
    """Group (subscriber id, zone name) pairs by the UTC instant of their next local `at`
    at or after `after`; readers without a zone (or with one no longer known) read the
    newsletter's `default`. Waves in time order, ids in the order given."""
    if after.tzinfo is None:
        raise ValueError("an aware time is needed (the store keeps UTC)")
    instant: dict[str, datetime] = {}
    grouped: dict[datetime, list[int]] = defaultdict(list)
    zones: dict[datetime, set[str]] = defaultdict(set)
    for subscriber_id, name in audience:
        if name not in instant:
            try:
                zone = ZoneInfo(zone_name(name)) if name else default
            except ValueError:
                zone = default
            instant[name] = next_local(after, at, zone)
        moment = instant[name]
        grouped[moment].append(subscriber_id)
        zones[moment].add(name)
    return [
        Wave(at=moment, zones=tuple(sorted(zones[moment])), subscriber_ids=tuple(grouped[moment]))
        for moment in sorted(grouped)
    ]
