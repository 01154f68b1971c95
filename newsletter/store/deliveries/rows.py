"""The delivery log's rows as read: the states, a batch row and its excluded ids, an exception
row, one issue's log worked out from them, and what every part shares."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from newsletter.records import (
    Batch,
    BatchState,
    DeliveryState,
    SubscriberStatus,
)
from newsletter.store.schema import (
    deliveries,
    delivery_batches,
    delivery_plans,
)

if TYPE_CHECKING:
    from newsletter.store import Store

PENDING, IN_FLIGHT, SENT, FAILED, UNCERTAIN, SKIPPED = DeliveryState
PENDING, IN_FLIGHT, SENT, FAILED, UNCERTAIN, SKIPPED = DeliveryState
RELEASED = BatchState.RELEASED
ACTIVE = SubscriberStatus.ACTIVE
NOT_ACTIVE = tuple(str(s) for s in SubscriberStatus if s != ACTIVE)
LEFT = "subscriber no longer active"
SEGMENT = "active"  # the only segment today: every active subscriber
_B = delivery_batches.c
_D = deliveries.c
_P = delivery_plans.c


def recipient_state(batch_state: str) -> DeliveryState:
    """A member's state from their batch's: a released batch's members wait again."""
    return PENDING if batch_state == RELEASED else DeliveryState(batch_state)


# -- the excluded ids of a batch: offsets from its first id, as "3,17-18" --------------------
def encode_excluded(first_id: int, ids: Iterable[int]) -> str:
    runs: list[list[int]] = []
    for sid in sorted(ids):
        offset = sid - first_id
        if runs and runs[-1][1] == offset - 1:
            runs[-1][1] = offset
        else:
            runs.append([offset, offset])
    return ",".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in runs)


def decode_excluded(first_id: int, text: str) -> list[tuple[int, int]]:
    """The excluded ids as (low, high) absolute runs, in order."""
    runs = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        runs.append((first_id + int(lo), first_id + int(hi or lo)))
    return runs


@dataclass(slots=True)
class BatchRow:
    number: int
    first_id: int
    last_id: int
    recipients: int
    skipped: int
    excluded: str
    listed: bool
    state: str
    worker: str | None
    error: str | None
    message_id: str | None
    updated_at: datetime
    _runs: list[tuple[int, int]] | None = field(default=None, repr=False)

    def holds(self, sid: int) -> bool:
        """Whether `sid` is one of this batch's recipients (its range, not excluded)."""
        if self.listed or not self.first_id <= sid <= self.last_id:
            return False
        if not self.excluded:
            return True
        if self._runs is None:
            self._runs = decode_excluded(self.first_id, self.excluded)
        at = bisect.bisect_right(self._runs, (sid, float("inf"))) - 1
        return at < 0 or not (self._runs[at][0] <= sid <= self._runs[at][1])

    @classmethod
    def of(cls, row: Any) -> BatchRow:
        """From a row of `BATCH_COLUMNS`."""
        return cls(*row[:12])

    @property
    def member_state(self) -> DeliveryState:
        return recipient_state(self.state)


BATCH_COLUMNS = (
    _B.number,
    _B.first_id,
    _B.last_id,
    _B.recipients,
    _B.skipped,
    _B.excluded,
    _B.listed,
    _B.state,
    _B.worker,
    _B.error,
    _B.message_id,
    _B.updated_at,
)


@dataclass(slots=True)
class ExceptionRow:
    subscriber_id: int
    state: str
    batch: int | None
    worker: str | None
    error: str | None
    message_id: str | None
    updated_at: datetime | None


EXCEPTION_COLUMNS = (_D.subscriber_id, _D.state, _D.batch, _D.worker, _D.error, _D.message_id)


