"""Claiming batches: the next id range of the plan's definition first; then (`reclaims`) a
released batch again, or recipients waiting alone (due reader-time waves); the caps' room."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    and_,
    bindparam,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)

from newsletter.pacing import Window
from newsletter.records import (
    SUPPRESSED,
    AtCap,
    Batch,
    Claim,
    IssueStatus,
    NotSending,
    Recipients,
    utcnow,
)
from newsletter.store.audience import as_planned, planned, receiving
from newsletter.store.deliveries.reclaims import claim_listed, claim_released
from newsletter.store.deliveries.reports import in_flight, sent_since
from newsletter.store.deliveries.rows import (
    ACTIVE,
    IN_FLIGHT,
    SENT,
    LogPart,
    encode_members,
)
from newsletter.store.schema import (
    UTCDateTime,
    deliveries,
    delivery_batches,
    delivery_plans,
    issues,
    subscribers,
)

_B = delivery_batches.c
_D = deliveries.c
_P = delivery_plans.c
# A sender runs these once per batch: built once, they skip SQLAlchemy's statement building.
_DUE = bindparam("now", type_=UTCDateTime())  # the sender's clock: waves due, pauses over
# The PostgreSQL advisory lock paced claims take turns on ("pace" in ASCII).
PACE_LOCK = 0x70616365
PLAN = (
    select(
        _P.last_id,
        _P.claimed_to,
        _P.next_batch,
        _P.planned_at,
        _P.expression,
        issues.c.status.label("issue_status"),
    )
    .join(issues, issues.c.id == _P.issue_id)
    .where(_P.issue_id == bindparam("issue"))
    .with_for_update(of=delivery_plans)  # PostgreSQL: claimers of one issue take turns here
)


@lru_cache(maxsize=64)
def _next_recipients(expression: str) -> Select:
    """The next recipients of a plan: receiving at the claim and in its segment, by id."""
    return (
        select(subscribers.c.id, subscribers.c.email, subscribers.c.name, subscribers.c.token)
        .where(
            subscribers.c.id > bindparam("after"),
            subscribers.c.id <= bindparam("last"),
            receiving(_DUE),
            planned(expression),
        )
        .order_by(subscribers.c.id)
        .limit(bindparam("size"))
    )


@lru_cache(maxsize=64)
def _skipped_between(expression: str) -> Select:
    """How many readers of (after, last] were of the audience at planning, as far as their
    rows tell, and are not recipients now: left since (unsubscribed, bounced, complained),
    paused since, or no longer in the segment (their tags changed, or they opened, since).
    Readers who were never of it (a segment's others, those who left before) are not."""
    since = bindparam("planned_at", type_=UTCDateTime())
    row = subscribers.c
    changed = row.updated_at >= since
    ways = [
        and_(row.status.in_(SUPPRESSED), changed),
        and_(row.status == ACTIVE, row.paused_until > _DUE, changed),
    ]
    if expression:
        ways.append(
            and_(receiving(_DUE), or_(row.tags_changed_at >= since, row.last_opened_at >= since))
        )
    return (
        select(func.count())
        .select_from(subscribers)
        .where(
            row.id > bindparam("after"),
            row.id <= bindparam("last"),
            not_(and_(receiving(_DUE), planned(expression))),
            as_planned(expression, since),
            or_(*ways),
        )
    )


_ADVANCE = (
    update(delivery_plans)
    .where(_P.issue_id == bindparam("issue"))
    .values(claimed_to=bindparam("top"), next_batch=bindparam("number"))
)
_NEW_BATCH = insert(delivery_batches)


def claim_range(
    conn: Connection,
    issue_id: int,
    plan: Any,
    size: int,
    worker: str,
    now: datetime,
    due: datetime | None = None,
) -> Batch | None:
    """The next id range of the plan's audience as a batch: its recipients are those
    receiving at `due` (the sender's clock) and in the plan's segment; those of the audience
    who are not any more are counted skipped on the batch row."""
    if plan.claimed_to >= plan.last_id:
        return None
    after, due = plan.claimed_to, due or now
    result = conn.execute(
        _next_recipients(plan.expression),
        {"after": after, "last": plan.last_id, "size": size, "now": due},
    )
    # The driver's own tuples, straight into columns: no row object per reader (ids,
    # addresses, names and tokens need no conversion from what the driver returns).
    recipients = Recipients.of(result.cursor.fetchall())
    result.close()
    ids = recipients.ids
    top = ids[-1] if ids else plan.last_id
    skipped = conn.scalar(
        _skipped_between(plan.expression),
        {"after": after, "last": top, "now": due, "planned_at": plan.planned_at},
    )
    number = plan.next_batch + 1
    if not ids and not skipped:  # the rest of the audience left before planning
        conn.execute(_ADVANCE, {"issue": issue_id, "top": top, "number": plan.next_batch})
        return None
    conn.execute(_ADVANCE, {"issue": issue_id, "top": top, "number": number})
    first = ids[0] if ids else plan.claimed_to + 1
    conn.execute(
        _NEW_BATCH,
        {
            "issue_id": issue_id,
            "number": number,
            "first_id": first,
            "last_id": top,
            "recipients": len(ids),
            "skipped": skipped,
            "excluded": encode_members(first, top, ids),
            "listed": False,
            "state": IN_FLIGHT if ids else SENT,
            "worker": worker,
            "claimed_at": now,
            "updated_at": now,
            "attempts": 1,
        },
    )
    return Batch(issue_id, number, recipients, first, top)


class Batches(LogPart):
    def claim(
        self,
        issue_id: int,
        size: int,
        worker: str = "main",
        after: int = 0,
        now: datetime | None = None,
        windows: Sequence[Window] = (),
        while_sending: bool = False,
    ) -> Claim:
        """Claim the next batch of up to `size` recipients, in flight under a new number, and
        return who they are: the next id range of the audience, else a released batch's range
        again, else recipients waiting to be sent alone. Readers of the audience who left,
        paused or stopped matching its segment since planning are counted as skipped; `now`
        is the sender's clock (reader time's waves due, pauses over). The claim cursor
        lives in the plan row, so `after` (the sender's own cursor, from when claims scanned
        rows) no longer matters.

        `windows` ([sending]'s caps, from `delivery/pace.py`): the batch is cut to what every
        window still allows, counted here, in the claim's transaction, over every issue and
        every process's batches in flight, so several workers never pass a cap together. At
        a cap the claim is `AtCap`, not None: the issue is not done. `while_sending`: the
        issue's status is read in the same transaction, and `NotSending` answers when it is
        no longer sending (the sender's check before each batch, without a read of its own)."""
        del after
        due = now or utcnow()  # reader time: the waves whose instant has come
        now = utcnow()
        with self._store.transaction() as conn:
            plan = conn.execute(PLAN, {"issue": issue_id}).first()
            if plan is None:
                return None
            if while_sending and plan.issue_status != IssueStatus.SENDING:
                return NotSending(IssueStatus(plan.issue_status))
            if windows:
                size = min(size, self._room(conn, windows))
                if size <= 0:
                    return AtCap(issue_id)
            # Forward first, as a sender's own cursor went: what was released or put back
            # waits until the audience's ranges are all claimed.
            return (
                claim_range(conn, issue_id, plan, size, worker, now, due)
                or claim_released(conn, issue_id, plan, size, worker, now, due)
                or claim_listed(conn, issue_id, plan.next_batch + 1, size, worker, now, due)
            )

    def _room(self, conn: Connection, windows: Sequence[Window]) -> int:
        """What the tightest window still allows: its limit less what was sent since it
        began and what is in flight. Paced claimers take turns on PostgreSQL (a transaction
        advisory lock; SQLite's BEGIN IMMEDIATE already serialises every writer)."""
        if not self._store.is_sqlite:
            conn.execute(select(func.pg_advisory_xact_lock(PACE_LOCK)))
        busy = in_flight(conn)
        return min(w.limit - sent_since(self, conn, w.since) - busy for w in windows)
