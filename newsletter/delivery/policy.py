"""How the sender treats batches ([delivery]) and what a send reports back."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from newsletter.pacing import Caps
from newsletter.records import DeliveryState, IssueStatus
from newsletter.settings import Settings


@dataclass(frozen=True, kw_only=True)
class DeliveryPolicy:
    """How the sender treats batches, from [delivery] (whose schema holds the defaults:
    none here), and its pace from [sending] (`pace`, the warm-up's start read at each check;
    windows in `zone`, the newsletter's). Backoff in seconds."""

    batch_size: int
    max_retries: int
    max_failed_batches: int
    backoff_base: float
    backoff_cap: float
    resend_uncertain: bool
    concurrency: int
    claim_timeout: timedelta
    pace: Caps
    zone: ZoneInfo

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        knobs = settings.delivery
        return cls(
            batch_size=knobs.batch_size,
            max_retries=knobs.max_retries,
            max_failed_batches=knobs.max_failed_batches,
            backoff_base=knobs.backoff_base.total_seconds(),
            backoff_cap=knobs.backoff_cap.total_seconds(),
            resend_uncertain=knobs.resend_uncertain,
            concurrency=knobs.concurrency,
            claim_timeout=knobs.claim_timeout,
            pace=Caps(
                max_per_hour=settings.sending.max_per_hour,
                max_per_day=settings.sending.max_per_day,
                warmup=settings.sending.warmup,
                warmup_start=None,
            ),
            zone=settings.timezone,
        )


def backoff_delay(attempt: int, policy: DeliveryPolicy) -> float:
    """Capped exponential backoff with full jitter."""
    return random.uniform(0, min(policy.backoff_cap, policy.backoff_base * 2**attempt))


@dataclass
class SendReport:
    issue_id: int
    status: str
    counts: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    last_error: str | None = None
    delivered: int = 0  # recipients the provider accepted during this send
    stopped: bool = False  # a stop request (a signal) ended it: the rest stays pending
    # A cap of [sending] ended it, the rest pending: when the next window opens.
    paced_until: datetime | None = None
    # Reader time: still sending, the rest waiting for the wave due at this UTC instant.
    next_wave: datetime | None = None

    @property
    def tried_in_vain(self) -> bool:
        """Batches went out during this send and not one recipient was accepted."""
        return self.batches > 0 and self.delivered == 0

    @property
    def ok(self) -> bool:
        return (
            (self.status == IssueStatus.SENT or self.next_wave is not None)
            and not self.counts.get(DeliveryState.FAILED)
            and not self.counts.get(DeliveryState.UNCERTAIN)
        )
