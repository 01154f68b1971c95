"""The delivery log as it was before migration 0014, kept unchanged (tests/test_migrate_batches.py
builds a database with it, then migrates it): one row per (issue, subscriber) whose `state`
is the truth about who has the issue. Claims take the next pending rows atomically (BEGIN IMMEDIATE on SQLite, FOR
UPDATE SKIP LOCKED on PostgreSQL), so concurrent senders never share a subscriber."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql

from newsletter.records import (
    Batch,
    DeliveryRow,
    DeliveryState,
    Recipient,
    SubscriberStatus,
    utcnow,
)
from newsletter.store.schema import UTCDateTime, deliveries, issues, subscribers

if TYPE_CHECKING:
    from newsletter.store import Store

PENDING, IN_FLIGHT, SENT, FAILED, UNCERTAIN, SKIPPED = DeliveryState
ACTIVE = SubscriberStatus.ACTIVE

# A sender runs these once per batch: built once, they skip SQLAlchemy's statement building.
_NEXT_BATCH = (
    update(issues)
    .where(issues.c.id == bindparam("issue"))
    .values(next_batch=issues.c.next_batch + 1)
    .returning(issues.c.next_batch)
)
_PENDING_WITH_WHO = (
    select(
        deliveries.c.subscriber_id,
        subscribers.c.email,
        subscribers.c.name,
        subscribers.c.token,
        subscribers.c.status,
    )
    .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
    .where(
        deliveries.c.issue_id == bindparam("issue"),
        deliveries.c.state == PENDING,
        deliveries.c.subscriber_id > bindparam("after"),
    )
    .order_by(deliveries.c.subscriber_id)
    .limit(bindparam("size"))
)
_CLAIM_RANGE = (
    update(deliveries)
    .where(
        deliveries.c.issue_id == bindparam("issue"),
        deliveries.c.state == PENDING,
        deliveries.c.subscriber_id.between(bindparam("first"), bindparam("last")),
    )
    .values(
        state=IN_FLIGHT,
        batch=bindparam("number"),
        worker=bindparam("worker"),
        claimed_at=bindparam("now", type_=UTCDateTime()),
        updated_at=bindparam("now", type_=UTCDateTime()),
        attempts=deliveries.c.attempts + 1,
    )
)


class Deliveries:
    def __init__(self, store: Store) -> None:
        self._store = store
        ids = (
            "IN (SELECT value FROM json_each(:ids))"
            if store.is_sqlite
            else "= ANY(CAST(:ids AS integer[]))"
        )
        self._confirm = text(
            "UPDATE deliveries SET state = 'sent', updated_at = :now "
            f"WHERE issue_id = :issue_id AND state = 'uncertain' AND subscriber_id {ids}"
        ).bindparams(bindparam("now", type_=UTCDateTime))

    def claim(self, issue_id: int, size: int, worker: str = "main", after: int = 0) -> Batch | None:
        """Take the next `size` pending rows (of subscribers after `after`), mark them in flight
        under a new batch number and return who they are. Rows of subscribers who left since
        planning become `skipped`. Senders pass the last id they claimed as `after`: on
        PostgreSQL the index still holds the old versions of rows already claimed, and
        starting past them keeps each claim from wading through them."""
        now = utcnow()
        claimed = {
            "state": IN_FLIGHT,
            "worker": worker,
            "claimed_at": now,
            "updated_at": now,
            "attempts": deliveries.c.attempts + 1,
        }
        with self._store.transaction() as conn:
            number = conn.execute(_NEXT_BATCH, {"issue": issue_id}).scalar_one()
            claimed["batch"] = number
            pending = deliveries.c.issue_id == issue_id, deliveries.c.state == PENDING
            if self._store.is_sqlite:
                # The transaction holds SQLite's write lock (BEGIN IMMEDIATE), so the first
                # `size` pending rows, read with who they are in one join, are exactly the
                # pending rows of their id range: one UPDATE of that range claims them.
                rows = conn.execute(
                    _PENDING_WITH_WHO, {"issue": issue_id, "after": after, "size": size}
                ).all()
                if not rows:
                    return None
                first, last = rows[0][0], rows[-1][0]
                conn.execute(
                    _CLAIM_RANGE,
                    {
                        "issue": issue_id,
                        "first": first,
                        "last": last,
                        "number": number,
                        "worker": worker,
                        "now": now,
                    },
                )
            else:
                # Concurrent claimers skip each other's locked rows. The ids travel as one
                # array: an IN list of a thousand parameters is slow to plan, and the
                # one-statement form UPDATE ... IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)
                # may re-run the subquery per row and claim far more than n rows. The UPDATE
                # joins the subscribers and returns who they are.
                ids = list(
                    conn.scalars(
                        select(deliveries.c.subscriber_id)
                        .where(*pending, deliveries.c.subscriber_id > after)
                        .order_by(deliveries.c.subscriber_id)
                        .limit(size)
                        .with_for_update(skip_locked=True)
                    )
                )
                if not ids:
                    return None
                rows = sorted(
                    conn.execute(
                        update(deliveries)
                        .where(
                            deliveries.c.issue_id == issue_id,
                            deliveries.c.subscriber_id
                            == func.any(bindparam("claimed", ids, type_=postgresql.ARRAY(Integer))),
                            subscribers.c.id == deliveries.c.subscriber_id,
                        )
                        .values(claimed)
                        .returning(
                            deliveries.c.subscriber_id,
                            subscribers.c.email,
                            subscribers.c.name,
                            subscribers.c.token,
                            subscribers.c.status,
                        )
                    ).all()
                )
                first, last = ids[0], ids[-1]
            recipients = []
            gone = []
            for sid, email, name, token, status in rows:
                if status == ACTIVE:
                    recipients.append(Recipient(sid, email, name, token))
                else:
                    gone.append(sid)
            if gone:  # unsubscribed or bounced since the issue was planned
                conn.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.issue_id == issue_id,
                        deliveries.c.state == IN_FLIGHT,
                        deliveries.c.subscriber_id.in_(gone),
                    )
                    .values(state=SKIPPED, error="subscriber no longer active")
                )
        return Batch(issue_id, number, tuple(recipients), first, last)

    @staticmethod
    def _in_flight(batch: Batch) -> ColumnElement[bool]:
        """The rows of a claimed batch. The id range keeps the index scan to this batch: on
        PostgreSQL the index still holds the old in-flight versions of every earlier batch."""
        return and_(
            deliveries.c.issue_id == batch.issue_id,
            deliveries.c.state == IN_FLIGHT,
            deliveries.c.subscriber_id.between(batch.first_id, batch.last_id),
            deliveries.c.batch == batch.number,
        )

    def mark_sent(self, batch: Batch, message_ids: dict[int, str] | str) -> int:
        """Record the provider's acceptance: one id for the whole batch or one per subscriber."""
        now = utcnow()
        base = update(deliveries).where(self._in_flight(batch))
        with self._store.transaction() as conn:
            if isinstance(message_ids, str):
                return conn.execute(
                    base.values(state=SENT, message_id=message_ids, updated_at=now, error=None)
                ).rowcount
            conn.execute(
                base.where(deliveries.c.subscriber_id == bindparam("sid")).values(
                    state=SENT, message_id=bindparam("mid"), updated_at=now, error=None
                ),
                [{"sid": sid, "mid": mid} for sid, mid in message_ids.items()],
            )
            return len(message_ids)

    def fail(self, batch: Batch, reasons: dict[int, str]) -> int:
        """Mark some rows of an in-flight batch failed for good (the provider refuses them)."""
        if not reasons:
            return 0
        with self._store.transaction() as conn:
            conn.execute(
                update(deliveries)
                .where(self._in_flight(batch), deliveries.c.subscriber_id == bindparam("sid"))
                .values(state=FAILED, error=bindparam("why"), retryable=False, updated_at=utcnow()),
                [{"sid": sid, "why": why} for sid, why in reasons.items()],
            )
        return len(reasons)

    def release(self, batch: Batch, error: str | None = None) -> int:
        """Put an in-flight batch back to pending: the provider surely did not take it (a
        clear error answer), so sending it again later is safe."""
        with self._store.transaction() as conn:
            return conn.execute(
                update(deliveries)
                .where(self._in_flight(batch))
                .values(state=PENDING, error=error, worker=None, updated_at=utcnow())
            ).rowcount

    def mark(
        self, batch: Batch, state: str, error: str | None = None, retryable: bool | None = None
    ) -> int:
        """Move an in-flight batch to failed or uncertain, keeping the reason."""
        with self._store.transaction() as conn:
            return conn.execute(
                update(deliveries)
                .where(self._in_flight(batch))
                .values(state=state, error=error, retryable=retryable, updated_at=utcnow())
            ).rowcount

    def in_flight_claims(self, issue_id: int) -> list[tuple[str | None, datetime]]:
        """(worker, oldest claim time) for each sender with rows in flight for an issue."""
        with self._store.transaction(write=False) as conn:
            return [
                (worker, oldest)
                for worker, oldest in conn.execute(
                    select(deliveries.c.worker, func.min(deliveries.c.claimed_at))
                    .where(deliveries.c.issue_id == issue_id, deliveries.c.state == IN_FLIGHT)
                    .group_by(deliveries.c.worker)
                )
            ]

    def in_flight_to_uncertain(
        self,
        issue_id: int,
        older_than: datetime | None = None,
        worker: str | None = None,
    ) -> int:
        """After a crash: batches that were in flight may or may not have gone out."""
        query = update(deliveries).where(
            deliveries.c.issue_id == issue_id, deliveries.c.state == IN_FLIGHT
        )
        if older_than is not None:
            query = query.where(deliveries.c.claimed_at < older_than)
        if worker is not None:
            query = query.where(deliveries.c.worker == worker)
        with self._store.transaction() as conn:
            return conn.execute(
                query.values(
                    state=UNCERTAIN,
                    updated_at=utcnow(),
                    error="in flight when its sender stopped: it may or may not have gone out",
                )
            ).rowcount

    def counts(self, issue_id: int) -> dict[str, int]:
        """How many rows of the issue are in each state (every state named, zeros too)."""
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(deliveries.c.state, func.count())
                .where(deliveries.c.issue_id == issue_id)
                .group_by(deliveries.c.state)
            )
            counts: dict[str, int] = {state: 0 for state in DeliveryState}
            counts.update({DeliveryState(state): n for state, n in rows})
        return counts

    def sent_since(self, since: datetime) -> int:
        """Deliveries the provider accepted since `since`, over every issue (the doctor's
        complaint rate is complaints over these)."""
        with self._store.transaction(write=False) as conn:
            return (
                conn.scalar(
                    select(func.count())
                    .select_from(deliveries)
                    .where(deliveries.c.state == SENT, deliveries.c.updated_at >= since)
                )
                or 0
            )

    def total(self, issue_id: int) -> int:
        """Deliveries planned for an issue (fixed once planned, but for removed subscribers)."""
        query = select(func.count()).select_from(deliveries)
        with self._store.transaction(write=False) as conn:
            return conn.scalar(query.where(deliveries.c.issue_id == issue_id)) or 0

    def counts_in_states(self, issue_id: int, states: Iterable[str]) -> dict[str, int]:
        """Rows per state for a few states (the workspace's finished issues): one index range
        per state, so the cost follows the rows in those states, not the size of the issue."""
        wanted = list(states)
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(deliveries.c.state, func.count())
                .where(deliveries.c.issue_id == issue_id, deliveries.c.state.in_(wanted))
                .group_by(deliveries.c.state)
            )
            found = {state: 0 for state in wanted}
            found.update({state: n for state, n in rows})
        return found

    def in_state(self, issue_id: int, state: str, limit: int | None = None) -> list[DeliveryRow]:
        """The issue's deliveries in `state` with their addresses, in subscriber order (the
        first `limit` of them when given)."""
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(
                    deliveries.c.subscriber_id,
                    subscribers.c.email,
                    deliveries.c.batch,
                    deliveries.c.worker,
                    deliveries.c.error,
                    deliveries.c.message_id,
                )
                .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                .where(deliveries.c.issue_id == issue_id, deliveries.c.state == state)
                .order_by(deliveries.c.subscriber_id)
                .limit(limit)
            )
            return [DeliveryRow(*r) for r in rows]

    def sent_by_worker(self, issue_id: int) -> dict[str, int]:
        """How many deliveries of an issue each sender recorded as sent."""
        with self._store.transaction(write=False) as conn:
            rows = conn.execute(
                select(deliveries.c.worker, func.count())
                .where(deliveries.c.issue_id == issue_id, deliveries.c.state == SENT)
                .group_by(deliveries.c.worker)
            )
            return {worker or "-": n for worker, n in rows}

    def sent_emails(self, issue_id: int) -> list[str]:
        with self._store.transaction(write=False) as conn:
            return list(
                conn.scalars(
                    select(subscribers.c.email)
                    .join(deliveries, deliveries.c.subscriber_id == subscribers.c.id)
                    .where(deliveries.c.issue_id == issue_id, deliveries.c.state == SENT)
                )
            )

    def settle(
        self,
        issue_id: int,
        from_state: str,
        to_state: str,
        subscriber_ids: Iterable[int] | None = None,
    ) -> int:
        """Editor's or provider's decision on rows (e.g. uncertain -> sent or -> pending)."""
        query = update(deliveries).where(
            deliveries.c.issue_id == issue_id, deliveries.c.state == from_state
        )
        if subscriber_ids is not None:
            query = query.where(deliveries.c.subscriber_id.in_(list(subscriber_ids)))
        values: dict[str, Any] = {"state": to_state, "updated_at": utcnow()}
        if to_state == PENDING:
            values.update(batch=None, worker=None)
        with self._store.transaction() as conn:
            return conn.execute(query.values(**values)).rowcount

    # -- the provider's word on uncertain rows (the event webhook, in its transaction) ------
    def confirm_uncertain(
        self, conn: Connection, pairs: set[tuple[int, int]], now: datetime
    ) -> int:
        """uncertain -> sent where the provider named this very issue and subscriber (a
        `processed`/`delivered` event): one statement per issue, the ids as one parameter
        (JSON on SQLite, an array on PostgreSQL), probing the (issue_id, state,
        subscriber_id) index."""
        by_issue: dict[int, list[int]] = {}
        for issue_id, subscriber_id in sorted(pairs):
            by_issue.setdefault(issue_id, []).append(subscriber_id)
        if not by_issue:
            return 0
        sqlite = self._store.is_sqlite
        return sum(
            conn.execute(
                self._confirm,
                {"issue_id": issue_id, "ids": json.dumps(ids) if sqlite else ids, "now": now},
            ).rowcount
            for issue_id, ids in by_issue.items()
        )

    # -- rows written inside another aggregate's transaction ------------------------------
    def plan(
        self,
        conn: Connection,
        issue_id: int,
        segment: str = "",
        *,
        reader_time: object = None,
        now: object = None,
    ) -> None:
        """One pending row per active subscriber for a new issue, in the transaction that
        creates it (`Issues.create_issue`; the legacy databases had no segments, so
        `segment`, today's call's segment, is always "" here)."""
        assert not segment and reader_time is None
        conn.execute(
            insert(deliveries).from_select(
                ["issue_id", "subscriber_id", "state", "attempts"],
                select(
                    literal(issue_id), subscribers.c.id, literal(str(PENDING)), literal(0)
                ).where(subscribers.c.status == ACTIVE),
            )
        )

    def forget_subscriber(self, conn: Connection, subscriber_id: int) -> None:
        """Delete a removed subscriber's rows, in the transaction that deletes them."""
        conn.execute(delete(deliveries).where(deliveries.c.subscriber_id == subscriber_id))
