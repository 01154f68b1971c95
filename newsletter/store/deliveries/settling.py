"""Decisions on recipients after the send: the editor's or the provider's (settle, confirm by
event), and a removed subscriber forgotten."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, select, update

from newsletter.records import utcnow
from newsletter.store.audience import planned, receiving
from newsletter.store.deliveries.batches import PLAN, claim_range
from newsletter.store.deliveries.rows import (
    BATCH_COLUMNS,
    PENDING,
    RELEASED,
    SENT,
    UNCERTAIN,
    BatchRow,
    IssueLog,
    LogPart,
)
from newsletter.store.schema import deliveries, delivery_batches, delivery_plans, subscribers

_B = delivery_batches.c
_D = deliveries.c
_P = delivery_plans.c


class Settling(LogPart):
    def settle(
        self,
        issue_id: int,
        from_state: str,
        to_state: str,
        subscriber_ids: Iterable[int] | None = None,
    ) -> int:
        """Editor's or provider's decision on recipients (e.g. uncertain -> sent or -> pending):
        all of the issue's in `from_state`, or those of `subscriber_ids` that are."""
        with self._store.transaction() as conn:
            return self._settle(conn, issue_id, from_state, to_state, subscriber_ids, utcnow())

    def _settle(
        self,
        conn: Connection,
        issue_id: int,
        from_state: str,
        to_state: str,
        subscriber_ids: Iterable[int] | None,
        now: datetime,
    ) -> int:
        ids = None if subscriber_ids is None else sorted(set(subscriber_ids))
        log = self._log(conn, issue_id, ids)
        if log is None:
            return 0
        batch_state = RELEASED if to_state == PENDING else to_state
        reset = {"batch": None, "worker": None} if to_state == PENDING else {}
        own = [sid for sid, exc in log.exceptions.items() if exc.state == from_state]
        if own:
            conn.execute(
                update(deliveries)
                .where(_D.issue_id == issue_id, _D.subscriber_id.in_(own))
                .values(state=to_state, updated_at=now, **reset)
            )
        moved = len(own)
        if from_state == PENDING and ids is None:
            moved += self._settle_unclaimed(conn, issue_id, batch_state, now)
        singles: list[tuple[BatchRow, int]] = []
        if ids is None:
            whole = [b for b in log.ranges if b.member_state == from_state]
        else:
            whole, singles = self._whole_or_single(conn, issue_id, log, ids, from_state)
        for b in whole:
            conn.execute(
                update(delivery_batches)
                .where(_B.issue_id == issue_id, _B.number == b.number)
                .values(state=batch_state, updated_at=now, **({"worker": None} if reset else {}))
            )
            moved += b.recipients - self._own_count(conn, issue_id, b)
        if singles:
            self._upsert(
                conn,
                [_single_row(issue_id, b, sid, to_state, now, bool(reset)) for b, sid in singles],
            )
            moved += len(singles)
        return moved

    def _whole_or_single(
        self, conn: Connection, issue_id: int, log: IssueLog, ids: list[int], from_state: str
    ) -> tuple[list[BatchRow], list[tuple[BatchRow, int]]]:
        """Recipients who follow their batch: whole batches move when all of their recipients
        that follow them are named; otherwise the ones named get rows of their own."""
        wanted: dict[int, list[int]] = {}
        for sid in ids:
            base = log.base(sid)
            if sid not in log.exceptions and base and base.member_state == from_state:
                wanted.setdefault(base.number, []).append(sid)
        by_number = {b.number: b for b in log.ranges}
        whole: list[BatchRow] = []
        singles: list[tuple[BatchRow, int]] = []
        for number, sids in wanted.items():
            b = by_number[number]
            if len(sids) >= b.recipients - self._own_count(conn, issue_id, b):
                whole.append(b)
            else:
                singles.extend((b, sid) for sid in sids)
        return whole, singles

    def _settle_unclaimed(self, conn: Connection, issue_id: int, state: str, now: datetime) -> int:
        """The audience not yet claimed, claimed here in batches straight into `state` (an
        editor's or a fixture's decision on a whole issue: pending -> sent)."""
        moved = 0
        while True:
            plan = conn.execute(PLAN, {"issue": issue_id}).one()
            batch = claim_range(conn, issue_id, plan, 1000, "settled", now)
            if batch is None:
                return moved
            conn.execute(
                update(delivery_batches)
                .where(_B.issue_id == issue_id, _B.number == batch.number)
                .values(state=state, updated_at=now)
            )
            moved += len(batch.recipients)

    # -- the provider's word on uncertain recipients (the event webhook, in its transaction)
    def confirm_uncertain(
        self, conn: Connection, pairs: set[tuple[int, int]], now: datetime
    ) -> int:
        """uncertain -> sent where the provider named this very issue and subscriber (a
        `processed`/`delivered` event): the issue's batches and the named recipients' rows
        read once per issue."""
        by_issue: dict[int, list[int]] = {}
        for issue_id, subscriber_id in sorted(pairs):
            by_issue.setdefault(issue_id, []).append(subscriber_id)
        return sum(
            self._settle(conn, issue_id, UNCERTAIN, SENT, ids, now)
            for issue_id, ids in by_issue.items()
        )

    # -- rows written inside another aggregate's transaction ------------------------------
    def forget_subscriber(self, conn: Connection, subscriber_id: int) -> None:
        """A removed subscriber leaves every issue's counts, in the transaction that deletes
        them: out of the planned size, out of their batch's recipients where claimed, and
        their own rows deleted."""
        sid = subscriber_id
        now = utcnow()
        unclaimed = conn.execute(
            select(_P.issue_id, _P.expression).where(
                _P.claimed_to < sid, _P.last_id >= sid, _P.size > 0
            )
        ).all()
        for issue_id, expression in unclaimed:  # the plans still to reach them
            of_it = and_(subscribers.c.id == sid, receiving(now), planned(expression))
            if conn.scalar(select(exists().where(of_it))):
                conn.execute(
                    update(delivery_plans).where(_P.issue_id == issue_id).values(size=_P.size - 1)
                )
        holding = conn.execute(
            select(_B.issue_id, *BATCH_COLUMNS).where(
                _B.first_id <= sid, _B.last_id >= sid, _B.listed.is_(False)
            )
        ).all()
        for issue_id, *columns in holding:
            if BatchRow.of(columns).holds(sid):
                conn.execute(
                    update(delivery_batches)
                    .where(_B.issue_id == issue_id, _B.number == columns[0])
                    .values(recipients=_B.recipients - 1)
                )
                conn.execute(
                    update(delivery_plans)
                    .where(_P.issue_id == issue_id, _P.size > 0)
                    .values(size=_P.size - 1)
                )
        conn.execute(delete(deliveries).where(_D.subscriber_id == sid))


def _single_row(
    issue_id: int, b: BatchRow, sid: int, state: str, now: datetime, reset: bool
) -> dict[str, Any]:
    """A recipient settled apart from their batch: a row of their own (back to pending,
    `reset`, it no longer names the batch)."""
    return {
        "issue_id": issue_id,
        "subscriber_id": sid,
        "state": state,
        "batch": None if reset else b.number,
        "worker": None if reset else b.worker,
        "claimed_at": None,
        "message_id": None if reset else b.message_id,
        "error": b.error,
        "retryable": None,
        "attempts": 1,
        "updated_at": now,
    }
