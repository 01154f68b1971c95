"""Paced sending in the loop: how many the next claim may take under [sending]'s caps, from
the delivery log's count of what was sent this clock hour and this day and of what every
process has in flight (never a count kept in memory, so a restart between windows goes on
correctly), and the warm-up plan's first day, kept in `meta` from the first paced send.

Two checks, one cheap and one exact. `allowance` before a claim sizes the batch and tells
when the send must stop (and until when); `windows` go with the claim, which cuts the batch
again inside its transaction (`store.deliveries.claim`), so several workers on one database
never pass a cap together, each racing the other by a batch."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, time

from newsletter.delivery.log import PaceLog
from newsletter.delivery.policy import DeliveryPolicy
from newsletter.pacing import Allowance, Caps, Window, allowance, windows

# The start of the reason a pace leaves on the issue (pacing.Allowance.describe).
PACED = "paused until "


def is_pace_note(error: str | None) -> bool:
    """Whether an issue's last error is a pace's "paused until ..." (cleared when it goes on)."""
    return bool(error) and str(error).startswith(PACED) and " by the " in str(error)


class Pace:
    """The caps of one send, checked before each claim and handed to it."""

    def __init__(self, log: PaceLog, policy: DeliveryPolicy, clock: Callable[[], float]) -> None:
        self.log, self.policy, self.clock = log, policy, clock

    @property
    def limited(self) -> bool:
        return self.policy.pace.limited

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _caps(self, now: datetime) -> Caps:
        """The caps with the warm-up's day 1 (today, the first time a paced send asks)."""
        caps = self.policy.pace
        if caps.warmup:
            start = self.log.warmup_start()
            if start is None:  # the first paced send: day 1 of the plan is today
                start = now.astimezone(self.policy.zone).date()
                self.log.start_warmup(start)
            caps = dataclasses.replace(caps, warmup_start=start)
        return caps

    def windows(self) -> tuple[Window, ...]:
        """The caps as the claim counts them, at the clock's now."""
        now = self.now()
        return windows(self._caps(now), now=now, zone=self.policy.zone)

    def allowance(self, claiming: int = 0) -> Allowance:
        """How many may go now: the caps less what was sent in the window, what every
        process has in flight, and `claiming` (this send's claims not yet committed)."""
        now = self.now()
        zone = self.policy.zone
        local = now.astimezone(zone)
        caps = self._caps(now)
        hour = local.replace(minute=0, second=0, microsecond=0)
        midnight = datetime.combine(local.date(), time.min, zone)
        busy = self.log.in_flight_count() + claiming
        this_hour = self.log.sent_since(hour) if caps.max_per_hour else 0
        today = self.log.sent_since(midnight) if (caps.max_per_day or caps.warmup) else 0
        return allowance(
            caps, now=now, zone=zone, sent_this_hour=this_hour + busy, sent_today=today + busy
        )
