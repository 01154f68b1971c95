"""Webhook idempotency: each provider event is acted on once, however often it is delivered."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from newsletter.records import utcnow
from newsletter.store.schema import webhook_events

if TYPE_CHECKING:
    from newsletter.store import Store


class Events:
    def __init__(self, store: Store) -> None:
        self._store = store

    # -- webhook idempotency ---------------------------------------------------------------
    def first_time(self, event_id: str) -> bool:
        """True the first time an event id is seen; redelivered events return False."""
        with self._store.transaction() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(webhook_events).values(event_id=event_id, received_at=utcnow())
                    )
            except IntegrityError:
                return False
            return True
