"""The states every layer shares, as `StrEnum`s whose values are the strings stored in the
database (a member compares and hashes equal to its string, so the schema and existing data
do not change), and the one clock's aware now."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from newsletter import clock


class DeliveryState(StrEnum):
    """One (issue, subscriber) row of the delivery log: pending -> in_flight -> sent | failed
    | uncertain; skipped when the subscriber left before their batch went out."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    SKIPPED = "skipped"


class BatchState(StrEnum):
    """One batch of the delivery log (a claim of an id range of the issue's audience): in
    flight while its request may be out, then sent, failed or uncertain; released when the
    provider surely did not take it, so its range is claimed again."""

    IN_FLIGHT = "in_flight"
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    RELEASED = "released"


class SubscriberStatus(StrEnum):
    """Only `active` subscribers get issues; the suppressed ones never again by themselves."""

    ACTIVE = "active"
    UNCONFIRMED = "unconfirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


SUPPRESSED = (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)


class UnsubscribeReason(StrEnum):
    """The one optional question after an unsubscribe; `other` comes with the reader's words."""

    TOO_FREQUENT = "too_frequent"
    NOT_RELEVANT = "not_relevant"
    SPOILERS = "spoilers"
    OTHER = "other"


# "Pause for 4 weeks" on the unsubscribe page: planning skips the reader until then.
PAUSE_LENGTH = timedelta(weeks=4)


class IssueStatus(StrEnum):
    """With `[issue] approval = "required"` an issue is prepared as `awaiting_approval`
    (no delivery planned, not public) and becomes `approved`, then `sending` at its slot;
    or `rejected`, its articles held again in the queue."""

    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"


class ArticleStatus(StrEnum):
    """A held article failed its pre-send check: it keeps its place in the queue, but no tick
    takes it until the editor releases it (or `run --force` sends it)."""

    QUEUED = "queued"
    PUBLISHED = "published"
    REMOVED = "removed"
    HELD = "held"


def utcnow() -> datetime:
    """Now from the one clock of the project (`newsletter.clock`, which tests move): aware
    UTC (the store refuses naive times)."""
    return clock.now()
