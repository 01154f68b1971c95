"""The delivery log, the truth about who has an issue, kept at the size of its batches.

An issue's audience is planned as a definition (`delivery_plans`: the segment -- every active
subscriber -- up to the highest subscriber id at planning). Each claim reads the next id range
of it (those active at claim time; those who left since planning are counted as skipped) and
writes one `delivery_batches` row, whose state is every recipient's state. A recipient gets a
row of their own in `deliveries` only where their story differs from their batch's: refused
by the provider, settled alone by an event or the editor, re-sent alone, skipped with a
reason. Claims are serialised on the plan row (BEGIN IMMEDIATE on SQLite, SELECT ... FOR
UPDATE on PostgreSQL), so concurrent senders read disjoint ranges: each subscriber once.

Every writer of these three tables is in this module (tests/test_store_writers.py)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from newsletter.pacing import Window
from newsletter.readertime import ReaderTime, waves
from newsletter.records import (
    SUPPRESSED,
    Batch,
    BatchState,
    DeliveryRow,
    DeliveryState,
    Recipient,
    SubscriberStatus,
    WaveProgress,
    utcnow,
)
from newsletter.store.schema import (
    UTCDateTime,
    deliveries,
    delivery_batches,
    delivery_plans,
    subscribers,
)
from newsletter.store.subscribers import receiving

if TYPE_CHECKING:
    from newsletter.store import Store

PENDING, IN_FLIGHT, SENT, FAILED, UNCERTAIN, SKIPPED = DeliveryState
RELEASED = BatchState.RELEASED
ACTIVE = SubscriberStatus.ACTIVE
NOT_ACTIVE = tuple(str(s) for s in SubscriberStatus if s != ACTIVE)
LEFT = "subscriber no longer active"
SEGMENT = "active"  # the only segment today: every active subscriber
_B = delivery_batches.c
_D = deliveries.c
_P = delivery_plans.c


def _recipient_state(batch_state: str) -> DeliveryState:
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
class _BatchRow:
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
    def of(cls, row: Any) -> _BatchRow:
        """From a row of `_BATCH_COLUMNS`."""
        return cls(*row[:12])

    @property
    def member_state(self) -> DeliveryState:
        return _recipient_state(self.state)


_BATCH_COLUMNS = (
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
class _Exception:
    subscriber_id: int
    state: str
    batch: int | None
    worker: str | None
    error: str | None
    message_id: str | None
    updated_at: datetime | None


_EXCEPTION_COLUMNS = (_D.subscriber_id, _D.state, _D.batch, _D.worker, _D.error, _D.message_id)


# A sender runs these once per batch: built once, they skip SQLAlchemy's statement building.
_NOW = bindparam("now", type_=UTCDateTime())
# The PostgreSQL advisory lock paced claims take turns on ("pace" in ASCII).
PACE_LOCK = 0x70616365
_PLAN = (
    select(_P.last_id, _P.claimed_to, _P.next_batch, _P.planned_at)
    .where(_P.issue_id == bindparam("issue"))
    .with_for_update()  # PostgreSQL: claimers of one issue take turns here
)
_RELEASED_BATCH = (
    select(*_BATCH_COLUMNS)
    .where(_B.issue_id == bindparam("issue"), _B.state == RELEASED, _B.listed.is_(False))
    .order_by(_B.number)
    .limit(1)
)
_WAITING_ALONE = (
    select(
        _D.subscriber_id,
        subscribers.c.email,
        subscribers.c.name,
        subscribers.c.token,
        subscribers.c.status,
    )
    .join(subscribers, subscribers.c.id == _D.subscriber_id)
    .where(
        _D.issue_id == bindparam("issue"),
        _D.state == PENDING,
        # Reader time: a wave's readers only once its instant has come.
        or_(_D.not_before.is_(None), _D.not_before <= bindparam("now")),
    )
    .order_by(_D.subscriber_id)
    .limit(bindparam("size"))
)
_NEXT_ACTIVE = (
    select(subscribers.c.id, subscribers.c.email, subscribers.c.name, subscribers.c.token)
    .where(
        subscribers.c.status == ACTIVE,
        subscribers.c.id > bindparam("after"),
        subscribers.c.id <= bindparam("last"),
    )
    .order_by(subscribers.c.id)
    .limit(bindparam("size"))
)
_NOT_ACTIVE_BETWEEN = select(
    subscribers.c.id, subscribers.c.status, subscribers.c.updated_at
).where(
    subscribers.c.status.in_(NOT_ACTIVE),
    subscribers.c.id > bindparam("after"),
    subscribers.c.id <= bindparam("last"),
)
_ADVANCE = (
    update(delivery_plans)
    .where(_P.issue_id == bindparam("issue"))
    .values(claimed_to=bindparam("top"), next_batch=bindparam("number"))
)
_NEW_BATCH = insert(delivery_batches)
_IN_FLIGHT_BATCH = and_(
    _B.issue_id == bindparam("issue"), _B.number == bindparam("batch_no"), _B.state == IN_FLIGHT
)
_LISTED = select(_B.listed).where(_IN_FLIGHT_BATCH)
_SENT_WITH_ONE_ID = (
    update(delivery_batches)
    .where(_IN_FLIGHT_BATCH)
    .values(state=SENT, message_id=bindparam("mid"), error=None, updated_at=_NOW)
)
_OWN_ROWS = select(_D.subscriber_id).where(
    _D.issue_id == bindparam("issue"),
    _D.subscriber_id.between(bindparam("first"), bindparam("last")),
    _D.batch == bindparam("number"),
)


@dataclass(slots=True)
class _IssueLog:
    """One issue's plan, range batches (in id order) and exceptions, read in one transaction;
    every answer about single recipients is worked out from these."""

    last_id: int
    size: int
    claimed_to: int
    ranges: list[_BatchRow]
    exceptions: dict[int, _Exception]

    def base(self, sid: int) -> _BatchRow | None:
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


def _insert_plan(
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


class Deliveries:
    def __init__(self, store: Store) -> None:
        self._store = store

    # -- reading one issue's log ------------------------------------------------------------
    def _log(
        self, conn: Connection, issue_id: int, ids: Iterable[int] | None = None
    ) -> _IssueLog | None:
        plan = conn.execute(
            select(_P.last_id, _P.size, _P.claimed_to).where(_P.issue_id == issue_id)
        ).first()
        if plan is None:
            return None
        ranges = [
            _BatchRow.of(row)
            for row in conn.execute(
                select(*_BATCH_COLUMNS)
                .where(_B.issue_id == issue_id, _B.listed.is_(False))
                .order_by(_B.first_id)
            )
        ]
        query = select(*_EXCEPTION_COLUMNS, _D.updated_at).where(_D.issue_id == issue_id)
        if ids is not None:
            query = query.where(_D.subscriber_id.in_(sorted(set(ids))))
        exceptions = {row[0]: _Exception(*row) for row in conn.execute(query)}
        return _IssueLog(plan.last_id, plan.size, plan.claimed_to, ranges, exceptions)

    # -- planning (inside the issue's transaction) ------------------------------------------
    def plan(
        self,
        conn: Connection,
        issue_id: int,
        audience: ColumnElement[bool] | None = None,
        *,
        reader_time: ReaderTime | None = None,
        now: datetime | None = None,
    ) -> None:
        """The new issue's audience as a definition: every active subscriber up to the highest
        id now (one index-only count), in the transaction that creates it
        (`Issues.create_issue`). Nothing per recipient is written -- but with a segment
        (`audience`, a where-clause from `newsletter.segments`) or readers on a pause, who
        receives it is decided now: those readers frozen as pending rows (`_plan_listed`);
        with `reader_time` each reader's row also carries the instant of their wave."""
        now = now or utcnow()
        where = receiving(now) if audience is None else and_(receiving(now), audience)
        if reader_time is not None:
            self._plan_waves(conn, issue_id, reader_time, now, where)
            return
        paused = conn.execute(
            select(func.count())
            .select_from(subscribers)
            .where(subscribers.c.status == ACTIVE, subscribers.c.paused_until > now)
        ).scalar_one()
        if audience is not None or paused:
            self._plan_listed(conn, issue_id, where, now)
            return
        last_id, size = conn.execute(
            select(func.max(subscribers.c.id), func.count()).where(subscribers.c.status == ACTIVE)
        ).one()
        _insert_plan(conn, issue_id, SEGMENT, last_id or 0, size, claimed_to=0, at=utcnow())

    def _plan_listed(
        self, conn: Connection, issue_id: int, where: ColumnElement[bool], now: datetime
    ) -> None:
        """The audience frozen at planning: one pending row per receiving reader, claimed as
        recipients waiting alone; the range cursor starts at the end (nothing by range)."""
        last_id, size = conn.execute(
            select(func.max(subscribers.c.id), func.count()).where(where)
        ).one()
        last_id = last_id or 0
        _insert_plan(conn, issue_id, "listed", last_id, size, claimed_to=last_id, at=now)
        conn.execute(
            insert(deliveries).from_select(
                ["issue_id", "subscriber_id", "state", "attempts"],
                select(
                    literal(issue_id), subscribers.c.id, literal(str(PENDING)), literal(0)
                ).where(where),
            )
        )

    def _plan_waves(
        self,
        conn: Connection,
        issue_id: int,
        reader_time: ReaderTime,
        now: datetime,
        where: ColumnElement[bool],
    ) -> None:
        """Reader time: the audience frozen at planning, one pending row per reader naming
        their wave's instant (`readertime.waves`), so a zone changed mid-send moves nobody
        between waves (each reader once); the range cursor starts at the end (nothing to
        claim by range) and the claims take due rows as recipients waiting alone."""
        audience = conn.execute(
            select(subscribers.c.id, subscribers.c.timezone).where(where).order_by(subscribers.c.id)
        ).all()
        grouped = waves(
            ((sid, zone) for sid, zone in audience), now, reader_time.at, reader_time.zone
        )
        last_id = audience[-1][0] if audience else 0
        _insert_plan(conn, issue_id, SEGMENT, last_id, len(audience), claimed_to=last_id, at=now)
        rows = [
            {
                "issue_id": issue_id,
                "subscriber_id": sid,
                "state": PENDING,
                "attempts": 0,
                "updated_at": now,
                "not_before": wave.at,
            }
            for wave in grouped
            for sid in wave.subscriber_ids
        ]
        for start in range(0, len(rows), 5000):
            conn.execute(insert(deliveries), rows[start : start + 5000])

    def waves(self, issue_id: int) -> list[WaveProgress]:
        """Reader time: each wave's instant, zones (as the readers' rows say now) and its
        recipients sent and left; [] for an issue sent at once."""
        zone = func.coalesce(subscribers.c.timezone, "")
        query = (
            select(_D.not_before, zone, _D.state, func.count())
            .select_from(deliveries.outerjoin(subscribers, subscribers.c.id == _D.subscriber_id))
            .where(_D.issue_id == issue_id, _D.not_before.is_not(None))
            .group_by(_D.not_before, zone, _D.state)
        )
        found: dict[datetime, dict[str, Any]] = {}
        with self._store.transaction(write=False) as conn:
            for at, name, state, count in conn.execute(query):
                wave = found.setdefault(at, {"zones": set(), "sent": 0, "left": 0, "other": 0})
                wave["zones"].add(name)
                key = {SENT: "sent", PENDING: "left", IN_FLIGHT: "left"}.get(state, "other")
                wave[key] += count
        return [
            WaveProgress(
                at=at,
                zones=tuple(sorted(w["zones"])),
                sent=w["sent"],
                left=w["left"],
                other=w["other"],
            )
            for at, w in sorted(found.items())
        ]

    def next_wave(self, issue_id: int, after: datetime) -> datetime | None:
        """Reader time: the instant of the next wave still waiting after `after`, if any."""
        with self._store.transaction(write=False) as conn:
            return conn.scalar(
                select(func.min(_D.not_before)).where(
                    _D.issue_id == issue_id, _D.state == PENDING, _D.not_before > after
                )
            )

    def waiting_until(self, issue_id: int, now: datetime) -> datetime | None:
        """Reader time: the next wave's instant when nothing else of the issue is left to do
        before it (no due reader, batch in flight or released, range unclaimed), so the
        scheduler and workers skip the issue until then instead of sending in vain."""
        after = self.next_wave(issue_id, now)
        if after is None:
            return None
        busy = or_(
            exists().where(_P.issue_id == issue_id, _P.claimed_to < _P.last_id),
            exists().where(_B.issue_id == issue_id, _B.state.in_((IN_FLIGHT, RELEASED))),
            exists().where(
                _D.issue_id == issue_id,
                or_(
                    _D.state == IN_FLIGHT,
                    and_(
                        _D.state == PENDING,
                        or_(_D.not_before.is_(None), _D.not_before <= now),
                    ),
                ),
            ),
        )
        with self._store.transaction(write=False) as conn:
            return None if conn.scalar(select(busy)) else after

    # -- claiming ---------------------------------------------------------------------------
    def claim(
        self,
        issue_id: int,
        size: int,
        worker: str = "main",
        after: int = 0,
        now: datetime | None = None,
        windows: Sequence[Window] = (),
    ) -> Batch | None:
        """Claim the next batch of up to `size` recipients, in flight under a new number, and
        return who they are: the next id range of the audience, else a released batch's range
        again, else recipients waiting to be sent alone. Subscribers who left since
        planning are counted as skipped. The claim cursor lives in the plan row, so `after`
        (the sender's own cursor, from when claims scanned rows) no longer matters.

        `windows` ([sending]'s caps, from `delivery/pace.py`): the batch is cut to what every
        window still allows, counted here, in the claim's transaction, over every issue and
        every process's batches in flight, so several workers never pass a cap together. At
        a cap the claim is an empty batch (number 0), not None: the issue is not done."""
        del after
        due = now or utcnow()  # reader time: the waves whose instant has come
        now = utcnow()
        with self._store.transaction() as conn:
            plan = conn.execute(_PLAN, {"issue": issue_id}).first()
            if plan is None:
                return None
            if windows:
                size = min(size, self._room(conn, windows))
                if size <= 0:
                    return Batch(issue_id, 0, (), 0, 0)
            # Forward first, as a sender's own cursor went: what was released or put back
            # waits until the audience's ranges are all claimed.
            return (
                self._claim_range(conn, issue_id, plan, size, worker, now)
                or self._claim_released(conn, issue_id, plan.next_batch + 1, size, worker, now)
                or self._claim_listed(conn, issue_id, plan.next_batch + 1, size, worker, now, due)
            )

    def _next_number(self, conn: Connection, issue_id: int, number: int) -> None:
        conn.execute(
            update(delivery_plans).where(_P.issue_id == issue_id).values(next_batch=number)
        )

    def _claim_released(
        self, conn: Connection, issue_id: int, number: int, size: int, worker: str, now: datetime
    ) -> Batch | None:
        """A released batch's recipients again, but those settled alone meanwhile and those
        who left since (skipped). Over `size` (a too-large request made the sender's batches
        smaller), the batch is cut in two: the rest stays released under a new number."""
        row = conn.execute(_RELEASED_BATCH, {"issue": issue_id}).first()
        if row is None:
            return None
        batch = _BatchRow.of(row)
        in_range = _D.subscriber_id.between(batch.first_id, batch.last_id)
        own = conn.execute(
            select(_D.subscriber_id, _D.state).where(_D.issue_id == issue_id, in_range)
        ).all()
        settled = {sid for sid, state in own if state != PENDING or not batch.holds(sid)}
        # Its recipients waiting alone: they join the batch again.
        rejoin = [sid for sid, state in own if sid not in settled]
        if rejoin:
            conn.execute(
                delete(deliveries).where(_D.issue_id == issue_id, _D.subscriber_id.in_(rejoin))
            )
        members = [
            member
            for member in conn.execute(
                select(
                    subscribers.c.id,
                    subscribers.c.email,
                    subscribers.c.name,
                    subscribers.c.token,
                    subscribers.c.status,
                )
                .where(subscribers.c.id.between(batch.first_id, batch.last_id))
                .order_by(subscribers.c.id)
            )
            if batch.holds(member[0])
        ]
        sending = [m for m in members if m[0] not in settled and m[4] == ACTIVE]
        excluded = [
            sid
            for lo, hi in decode_excluded(batch.first_id, batch.excluded)
            for sid in range(lo, hi + 1)
        ]
        last = batch.last_id
        if len(sending) > size:
            last = sending[size - 1][0]
            sending = sending[:size]
            rest = [m for m in members if m[0] > last]
            members = [m for m in members if m[0] <= last]
            self._next_number(conn, issue_id, number)
            first = rest[0][0]
            conn.execute(
                _NEW_BATCH,
                {
                    "issue_id": issue_id,
                    "number": number,
                    "first_id": first,
                    "last_id": batch.last_id,
                    "recipients": len(rest),
                    "skipped": 0,
                    "excluded": encode_excluded(first, (x for x in excluded if x > first)),
                    "listed": False,
                    "state": RELEASED,
                    "worker": None,
                    "claimed_at": now,
                    "updated_at": now,
                    "error": batch.error,
                    "attempts": 1,
                },
            )
            excluded = [x for x in excluded if x < last]
        gone = [m[0] for m in members if m[0] not in settled and m[4] != ACTIVE]
        conn.execute(
            update(delivery_batches)
            .where(_B.issue_id == issue_id, _B.number == batch.number)
            .values(
                last_id=last,
                state=IN_FLIGHT if sending else SENT,
                worker=worker,
                claimed_at=now,
                updated_at=now,
                attempts=_B.attempts + 1,
                recipients=len(members) - len(gone),
                skipped=batch.skipped + len(gone),
                excluded=encode_excluded(batch.first_id, [*excluded, *gone]),
            )
        )
        recipients = tuple(Recipient(*m[:4]) for m in sending)
        return Batch(issue_id, batch.number, recipients, batch.first_id, last)

    def _claim_listed(
        self,
        conn: Connection,
        issue_id: int,
        number: int,
        size: int,
        worker: str,
        now: datetime,
        due: datetime,
    ) -> Batch | None:
        rows = conn.execute(_WAITING_ALONE, {"issue": issue_id, "size": size, "now": due}).all()
        if not rows:
            return None
        self._next_number(conn, issue_id, number)
        recipients = [Recipient(sid, e, n, t) for sid, e, n, t, status in rows if status == ACTIVE]
        gone = [sid for sid, *_, status in rows if status != ACTIVE]
        mine = _D.issue_id == issue_id
        if recipients:
            conn.execute(
                update(deliveries)
                .where(mine, _D.subscriber_id.in_([r.subscriber_id for r in recipients]))
                .values(
                    state=IN_FLIGHT,
                    batch=number,
                    worker=worker,
                    claimed_at=now,
                    updated_at=now,
                    attempts=_D.attempts + 1,
                )
            )
        if gone:
            conn.execute(
                update(deliveries)
                .where(mine, _D.subscriber_id.in_(gone))
                .values(state=SKIPPED, error=LEFT, updated_at=now)
            )
        conn.execute(
            insert(delivery_batches).values(
                issue_id=issue_id,
                number=number,
                first_id=rows[0][0],
                last_id=rows[-1][0],
                recipients=len(recipients),
                skipped=0,  # counted on their own rows
                excluded="",
                listed=True,
                state=IN_FLIGHT if recipients else SENT,
                worker=worker,
                claimed_at=now,
                updated_at=now,
                attempts=1,
            )
        )
        return Batch(issue_id, number, tuple(recipients), rows[0][0], rows[-1][0])

    def _claim_range(
        self, conn: Connection, issue_id: int, plan: Any, size: int, worker: str, now: datetime
    ) -> Batch | None:
        if plan.claimed_to >= plan.last_id:
            return None
        after = plan.claimed_to
        rows = conn.execute(
            _NEXT_ACTIVE, {"after": after, "last": plan.last_id, "size": size}
        ).all()
        top = rows[-1][0] if rows else plan.last_id
        others = conn.execute(_NOT_ACTIVE_BETWEEN, {"after": after, "last": top}).all()
        skipped = sum(
            1
            for _, status, changed in others
            if status in SUPPRESSED and changed >= plan.planned_at
        )
        number = plan.next_batch + 1
        if not rows and not skipped:  # the rest of the audience left before planning
            conn.execute(_ADVANCE, {"issue": issue_id, "top": top, "number": plan.next_batch})
            return None
        conn.execute(_ADVANCE, {"issue": issue_id, "top": top, "number": number})
        first = rows[0][0] if rows else plan.claimed_to + 1
        gaps = (sid for sid, *_ in others if sid >= first) if rows else range(first, top + 1)
        conn.execute(
            _NEW_BATCH,
            {
                "issue_id": issue_id,
                "number": number,
                "first_id": first,
                "last_id": top,
                "recipients": len(rows),
                "skipped": skipped,
                "excluded": encode_excluded(first, gaps),
                "listed": False,
                "state": IN_FLIGHT if rows else SENT,
                "worker": worker,
                "claimed_at": now,
                "updated_at": now,
                "attempts": 1,
            },
        )
        recipients = tuple(map(Recipient._make, rows))
        return Batch(issue_id, number, recipients, first, top)

    # -- recording a claimed batch's outcome ------------------------------------------------
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
        ids = {r.subscriber_id for r in batch.recipients}
        with self._store.transaction() as conn:
            key = {"issue": batch.issue_id, "batch_no": batch.number}
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
            own = self._own_rows(conn, batch)
            if isinstance(message_ids, str):
                conn.execute(_SENT_WITH_ONE_ID, {**key, "mid": message_ids, "now": now})
                return len(ids - own)
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

    def fail(self, batch: Batch, reasons: dict[int, str]) -> int:
        """Mark some recipients of an in-flight batch failed for good (the provider refuses
        them): rows of their own, the rest of the batch goes on."""
        if not reasons:
            return 0
        now = utcnow()
        ids = {r.subscriber_id for r in batch.recipients}
        reasons = {sid: why for sid, why in reasons.items() if sid in ids}
        with self._store.transaction() as conn:
            self._upsert(
                conn,
                [
                    self._row(batch, sid, FAILED, now, error=why, retryable=False)
                    for sid, why in reasons.items()
                ],
            )
        return len(reasons)

    def mark_each(self, batch: Batch, state: str, reasons: dict[int, str]) -> int:
        """Move some recipients of an in-flight batch to `state`, each with its own reason: a
        provider answering per recipient (SMTP) defers some (back to pending: claimed alone
        later) and loses the answer for others (uncertain) while the rest of the batch went
        out. Rows of their own, naming the batch."""
        if not reasons:
            return 0
        now = utcnow()
        ids = {r.subscriber_id for r in batch.recipients}
        reasons = {sid: why for sid, why in reasons.items() if sid in ids}
        with self._store.transaction() as conn:
            self._upsert(
                conn,
                [self._row(batch, sid, state, now, error=why) for sid, why in reasons.items()],
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

    # -- a sender that stopped --------------------------------------------------------------
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

    def sent_issues(
        self, conn: Connection, subscriber_id: int, limit: int | None = None
    ) -> list[int]:
        """The issues recorded as sent to this subscriber, newest first (the bounce reports
        ask which issue a bounce answers): their own row's state, else their batch's."""
        sid = subscriber_id
        own = dict(conn.execute(select(_D.issue_id, _D.state).where(_D.subscriber_id == sid)).all())
        found = {issue_id for issue_id, state in own.items() if state == SENT}
        for issue_id, *columns in conn.execute(
            select(_B.issue_id, *_BATCH_COLUMNS).where(
                _B.first_id <= sid, _B.last_id >= sid, _B.listed.is_(False), _B.state == SENT
            )
        ):
            if issue_id not in own and _BatchRow.of(columns).holds(sid):
                found.add(issue_id)
        return sorted(found, reverse=True)[:limit]

    # -- counting ---------------------------------------------------------------------------
    def counts(self, issue_id: int) -> dict[str, int]:
        """How many recipients of the issue are in each state (every state named, zeros too):
        from its batch rows and exceptions, never a count over recipients."""
        with self._store.transaction(write=False) as conn:
            return self.counts_in(conn, issue_id)

    def counts_in(self, conn: Connection, issue_id: int) -> dict[str, int]:
        """`counts`, inside another aggregate's transaction (the alerts' issues)."""
        log = self._log(conn, issue_id)
        if log is None:
            return {state: 0 for state in DeliveryState}
        return log.counts()

    def total(self, issue_id: int) -> int:
        """Recipients planned for an issue (fixed once planned, but for removed subscribers)."""
        return sum(self.counts(issue_id).values())

    def counts_in_states(self, issue_id: int, states: Iterable[str]) -> dict[str, int]:
        """Recipients per state for a few states (the workspace's finished issues)."""
        counts = self.counts(issue_id)
        return {state: counts[DeliveryState(state)] for state in states}

    def sent_since(self, since: datetime) -> int:
        """Deliveries the provider accepted since `since`, over every issue (the doctor's
        complaint rate is complaints over these): sent batches recorded since then, less
        their recipients settled otherwise, plus recipients sent alone since then."""
        with self._store.transaction(write=False) as conn:
            return self._sent_since(conn, since)

    def in_flight_count(self) -> int:
        """Recipients in batches in flight now, over every issue and process (pacing counts
        them against its caps before they are recorded)."""
        with self._store.transaction(write=False) as conn:
            return self._in_flight(conn)

    def _in_flight(self, conn: Connection) -> int:
        total = conn.scalar(
            select(func.coalesce(func.sum(_B.recipients), 0)).where(_B.state == IN_FLIGHT)
        )
        return int(total or 0)

    def _room(self, conn: Connection, windows: Sequence[Window]) -> int:
        """What the tightest window still allows: its limit less what was sent since it
        began and what is in flight. Paced claimers take turns on PostgreSQL (a transaction
        advisory lock; SQLite's BEGIN IMMEDIATE already serialises every writer)."""
        if not self._store.is_sqlite:
            conn.execute(select(func.pg_advisory_xact_lock(PACE_LOCK)))
        in_flight = self._in_flight(conn)
        return min(w.limit - self._sent_since(conn, w.since) - in_flight for w in windows)

    def _sent_since(self, conn: Connection, since: datetime) -> int:
        total = 0
        recent = set(
            conn.scalars(select(_B.issue_id).where(_B.updated_at >= since).distinct())
        ) | set(conn.scalars(select(_D.issue_id).where(_D.updated_at >= since).distinct()))
        for issue_id in sorted(recent):
            log = self._log(conn, issue_id)
            if log is None:
                continue
            counted = {b.number for b in log.ranges if b.state == SENT and b.updated_at >= since}
            total += sum(b.recipients for b in log.ranges if b.number in counted)
            for sid, exc in log.exceptions.items():
                base = log.base(sid)
                if base is not None and base.number in counted:
                    total -= 1
                if exc.state == SENT and exc.updated_at and exc.updated_at >= since:
                    total += 1
        return total

    # -- who, by name -----------------------------------------------------------------------
    def in_state(self, issue_id: int, state: str, limit: int | None = None) -> list[DeliveryRow]:
        """The issue's recipients in `state` with their addresses, in subscriber order (the
        first `limit` of them when given)."""
        with self._store.transaction(write=False) as conn:
            return list(self._in_state(conn, issue_id, DeliveryState(state), limit))

    def _in_state(
        self, conn: Connection, issue_id: int, state: DeliveryState, limit: int | None
    ) -> Iterator[DeliveryRow]:
        log = self._log(conn, issue_id)
        if log is None:
            return
        emails: dict[int, str] = {}
        own = [sid for sid, exc in log.exceptions.items() if exc.state == state]
        if own:
            emails.update(
                conn.execute(
                    select(subscribers.c.id, subscribers.c.email).where(subscribers.c.id.in_(own))
                ).all()
            )
        found: list[DeliveryRow] = [
            DeliveryRow(sid, emails[sid], exc.batch, exc.worker, exc.error, exc.message_id)
            for sid, exc in sorted(log.exceptions.items())
            if exc.state == state and sid in emails
        ]
        from_batches = 0
        for b in log.ranges:
            if b.member_state != state:
                continue
            if limit is not None and from_batches >= limit:
                break  # later batches hold only higher ids than those already found
            for sid, email in conn.execute(
                select(subscribers.c.id, subscribers.c.email)
                .where(subscribers.c.id.between(b.first_id, b.last_id))
                .order_by(subscribers.c.id)
            ):
                if b.holds(sid) and sid not in log.exceptions:
                    found.append(DeliveryRow(sid, email, b.number, b.worker, b.error, b.message_id))
                    from_batches += 1
        if state == PENDING and log.claimed_to < log.last_id:
            query = (
                select(subscribers.c.id, subscribers.c.email)
                .where(
                    subscribers.c.status == ACTIVE,
                    subscribers.c.id > log.claimed_to,
                    subscribers.c.id <= log.last_id,
                )
                .order_by(subscribers.c.id)
                .limit(limit)
            )
            found.extend(
                DeliveryRow(sid, email, None, None, None, None)
                for sid, email in conn.execute(query)
            )
        found.sort(key=lambda row: row.subscriber_id)
        yield from found[:limit] if limit is not None else found

    def sent_by_worker(self, issue_id: int) -> dict[str, int]:
        """How many recipients of an issue each sender recorded as sent."""
        with self._store.transaction(write=False) as conn:
            log = self._log(conn, issue_id)
        found: dict[str, int] = {}
        if log is None:
            return found
        overridden = log.overridden()
        for b in log.ranges:
            if b.state == SENT:
                who = b.worker or "-"
                found[who] = found.get(who, 0) + b.recipients - overridden.get(b.number, 0)
        for exc in log.exceptions.values():
            if exc.state == SENT:
                who = exc.worker or "-"
                found[who] = found.get(who, 0) + 1
        return {who: n for who, n in found.items() if n}

    def sent_emails(self, issue_id: int) -> list[str]:
        return [row.email for row in self.in_state(issue_id, SENT)]

    # -- decisions on recipients ------------------------------------------------------------
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
        # Recipients who follow their batch: whole batches move when all of their recipients
        # that follow them do; otherwise the ones named get rows of their own.
        wanted: dict[int, list[int]] = {}
        if ids is None:
            whole = [b for b in log.ranges if b.member_state == from_state]
            singles: list[tuple[_BatchRow, int]] = []
        else:
            for sid in ids:
                base = log.base(sid)
                if sid not in log.exceptions and base and base.member_state == from_state:
                    wanted.setdefault(base.number, []).append(sid)
            if not wanted:
                return moved
            by_number = {b.number: b for b in log.ranges}
            whole, singles = [], []
            for number, sids in wanted.items():
                b = by_number[number]
                if len(sids) >= b.recipients - self._own_count(conn, issue_id, b):
                    whole.append(b)
                else:
                    singles.extend((b, sid) for sid in sids)
        if whole:
            for b in whole:
                conn.execute(
                    update(delivery_batches)
                    .where(_B.issue_id == issue_id, _B.number == b.number)
                    .values(
                        state=batch_state, updated_at=now, **({"worker": None} if reset else {})
                    )
                )
                moved += b.recipients - self._own_count(conn, issue_id, b)
        if singles:
            self._upsert(
                conn,
                [
                    {
                        "issue_id": issue_id,
                        "subscriber_id": sid,
                        "state": to_state,
                        "batch": None if reset else b.number,
                        "worker": None if reset else b.worker,
                        "claimed_at": None,
                        "message_id": None if reset else b.message_id,
                        "error": b.error,
                        "retryable": None,
                        "attempts": 1,
                        "updated_at": now,
                    }
                    for b, sid in singles
                ],
            )
            moved += len(singles)
        return moved

    def _settle_unclaimed(self, conn: Connection, issue_id: int, state: str, now: datetime) -> int:
        """The audience not yet claimed, claimed here in batches straight into `state` (an
        editor's or a fixture's decision on a whole issue: pending -> sent)."""
        moved = 0
        while True:
            plan = conn.execute(
                select(_P.last_id, _P.claimed_to, _P.next_batch, _P.planned_at)
                .where(_P.issue_id == issue_id)
                .with_for_update()
            ).one()
            batch = self._claim_range(conn, issue_id, plan, 1000, "settled", now)
            if batch is None:
                return moved
            conn.execute(
                update(delivery_batches)
                .where(_B.issue_id == issue_id, _B.number == batch.number)
                .values(state=state, updated_at=now)
            )
            moved += len(batch.recipients)

    @staticmethod
    def _own_count(conn: Connection, issue_id: int, batch: _BatchRow) -> int:
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
        status = conn.scalar(select(subscribers.c.status).where(subscribers.c.id == sid))
        if status == ACTIVE:
            conn.execute(
                update(delivery_plans)
                .where(_P.claimed_to < sid, _P.last_id >= sid, _P.size > 0)
                .values(size=_P.size - 1)
            )
        holding = conn.execute(
            select(_B.issue_id, *_BATCH_COLUMNS).where(
                _B.first_id <= sid, _B.last_id >= sid, _B.listed.is_(False)
            )
        ).all()
        for issue_id, *columns in holding:
            if _BatchRow.of(columns).holds(sid):
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
