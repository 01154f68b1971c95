"""What a stopped sender left: the batches in flight (who claimed them, when), made uncertain
after a crash, and whether anything of an issue is left to send."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, update

from newsletter.records import utcnow
from newsletter.store.deliveries.rows import IN_FLIGHT, PENDING, RELEASED, UNCERTAIN, LogPart
from newsletter.store.schema import deliveries, delivery_batches, delivery_plans

_B = delivery_batches.c
_D = deliveries.c
_P = delivery_plans.c


class Stopped(LogPart):
    def in_flight_claims(self, issue_id: int) -> list[tuple[str | None, datetime]]:
        """(worker, oldest claim time) for each sender with batches in flight for an issue."""
        with self._store.transaction(write=False) as conn:
            return [
                (worker, oldest)
                for worker, oldest in conn.execute(
                    select(_B.worker, func.min(_B.claimed_at))
                    .where(_B.issue_id == issue_id, _B.state == IN_FLIGHT)
                    .group_by(_B.worker)
                )
            ]

    def in_flight_to_uncertain(
        self,
        issue_id: int,
        older_than: datetime | None = None,
        worker: str | None = None,
    ) -> int:
        """After a crash: batches that were in flight may or may not have gone out."""
        where = [_B.issue_id == issue_id, _B.state == IN_FLIGHT]
        if older_than is not None:
            where.append(_B.claimed_at < older_than)
        if worker is not None:
            where.append(_B.worker == worker)
        values = {
            "state": UNCERTAIN,
            "updated_at": utcnow(),
            "error": "in flight when its sender stopped: it may or may not have gone out",
        }
        with self._store.transaction() as conn:
            moved = conn.execute(
                update(delivery_batches)
                .where(*where)
                .values(values)
                .returning(_B.number, _B.listed, _B.recipients)
            ).all()
            total = sum(n for _, listed, n in moved if not listed)
            numbers = [number for number, listed, _ in moved if listed]
            if numbers:
                total += conn.execute(
                    update(deliveries)
                    .where(_D.issue_id == issue_id, _D.batch.in_(numbers), _D.state == IN_FLIGHT)
                    .values(values)
                ).rowcount
        return total

    @staticmethod
    def left_to_send(issue_id: int) -> ColumnElement[bool]:
        """True while some recipient of the issue is pending or in flight: audience not yet
        claimed, a batch in flight or released, a recipient waiting alone. A clause, so the
        issue's status changes in the same statement (`Issues.finish_sending`)."""
        return or_(
            exists().where(_P.issue_id == issue_id, _P.claimed_to < _P.last_id),
            exists().where(
                _B.issue_id == issue_id,
                or_(_B.state == IN_FLIGHT, and_(_B.state == RELEASED, _B.listed.is_(False))),
            ),
            exists().where(_D.issue_id == issue_id, _D.state.in_((PENDING, IN_FLIGHT))),
        )
