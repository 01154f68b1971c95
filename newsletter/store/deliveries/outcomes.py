"""Recording a claimed batch's outcome: sent (one id or one per recipient), failed, deferred or
uncertain recipients, a batch released, failed or uncertain."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, bindparam, func, select, update

from newsletter.records import Batch, utcnow
from newsletter.store.deliveries.rows import FAILED, IN_FLIGHT, PENDING, RELEASED, SENT, LogPart
from newsletter.store.schema import UTCDateTime, deliveries, delivery_batches, delivery_plans

_B = delivery_batches.c
_D = deliveries.c
_P = delivery_plans.c
_NOW = bindparam("now", type_=UTCDateTime())
_IN_FLIGHT_BATCH = and_(
    _B.issue_id == bindparam("issue"), _B.number == bindparam("batch_no"), _B.state == IN_FLIGHT
)
_LISTED = select(_B.listed).where(_IN_FLIGHT_BATCH)
_SENT_WITH_ONE_ID = (
    update(delivery_batches)
    .where(_IN_FLIGHT_BATCH, _B.listed.is_(False))
    .values(state=SENT, message_id=bindparam("mid"), error=None, updated_at=_NOW)
)
_OWN_ROWS = select(_D.subscriber_id).where(
    _D.issue_id == bindparam("issue"),
    _D.subscriber_id.between(bindparam("first"), bindparam("last")),
    _D.batch == bindparam("number"),
)


class Outcomes(LogPart):
    def _move(self, conn: Connection, batch: Batch, values: dict[str, Any]) -> bool | None:
        """Move an in-flight batch row; its `listed` flag, or None when it was not in flight."""
        return conn.execute(
            update(delivery_batches)
            .where(
                _B.issue_id == batch.issue_id,
                _B.number == batch.number,
                _B.state == IN_FLIGHT,
            )
            .values(updated_at=utcnow(), **values)
            .returning(_B.listed)
        ).scalar()

    @staticmethod
    def _members(batch: Batch) -> ColumnElement[bool]:
        """The exception rows a listed batch is made of, still in flight."""
        return and_(_D.issue_id == batch.issue_id, _D.batch == batch.number, _D.state == IN_FLIGHT)

    def _own_rows(self, conn: Connection, batch: Batch) -> set[int]:
        """Recipients of a range batch that already have a row of their own (refused ones)."""
        return set(
            conn.scalars(
                _OWN_ROWS,
                {
                    "issue": batch.issue_id,
                    "first": batch.first_id,
                    "last": batch.last_id,
                    "number": batch.number,
                },
            )
        )

    def mark_sent(self, batch: Batch, message_ids: dict[int, str] | str) -> int:
        """Record the provider's acceptance: one id for the whole batch (SendGrid: the batch
        row only) or one per subscriber (SMTP, the outbox: the batch sent, and each id on a
        row of its own, since it answers for that recipient alone)."""
        now = utcnow()
        with self._store.transaction() as conn:
            key = {"issue": batch.issue_id, "batch_no": batch.number}
            if isinstance(message_ids, str):
                # The common answer (SendGrid: one id for a range batch): one statement.
                one = conn.execute(_SENT_WITH_ONE_ID, {**key, "mid": message_ids, "now": now})
                if one.rowcount:
                    own = self._own_rows(conn, batch)
                    return len(batch.recipients) - len(own.intersection(batch.recipients.ids))
            ids = set(batch.recipients.ids)
            listed = conn.scalar(_LISTED, key)
            if listed is None:
                return 0
            if listed:
                if isinstance(message_ids, str):
                    moved = conn.execute(
                        update(deliveries)
                        .where(self._members(batch))
                        .values(state=SENT, message_id=message_ids, error=None, updated_at=now)
                    ).rowcount
                else:
                    moved = 0
                    for sid, mid in message_ids.items():
                        moved += conn.execute(
                            update(deliveries)
                            .where(self._members(batch), _D.subscriber_id == sid)
                            .values(state=SENT, message_id=mid, error=None, updated_at=now)
                        ).rowcount
                left = conn.scalar(
                    select(func.count()).select_from(deliveries).where(self._members(batch))
                )
                if not left:
                    self._move(conn, batch, {"state": SENT})
                return moved
            if isinstance(message_ids, str):
                return 0  # not reached: the update above took an in-flight range batch
            own = self._own_rows(conn, batch)
            named = {sid: mid for sid, mid in message_ids.items() if sid in ids and sid not in own}
            distinct = set(named.values())
            if ids - own <= set(named):
                self._move(
                    conn,
                    batch,
                    {"state": SENT, "message_id": distinct.pop() if len(distinct) == 1 else None},
                )
            if named and (len(distinct) > 1 or not ids - own <= set(named)):
                # Each recipient's own id (a mail server's queue id, an outbox file's
                # Message-ID) is an answer of its own: kept on rows of their own.
                self._upsert(
                    conn,
                    [
                        self._row(batch, sid, SENT, now, message_id=mid)
                        for sid, mid in named.items()
                    ],
                )
            return len(named)

    def fail(self, batch: Batch, reasons: dict[int, str]) -> int:
        """Mark some recipients of an in-flight batch failed for good (the provider refuses
        them): rows of their own, the rest of the batch goes on."""
        return self._each(batch, FAILED, reasons, retryable=False)

    def mark_each(self, batch: Batch, state: str, reasons: dict[int, str]) -> int:
        """Move some recipients of an in-flight batch to `state`, each with its own reason: a
        provider answering per recipient (SMTP) defers some (back to pending: claimed alone
        later) and loses the answer for others (uncertain) while the rest of the batch went
        out. Rows of their own, naming the batch."""
        return self._each(batch, state, reasons)

    def _each(self, batch: Batch, state: str, reasons: dict[int, str], **extra: Any) -> int:
        """Exception rows in `state` for the batch's recipients named in `reasons`."""
        if not reasons:
            return 0
        ids = set(batch.recipients.ids)
        reasons = {sid: why for sid, why in reasons.items() if sid in ids}
        if not reasons:
            return 0
        now = utcnow()
        with self._store.transaction() as conn:
            self._upsert(
                conn,
                [
                    self._row(batch, sid, state, now, error=why, **extra)
                    for sid, why in reasons.items()
                ],
            )
        return len(reasons)

    def release(self, batch: Batch, error: str | None = None) -> int:
        """Put an in-flight batch back: the provider surely did not take it (a clear error
        answer), so its recipients are claimed again later."""
        with self._store.transaction() as conn:
            listed = self._move(conn, batch, {"state": RELEASED, "error": error, "worker": None})
            if listed:
                conn.execute(
                    update(deliveries)
                    .where(self._members(batch))
                    .values(state=PENDING, batch=None, worker=None, error=error)
                )
        return len(batch.recipients) if listed is not None else 0

    def mark(
        self, batch: Batch, state: str, error: str | None = None, retryable: bool | None = None
    ) -> int:
        """Move an in-flight batch to failed or uncertain, keeping the reason."""
        values = {"state": state, "error": error, "retryable": retryable}
        with self._store.transaction() as conn:
            listed = self._move(conn, batch, values)
            if listed:
                conn.execute(
                    update(deliveries)
                    .where(self._members(batch))
                    .values(updated_at=utcnow(), **values)
                )
        return len(batch.recipients) if listed is not None else 0
