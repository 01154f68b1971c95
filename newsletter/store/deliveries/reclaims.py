"""Claiming again what a range claim no longer reaches: a released batch's readers (a
request that surely did not go out, a too-large one cut in two), and readers waiting alone
(deferred by the provider, put back by an editor, due reader-time waves)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, insert, or_, select, update

from newsletter.records import Batch, Recipient, Recipients
from newsletter.store.audience import planned, receiving
from newsletter.store.deliveries.rows import (
    ACTIVE,
    BATCH_COLUMNS,
    IN_FLIGHT,
    LEFT,
    PAUSED,
    PENDING,
    RELEASED,
    SENT,
    SKIPPED,
    BatchRow,
    encode_members,
)
from newsletter.store.schema import (
    UTCDateTime,
    deliveries,
    delivery_batches,
    delivery_plans,
    subscribers,
)

_B = delivery_batches.c
_D = deliveries.c
_P = delivery_plans.c
_DUE = bindparam("now", type_=UTCDateTime())  # the sender's clock: waves due, pauses over

_RELEASED_BATCH = (
    select(*BATCH_COLUMNS)
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
        receiving(_DUE).label("receiving"),
    )
    .join(subscribers, subscribers.c.id == _D.subscriber_id)
    .where(
        _D.issue_id == bindparam("issue"),
        _D.state == PENDING,
        # Reader time: a wave's readers only once its instant has come.
        or_(_D.not_before.is_(None), _D.not_before <= _DUE),
    )
    .order_by(_D.subscriber_id)
    .limit(bindparam("size"))
)


def _next_number(conn: Connection, issue_id: int, number: int) -> None:
    conn.execute(update(delivery_plans).where(_P.issue_id == issue_id).values(next_batch=number))


def claim_released(
    conn: Connection,
    issue_id: int,
    plan: Any,
    size: int,
    worker: str,
    now: datetime,
    due: datetime,
) -> Batch | None:
    """A released batch's recipients again, but those settled alone meanwhile and those
    no longer receiving or in the segment (skipped). Over `size` (a too-large request
    made the sender's batches smaller), the batch is cut in two: the rest stays released
    under a new number."""
    row = conn.execute(_RELEASED_BATCH, {"issue": issue_id}).first()
    if row is None:
        return None
    batch, number = BatchRow.of(row), plan.next_batch + 1
    settled = _rejoin(conn, issue_id, batch)
    members = _members(conn, batch, plan.expression, due)
    sending = [m for m in members if m[0] not in settled and m[4]]
    last = batch.last_id
    if len(sending) > size:
        last = sending[size - 1][0]
        sending = sending[:size]
        _cut(conn, issue_id, batch, number, [m for m in members if m[0] > last], now)
        members = [m for m in members if m[0] <= last]
    gone = [m[0] for m in members if m[0] not in settled and not m[4]]
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
            excluded=encode_members(
                batch.first_id, last, (m[0] for m in members if m[0] not in gone)
            ),
        )
    )
    recipients = Recipients.of(m[:4] for m in sending)
    return Batch(issue_id, batch.number, recipients, batch.first_id, last)


def _rejoin(conn: Connection, issue_id: int, batch: BatchRow) -> set[int]:
    """The batch's readers settled alone meanwhile (rows of their own, not pending); those
    waiting alone join the batch again (their rows go)."""
    in_range = _D.subscriber_id.between(batch.first_id, batch.last_id)
    own = conn.execute(
        select(_D.subscriber_id, _D.state).where(_D.issue_id == issue_id, in_range)
    ).all()
    settled = {sid for sid, state in own if state != PENDING or not batch.holds(sid)}
    rejoin = [sid for sid, state in own if sid not in settled]
    if rejoin:
        conn.execute(
            delete(deliveries).where(_D.issue_id == issue_id, _D.subscriber_id.in_(rejoin))
        )
    return settled


def _members(conn: Connection, batch: BatchRow, expression: str, due: datetime) -> list[Any]:
    """The batch's members in id order: id, email, name, token, receiving now."""
    return [
        member
        for member in conn.execute(
            select(
                subscribers.c.id,
                subscribers.c.email,
                subscribers.c.name,
                subscribers.c.token,
                and_(receiving(due), planned(expression)).label("receiving"),
            )
            .where(subscribers.c.id.between(batch.first_id, batch.last_id))
            .order_by(subscribers.c.id)
        )
        if batch.holds(member[0])
    ]


def _cut(
    conn: Connection, issue_id: int, batch: BatchRow, number: int, rest: list[Any], now: datetime
) -> None:
    """The part of a released batch past what one claim takes: released under `number`."""
    _next_number(conn, issue_id, number)
    first = rest[0][0]
    conn.execute(
        insert(delivery_batches),
        {
            "issue_id": issue_id,
            "number": number,
            "first_id": first,
            "last_id": batch.last_id,
            "recipients": len(rest),
            "skipped": 0,
            "excluded": encode_members(first, batch.last_id, (m[0] for m in rest)),
            "listed": False,
            "state": RELEASED,
            "worker": None,
            "claimed_at": now,
            "updated_at": now,
            "error": batch.error,
            "attempts": 1,
        },
    )


def claim_listed(
    conn: Connection,
    issue_id: int,
    number: int,
    size: int,
    worker: str,
    now: datetime,
    due: datetime,
) -> Batch | None:
    """Readers waiting alone (pending rows of their own, their wave due) as a listed batch
    numbered `number`: their rows move in flight; those who left or paused since are
    skipped on their rows."""
    rows = conn.execute(_WAITING_ALONE, {"issue": issue_id, "size": size, "now": due}).all()
    if not rows:
        return None
    _next_number(conn, issue_id, number)
    recipients = [Recipient(sid, e, n, t) for sid, e, n, t, _, ok in rows if ok]
    gone = [sid for sid, *_, status, _ in rows if status != ACTIVE]
    paused = [sid for sid, *_, status, ok in rows if status == ACTIVE and not ok]
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
    if paused:
        conn.execute(
            update(deliveries)
            .where(mine, _D.subscriber_id.in_(paused))
            .values(state=SKIPPED, error=PAUSED, updated_at=now)
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
    return Batch(issue_id, number, Recipients.of(recipients), rows[0][0], rows[-1][0])
