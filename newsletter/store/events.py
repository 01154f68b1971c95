"""Webhook idempotency, and a provider's events applied a POST at a time: each event id acts
once, however often (and however concurrently) it is delivered.

`Events.apply` runs one POST in one transaction, set-based: the ids are recorded with one
statement that also says which were seen before, then the suppressions, the confirmations of
uncertain deliveries (`Deliveries.confirm_uncertain`) and the opens/clicks counters, each one
statement (or one per issue), whatever the number of events. A list travels as one bound
parameter (a JSON array read by json_each on SQLite, by json_array_elements_text or an array
on PostgreSQL), so a statement costs the same to send and plan for 1 event as for 5,000.
These are plain SQL text: they run for every POST, and building Core constructs cost more
than running them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, TextClause, bindparam, insert, text
from sqlalchemy.exc import IntegrityError

from newsletter.exceptions import StoreError
from newsletter.records import SubscriberStatus, WebhookEvent, WebhookOutcome, utcnow
from newsletter.store.schema import UTCDateTime, webhook_events

if TYPE_CHECKING:
    from newsletter.store import Store

# sg_event_id is stored in webhook_events.event_id, a String(200).
EVENT_ID_MAX = 200
HARD_SUPPRESSIONS = (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)
# PostgreSQL's answers to two transactions that crossed (deadlock, serialization failure):
# the whole POST is simply applied again.
RETRY_SQLSTATES = {"40P01", "40001"}
ATTEMPTS = 5
# Where each kind of engagement event is counted: [opens, clicks, machine opens].
ENGAGEMENT_COLUMNS = {"open": 0, "click": 1, "machine_open": 2}


def final_suppressions(events: Iterable[WebhookEvent]) -> dict[str, str]:
    """email_key -> the status a batch leaves it with, as if applied one by one: the first
    bounce or complaint wins (neither replaces the other), an unsubscribe never replaces
    either. (Applied only to active, unconfirmed or unsubscribed rows: a worse status is
    never undone.)"""
    final: dict[str, str] = {}
    for e in events:
        if e.kind != "suppress":
            continue
        current = final.get(e.email_key)
        if current is None or (
            current == SubscriberStatus.UNSUBSCRIBED and e.status in HARD_SUPPRESSIONS
        ):
            final[e.email_key] = e.status
    return final


class Events:
    def __init__(self, store: Store) -> None:
        self._store = store
        now = bindparam("now", type_=UTCDateTime)
        self._first_seen: TextClause
        self._suppress: TextClause
        if store.is_sqlite:
            # "WHERE true": SQLite would read the ON of ON CONFLICT as a join constraint.
            self._first_seen = text(
                "INSERT INTO webhook_events (event_id, received_at) "
                "SELECT value, :now FROM json_each(:ids) WHERE true "
                "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
            ).bindparams(now)
            # "+status": without it SQLite may walk the status index (every active subscriber)
            # instead of looking each address up in the unique email_key index.
            self._suppress = text(
                "UPDATE subscribers SET status = :status, updated_at = :now "
                "WHERE email_key IN (SELECT value FROM json_each(:keys)) "
                "AND +status IN ('active', 'unconfirmed', 'unsubscribed') AND status <> :status"
            ).bindparams(now)
        else:
            # Answers with the ids that were already there (usually none: one NULL) rather
            # than with every new one: fetching a thousand rows cost more than the insert.
            # Rows are inserted in the (sorted) order given: one lock order for everyone.
            self._first_seen = text(
                "WITH given AS (SELECT value AS event_id "
                "FROM json_array_elements_text(CAST(:ids AS json))), "
                "added AS (INSERT INTO webhook_events (event_id, received_at) "
                "SELECT event_id, :now FROM given "
                "ON CONFLICT (event_id) DO NOTHING RETURNING event_id) "
                "SELECT json_agg(event_id) FROM given "
                "WHERE event_id NOT IN (SELECT event_id FROM added)"
            ).bindparams(now)
            # One statement for every status: rows are locked in one (index) order.
            self._suppress = text(
                "UPDATE subscribers AS s SET status = t.status, updated_at = :now "
                "FROM unnest(CAST(:keys AS varchar[]), CAST(:statuses AS varchar[])) "
                "AS t(key, status) "
                "WHERE s.email_key = t.key AND s.status IN ('active', 'unconfirmed', "
                "'unsubscribed') AND s.status <> t.status"
            ).bindparams(now)
        self._count = text(
            "UPDATE issues SET opens = opens + :opens, clicks = clicks + :clicks, "
            "machine_opens = machine_opens + :machine WHERE id = :id"
        )
        # A reader's last human open (what `opened<90d` segments read): only ever later.
        self._opened = text(
            "UPDATE subscribers SET last_opened_at = :at WHERE id = :id "
            "AND (last_opened_at IS NULL OR last_opened_at < :at)"
        ).bindparams(bindparam("at", type_=UTCDateTime))

    # -- webhook idempotency ---------------------------------------------------------------
    def first_time(self, event_id: str) -> bool:
        """True the first time an event id is seen; redelivered events return False."""
        with self._store.transaction() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(webhook_events).values(event_id=event_id, received_at=utcnow())
                    )
            except IntegrityError:
                return False
            return True

    # -- a POST of events ------------------------------------------------------------------
    def apply(self, events: Sequence[WebhookEvent]) -> WebhookOutcome:
        """Apply one verified POST in one transaction: all of it or none of it. Each event
        id acts once, also when the provider redelivers a batch while the first delivery is
        still being applied (the second waits on the first's ids, then finds them)."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                # On SQLite, POSTs applied by several threads of one server queue on the
                # store's writer lock rather than in SQLite's sleeping busy handler.
                with self._store.transaction() as conn:
                    return self._apply(conn, events)
            except StoreError as exc:
                cause = getattr(exc.__cause__, "orig", None)
                if getattr(cause, "sqlstate", None) not in RETRY_SQLSTATES or attempt == ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _apply(self, conn: Connection, events: Sequence[WebhookEvent]) -> WebhookOutcome:
        now = utcnow()
        ids = sorted({e.event_id for e in events if e.event_id is not None})
        fresh = self._record(conn, ids, now)
        kept: list[WebhookEvent] = []
        duplicates = 0
        for e in events:
            if e.event_id is not None:
                if e.event_id not in fresh:
                    duplicates += 1
                    continue
                fresh.discard(e.event_id)  # the same id twice in one POST counts once too
            kept.append(e)
        suppressed = self._suppress_all(conn, final_suppressions(kept), now)
        confirmed = self._store.deliveries.confirm_uncertain(
            conn, {(e.issue_id, e.subscriber_id) for e in kept if e.kind == "confirm"}, now
        )
        counts: dict[int, list[int]] = {}
        # The editors' chart: the same counts per issue and hour the reader opened or clicked
        # (SendGrid's timestamp; the hour of receipt when it gave none or one from the future).
        hours: dict[tuple[int, int], list[int]] = {}
        opened: dict[int, int] = {}
        received = int(now.timestamp())
        for e in kept:
            column = ENGAGEMENT_COLUMNS.get(e.kind)
            if column is None:
                continue
            counts.setdefault(e.issue_id, [0, 0, 0])[column] += 1
            at = e.at if 0 < e.at <= received else received
            hours.setdefault((e.issue_id, at - at % 3600), [0, 0, 0])[column] += 1
            if e.kind == "open" and e.subscriber_id:
                opened[e.subscriber_id] = max(at, opened.get(e.subscriber_id, 0))
        for issue_id, (opens, clicks, machine) in sorted(counts.items()):
            conn.execute(
                self._count, {"id": issue_id, "opens": opens, "clicks": clicks, "machine": machine}
            )
        for subscriber_id, at in sorted(opened.items()):
            conn.execute(self._opened, {"id": subscriber_id, "at": datetime.fromtimestamp(at, UTC)})
        self._store.engagement.tally_hours(conn, hours)
        return WebhookOutcome(
            suppressed=suppressed,
            confirmed=confirmed,
            opens=sum(c[0] for c in counts.values()),
            clicks=sum(c[1] for c in counts.values()),
            machine_opens=sum(c[2] for c in counts.values()),
            duplicates=duplicates,
        )

    def _record(self, conn: Connection, event_ids: list[str], now: datetime) -> set[str]:
        """Record the ids; return those never seen before. Concurrent redeliveries of the
        same ids wait for each other on the primary key, so each id is new to one only."""
        if not event_ids:
            return set()
        params = {"ids": json.dumps(event_ids), "now": now}
        if self._store.is_sqlite:
            return set(conn.scalars(self._first_seen, params))
        return set(event_ids).difference(conn.scalar(self._first_seen, params) or ())

    def _suppress_all(self, conn: Connection, final: dict[str, str], now: datetime) -> int:
        if not final:
            return 0
        keys = sorted(final)
        if not self._store.is_sqlite:
            statuses = [final[k] for k in keys]
            params = {"keys": keys, "statuses": statuses, "now": now}
            return conn.execute(self._suppress, params).rowcount
        changed = 0
        for status in sorted(set(final.values())):
            chosen = [k for k in keys if final[k] == status]
            params = {"keys": json.dumps(chosen), "status": status, "now": now}
            changed += conn.execute(self._suppress, params).rowcount
        return changed
