"""Planning an issue's audience as a definition (`delivery_plans`), and reader time's waves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, exists, func, insert, or_, select

from newsletter.readertime import ReaderTime, waves
from newsletter.records import WaveProgress, utcnow
from newsletter.segment_syntax import anchored
from newsletter.store.audience import planned, receiving
from newsletter.store.deliveries.rows import IN_FLIGHT, PENDING, RELEASED, SEGMENT, SENT, LogPart
from newsletter.store.schema import deliveries, delivery_batches, delivery_plans, subscribers

_B = delivery_batches.c
_D = deliveries.c
_P = delivery_plans.c


def _insert_plan(
    conn: Connection,
    issue_id: int,
    segment: str,
    last_id: int,
    size: int,
    *,
    claimed_to: int,
    at: datetime,
    expression: str = "",
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
            expression=expression,
        )
    )


class Plans(LogPart):
    def plan(
        self,
        conn: Connection,
        issue_id: int,
        segment: str = "",
        *,
        reader_time: ReaderTime | None = None,
        now: datetime | None = None,
    ) -> None:
        """The new issue's audience as a definition, in the transaction that creates it
        (`Issues.create_issue`): its segment (`segment`, checked by `newsletter.segments`;
        "" for every receiving subscriber) with its relative ages anchored at `now`, and the
        highest id it matches now (one count). Nothing per recipient is written: each claim
        evaluates the definition over the next id range (who is active, not paused and in
        the segment then). With `reader_time` each reader's row is written instead, carrying
        the instant of their wave (see ARCHITECTURE.md's invariants)."""
        now = now or utcnow()
        expression = anchored(segment, now)
        where = and_(receiving(now), planned(expression))
        if reader_time is not None:
            self._plan_waves(conn, issue_id, reader_time, now, where)
            return
        last_id, size = conn.execute(
            select(func.max(subscribers.c.id), func.count()).where(where)
        ).one()
        kind = SEGMENT if not expression else "segment"
        _insert_plan(
            conn,
            issue_id,
            kind,
            last_id or 0,
            size,
            claimed_to=0,
            at=utcnow(),
            expression=expression,
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
