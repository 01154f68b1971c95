"""Alerts already sent to the editors (`store.alerts`, table `alerts_sent`): claiming an
event's key before sending is what makes an alert go out once, however many schedulers or
servers notice the event."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from newsletter.records import utcnow
from newsletter.store.schema import alerts_sent

if TYPE_CHECKING:
    from newsletter.store import Store


class Alerts:
    def __init__(self, store: Store) -> None:
        self._store = store

    def claim(self, key: str) -> bool:
        """True the first time `key` is claimed: the caller then sends that alert, once."""
        with self._store.transaction() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(insert(alerts_sent).values(key=key[:200], sent_at=utcnow()))
            except IntegrityError:
                return False
            return True

    def release(self, key: str) -> None:
        """Forget a claimed alert whose sending failed, so the next wake-up tries again."""
        with self._store.transaction() as conn:
            conn.execute(delete(alerts_sent).where(alerts_sent.c.key == key[:200]))
