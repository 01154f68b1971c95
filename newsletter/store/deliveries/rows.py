"""The delivery log's rows as read: the states, a batch row and its excluded ids, an exception
row, one issue's log worked out from them, and what every part shares."""

from __future__ import annotations

import base64
import bisect
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite

from newsletter.records import Batch, BatchState, DeliveryState, SubscriberStatus
from newsletter.store.schema import UTCDateTime, deliveries, delivery_batches, delivery_plans

if TYPE_CHECKING:
    from newsletter.store import Store

PENDING, IN_FLIGHT, SENT, FAILED, UNCERTAIN, SKIPPED = DeliveryState
RELEASED = BatchState.RELEASED
ACTIVE = SubscriberStatus.ACTIVE
NOT_ACTIVE = tuple(str(s) for s in SubscriberStatus if s != ACTIVE)
LEFT = "subscriber no longer active"
PAUSED = "subscriber on a pause"
SEGMENT = "active"  # a plan without a segment: every receiving subscriber
_B = delivery_batches.c
_D = deliveries.c
# The claims' clock parameter (the sender's: waves due, pauses over), one for every claim query.
DUE = bindparam("now", type_=UTCDateTime())
_P = delivery_plans.c


def recipient_state(batch_state: str) -> DeliveryState:
    """A member's state from their batch's: a released batch's members wait again."""
    return PENDING if batch_state == RELEASED else DeliveryState(batch_state)


# -- a batch's recipients among its id range: the ids excluded, as offsets from its first id
# ("3,17-18"), or, where shorter (a segment's scattered readers), a bitmap of the members
# ("=" and the zlib-compressed bits in base64): either way a few bytes per batch.
def encode_excluded(first_id: int, ids: Iterable[int]) -> str:
    runs: list[list[int]] = []
    for sid in sorted(ids):
        offset = sid - first_id
        if runs and runs[-1][1] == offset - 1:
            runs[-1][1] = offset
        else:
            runs.append([offset, offset])
    return ",".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in runs)


def encode_members(first_id: int, last_id: int, members: Iterable[int]) -> str:
    """The text that makes exactly `members` (ids in [first_id, last_id]) the recipients of
    a batch over that range: excluded runs, or a bitmap where that is shorter."""
    ids = sorted(members)
    if len(ids) == last_id - first_id + 1 and (not ids or ids[0] == first_id):
        return ""  # every id of the range (ids are distinct): the common batch
    runs: list[str] = []
    expected = first_id
    for sid in [*ids, last_id + 1]:
        if sid > expected:
            lo, hi = expected - first_id, sid - 1 - first_id
            runs.append(f"{lo}" if lo == hi else f"{lo}-{hi}")
        expected = sid + 1
    text = ",".join(runs)
    if len(text) < 64:
        return text
    bits = bytearray((last_id - first_id) // 8 + 1)
    for sid in ids:
        offset = sid - first_id
        bits[offset >> 3] |= 1 << (offset & 7)
    bitmap = "=" + base64.b64encode(zlib.compress(bytes(bits), 9)).decode("ascii")
    return bitmap if len(bitmap) < len(text) else text


def decode_excluded(first_id: int, text: str) -> list[tuple[int, int]]:
    """The excluded ids as (low, high) absolute runs, in order (from a bitmap: the runs of
    its zero bits, up to the bitmap's last byte)."""
    runs: list[tuple[int, int]] = []
    if text.startswith("="):
        bits = zlib.decompress(base64.b64decode(text[1:]))
        start = None
        for offset in range(len(bits) * 8):
            member = bits[offset >> 3] >> (offset & 7) & 1
            if not member and start is None:
                start = offset
            elif member and start is not None:
                runs.append((first_id + start, first_id + offset - 1))
                start = None
        if start is not None:
            runs.append((first_id + start, first_id + len(bits) * 8 - 1))
        return runs
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
    expression: str = ""  # the plan's segment, anchored ("" for everyone receiving)

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


class LogPart:
    """What every part of `Deliveries` shares: the store, reading one issue's log, writing
    exception rows."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _log(
        self, conn: Connection, issue_id: int, ids: Iterable[int] | None = None
    ) -> IssueLog | None:
        plan = conn.execute(
            select(_P.last_id, _P.size, _P.claimed_to, _P.expression).where(_P.issue_id == issue_id)
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
        return IssueLog(
            plan.last_id, plan.size, plan.claimed_to, ranges, exceptions, plan.expression
        )

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
