"""What the log answers, worked out from batches + exceptions: counts for `status` and the
workspace, who is in a state (paged), sent per worker, the issues a subscriber was sent."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from sqlalchemy import Connection, func, select

from newsletter.records import DeliveryRow, DeliveryState, utcnow
from newsletter.store.audience import planned, receiving
from newsletter.store.deliveries.rows import (
    BATCH_COLUMNS,
    IN_FLIGHT,
    PENDING,
    SENT,
    BatchRow,
    LogPart,
)
from newsletter.store.schema import deliveries, delivery_batches, delivery_plans, subscribers

_B = delivery_batches.c
_D = deliveries.c
_P = delivery_plans.c


class Reports(LogPart):
    def sent_issues(
        self, conn: Connection, subscriber_id: int, limit: int | None = None
    ) -> list[int]:
        """The issues recorded as sent to this subscriber, newest first (the bounce reports
        ask which issue a bounce answers): their own row's state, else their batch's."""
        sid = subscriber_id
        own = dict(conn.execute(select(_D.issue_id, _D.state).where(_D.subscriber_id == sid)).all())
        found = {issue_id for issue_id, state in own.items() if state == SENT}
        for issue_id, *columns in conn.execute(
            select(_B.issue_id, *BATCH_COLUMNS).where(
                _B.first_id <= sid, _B.last_id >= sid, _B.listed.is_(False), _B.state == SENT
            )
        ):
            if issue_id not in own and BatchRow.of(columns).holds(sid):
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
        complaint rate is complaints over these; pacing's windows too)."""
        with self._store.transaction(write=False) as conn:
            return sent_since(self, conn, since)

    def in_flight_count(self) -> int:
        """Recipients in batches in flight now, over every issue and process (pacing counts
        them against its caps before they are recorded)."""
        with self._store.transaction(write=False) as conn:
            return in_flight(conn)

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
                    receiving(utcnow()),
                    planned(log.expression),
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


def sent_since(part: LogPart, conn: Connection, since: datetime) -> int:
    """Sent batches recorded since `since`, less their recipients settled otherwise, plus
    recipients sent alone since then (also counted inside a paced claim's transaction)."""
    total = 0
    recent = set(conn.scalars(select(_B.issue_id).where(_B.updated_at >= since).distinct())) | set(
        conn.scalars(select(_D.issue_id).where(_D.updated_at >= since).distinct())
    )
    for issue_id in sorted(recent):
        log = part._log(conn, issue_id)
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


def in_flight(conn: Connection) -> int:
    """Recipients of every batch in flight, over every issue."""
    total = conn.scalar(
        select(func.coalesce(func.sum(_B.recipients), 0)).where(_B.state == IN_FLIGHT)
    )
    return int(total or 0)
