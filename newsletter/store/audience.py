"""Who receives an issue, as SQL on `subscribers`: `receiving` (active, not paused: the rule
every plan, claim and audience count keeps)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_

from newsletter.records import SubscriberStatus
from newsletter.store.schema import subscribers


def receiving(now: datetime) -> ColumnElement[bool]:
    """Who gets an issue at all: active, and not paused (a pause ends by itself). Planning
    (`Deliveries.plan`), each claim and every audience count add a segment's clause to it."""
    return and_(
        subscribers.c.status == SubscriberStatus.ACTIVE,
        or_(subscribers.c.paused_until.is_(None), subscribers.c.paused_until <= now),
    )