@dataclass(slots=True)
class IssueLog:
    """One issue's plan, range batches (in id order) and exceptions, read in one transaction;
    every answer about single recipients is worked out from these."""

    last_id: int
    size: int
    claimed_to: int
    ranges: list[BatchRow]
    exceptions: dict[int, ExceptionRow]

    def base(self, sid: int) -> BatchRow | None:
        """The range batch whose recipient `sid` is (None: not claimed in a range)."""
        at = bisect.bisect_right([b.first_id for b in self.ranges], sid) - 1
        if at >= 0 and self.ranges[at].holds(sid):
            return self.ranges[at]
        return None

    def state_of(self, sid: int) -> str | None:
        exc = self.exceptions.get(sid)
        if exc is not None:
            return exc.state
        base = self.base(sid)
        return base.member_state if base else None

    def overridden(self) -> dict[int, int]:
        """Batch number -> how many of its recipients have an exception row."""
        found: dict[int, int] = {}
        for sid in self.exceptions:
            base = self.base(sid)
            if base is not None:
                found[base.number] = found.get(base.number, 0) + 1
        return found

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {state: 0 for state in DeliveryState}
        claimed = 0
        for b in self.ranges:
            counts[b.member_state] += b.recipients
            counts[SKIPPED] += b.skipped
            claimed += b.recipients + b.skipped
        for sid, exc in self.exceptions.items():
            base = self.base(sid)
            if base is not None:
                counts[base.member_state] -= 1
            counts[DeliveryState(exc.state)] += 1
        if self.claimed_to < self.last_id:
            counts[PENDING] += max(0, self.size - claimed)
        return counts


def insert_plan(
    conn: Connection,
    issue_id: int,
    segment: str,
    last_id: int,
    size: int,
    *,
    claimed_to: int,
    at: datetime,
) -> None:
    """The issue's `delivery_plans` row: its audience up to `last_id`, `size` readers, the
    range cursor at `claimed_to` (at `last_id` when the readers are frozen as rows, so nothing
    is claimed by range)."""
    conn.execute(
        insert(delivery_plans).values(
            issue_id=issue_id,
            segment=segment,
            last_id=last_id,
            size=size,
            claimed_to=claimed_to,
            next_batch=0,
            planned_at=at,
        )
    )


class LogPart:
    """What every part of `Deliveries` shares: the store, reading one issue's log, writing
    exception rows."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _log(
        self, conn: Connection, issue_id: int, ids: Iterable[int] | None = None
    ) -> IssueLog | None:
        plan = conn.execute(
            select(_P.last_id, _P.size, _P.claimed_to).where(_P.issue_id == issue_id)
        ).first()
        if plan is None:
            return None
        ranges = [
            BatchRow.of(row)
            for row in conn.execute(
                select(*BATCH_COLUMNS)
                .where(_B.issue_id == issue_id, _B.listed.is_(False))
                .order_by(_B.first_id)
            )
        ]
        query = select(*EXCEPTION_COLUMNS, _D.updated_at).where(_D.issue_id == issue_id)
        if ids is not None:
            query = query.where(_D.subscriber_id.in_(sorted(set(ids))))
        exceptions = {row[0]: ExceptionRow(*row) for row in conn.execute(query)}
        return IssueLog(plan.last_id, plan.size, plan.claimed_to, ranges, exceptions)

    def _row(self, batch: Batch, sid: int, state: str, now: datetime, **extra: Any) -> dict:
        row = {
            "issue_id": batch.issue_id,
            "subscriber_id": sid,
            "state": state,
            "batch": batch.number,
            "worker": None,
            "claimed_at": None,
            "message_id": None,
            "error": None,
            "retryable": None,
            "attempts": 1,
            "updated_at": now,
        }
        row.update(extra)
        return row

    def _upsert(self, conn: Connection, rows: list[dict]) -> None:
        """Write exception rows, replacing a recipient's earlier one."""
        if not rows:
            return
        dialect = sqlite if self._store.is_sqlite else postgresql
        statement = dialect.insert(deliveries)
        keep = ("issue_id", "subscriber_id", "attempts")
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["issue_id", "subscriber_id"],
                set_={c: statement.excluded[c] for c in rows[0] if c not in keep},
            ),
            rows,
        )

    @staticmethod
    def _own_count(conn: Connection, issue_id: int, batch: BatchRow) -> int:
        """How many of a range batch's recipients have rows of their own."""
        return (
            conn.scalar(
                select(func.count())
                .select_from(deliveries)
                .where(
                    _D.issue_id == issue_id,
                    _D.subscriber_id.between(batch.first_id, batch.last_id),
                )
            )
            or 0
        )
