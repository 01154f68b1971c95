"""Every table and every SQL statement of the project (SQLAlchemy Core).

The delivery log lives here: one row per (issue, subscriber) whose `state` is the truth about
who has the issue. The scheduler, the CLI, the web side and the workers all go through `Store`,
so the same code runs on the embedded SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

from newsletter import migrations
from newsletter.errors import NotFound, StoreError

# Delivery states (see DESIGN.md): pending -> in_flight -> sent | failed | uncertain; skipped
# when the subscriber left before their batch went out.
PENDING, IN_FLIGHT, SENT, FAILED, UNCERTAIN, SKIPPED = (
    "pending",
    "in_flight",
    "sent",
    "failed",
    "uncertain",
    "skipped",
)
DELIVERY_STATES = (PENDING, IN_FLIGHT, SENT, FAILED, UNCERTAIN, SKIPPED)

# Subscriber statuses; only `active` ones get issues.
ACTIVE, UNCONFIRMED, UNSUBSCRIBED, BOUNCED, COMPLAINED = (
    "active",
    "unconfirmed",
    "unsubscribed",
    "bounced",
    "complained",
)
SUPPRESSED = (UNSUBSCRIBED, BOUNCED, COMPLAINED)

# Issue statuses.
ISSUE_SENDING, ISSUE_PAUSED, ISSUE_SENT, ISSUE_CANCELLED, ISSUE_HELD = (
    "sending",
    "paused",
    "sent",
    "cancelled",
    "held",
)
# Article statuses in the queue.
QUEUED, PUBLISHED, REMOVED = "queued", "published", "removed"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the backend stores."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

meta_table = Table(
    "meta", metadata, Column("key", String(64), primary_key=True), Column("value", Text)
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, default=""),
    Column("status", String(20), nullable=False, default=ACTIVE),
    Column("token", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_subscribers_status", "status", "id"),
)

articles = Table(
    "articles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("filename", String(255), nullable=False, unique=True),
    Column("title", String(500), nullable=False, default=""),
    Column("position", Integer, nullable=False),
    Column("status", String(20), nullable=False, default=QUEUED),
    Column("queued_at", UTCDateTime, nullable=False),
    Column("not_before", UTCDateTime),
    Column("last_error", Text),
    Column("issue_id", Integer, ForeignKey("issues.id")),
)

issues = Table(
    "issues",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("slug", String(200), nullable=False, unique=True),
    Column("subject", String(500), nullable=False),
    Column("preheader", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("archive_html", Text, nullable=False, default=""),
    Column("placeholder_nonce", String(32), nullable=False),
    Column("status", String(20), nullable=False, default=ISSUE_SENDING),
    Column("created_at", UTCDateTime, nullable=False),
    Column("scheduled_for", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("last_error", Text),
    Column("next_batch", Integer, nullable=False, default=0),
    Column("failed_batches", Integer, nullable=False, default=0),
    Column("opens", Integer, nullable=False, default=0),
    Column("clicks", Integer, nullable=False, default=0),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id"), primary_key=True),
    Column("subscriber_id", Integer, primary_key=True),
    Column("state", String(20), nullable=False, default=PENDING),
    Column("batch", Integer),
    Column("worker", String(100)),
    Column("claimed_at", UTCDateTime),
    Column("message_id", String(200)),
    Column("error", Text),
    Column("retryable", Boolean),
    Column("attempts", Integer, nullable=False, default=0),
    Column("updated_at", UTCDateTime),
    # Every look-up by batch also names a state (in flight, uncertain): this one index serves
    # them all, and a second one on `batch` would double the index writes of every claim.
    Index("ix_deliveries_state", "issue_id", "state", "subscriber_id"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("received_at", UTCDateTime, nullable=False),
)


class Recipient(NamedTuple):
    """One subscriber in a claimed batch, with what a provider needs to address them.
    (A named tuple: a million of them are made per issue.)"""

    subscriber_id: int
    email: str
    name: str
    token: str


@dataclass(frozen=True)
class Batch:
    issue_id: int
    number: int
    recipients: tuple[Recipient, ...]
    first_id: int  # the lowest and highest subscriber ids claimed: the next claim starts
    last_id: int  # after `last_id`, and the batch's rows lie between the two


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # Let SQLAlchemy's "begin" event below start transactions, not the sqlite3 module.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """Writers take SQLite's write lock up front (BEGIN IMMEDIATE): a transaction that reads
    and then writes (claiming a batch, taking a lease) can then neither fail half-way with
    "database is locked" nor act on a stale read while another process writes."""
    mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {mode}")


class Store:
    """The project's database: open it with a SQLAlchemy URL, then call its methods."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.safe_url = make_url(url).render_as_string(hide_password=True)
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        if create:
            migrations.upgrade(self.engine)
        self._webhook_sql = _WebhookSQL(self.is_sqlite)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[Connection]:
        """One transaction; database failures become a StoreError that says what broke.
        Read-only ones (`write=False`) do not take SQLite's write lock."""
        try:
            with self.engine.connect() as conn:
                if not write:
                    conn = conn.execution_options(sqlite_begin="DEFERRED")
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            detail = str(exc.orig).strip() or type(exc.orig).__name__
            raise StoreError(f"database {self.safe_url}: {detail}") from exc

    # -- meta ------------------------------------------------------------------------------
    def secret_key(self) -> str:
        """A per-database signing key, made once, for when NEWSLETTER_SECRET_KEY is not set."""
        with self._tx() as conn:
            value = conn.scalar(select(meta_table.c.value).where(meta_table.c.key == "secret"))
            if value is None:
                value = secrets.token_urlsafe(32)
                try:
                    with conn.begin_nested():
                        conn.execute(insert(meta_table).values(key="secret", value=value))
                except IntegrityError:  # another process made it first: use theirs
                    value = conn.scalar(
                        select(meta_table.c.value).where(meta_table.c.key == "secret")
                    )
            return value

    def get_meta(self, key: str) -> str | None:
        with self._tx(write=False) as conn:
            return conn.scalar(select(meta_table.c.value).where(meta_table.c.key == key))

    def set_meta(self, key: str, value: str | None) -> None:
        """Set (or with None, delete) a small piece of state such as the last served tick."""
        with self._tx() as conn:
            if value is None:
                conn.execute(delete(meta_table).where(meta_table.c.key == key))
                return
            upsert = (sqlite_insert if self.is_sqlite else pg_insert)(meta_table).values(
                key=key, value=value
            )
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[meta_table.c.key], set_={"value": upsert.excluded.value}
                )
            )

    # -- subscribers -----------------------------------------------------------------------
    def existing_subscribers(self, email_keys: Iterable[str]) -> dict[str, str]:
        """email_key -> status for the given lower-cased addresses that are already known."""
        keys = list(email_keys)
        found: dict[str, str] = {}
        with self._tx(write=False) as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                rows = conn.execute(
                    select(subscribers.c.email_key, subscribers.c.status).where(
                        subscribers.c.email_key.in_(chunk)
                    )
                )
                found.update({k: s for k, s in rows})
        return found

    def add_subscribers(self, rows: Iterable[dict], chunk_size: int = 5000) -> int:
        """Insert subscribers (dicts of email, name, status, token) in one transaction."""
        now = utcnow()
        count = 0
        with self._tx() as conn:
            chunk: list[dict] = []
            for row in rows:
                chunk.append(
                    {
                        "email": row["email"],
                        "email_key": row["email"].lower(),
                        "name": row.get("name", ""),
                        "status": row.get("status", ACTIVE),
                        "token": row["token"],
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                if len(chunk) >= chunk_size:
                    conn.execute(insert(subscribers), chunk)
                    count += len(chunk)
                    chunk = []
            if chunk:
                conn.execute(insert(subscribers), chunk)
                count += len(chunk)
        return count

    def update_subscriber_names(self, rows: Iterable[tuple[str, str]]) -> int:
        """Refresh names of known subscribers (email_key, name) without touching their status."""
        params = [{"k": k, "n": n} for k, n in rows]
        if not params:
            return 0
        with self._tx() as conn:
            conn.execute(
                update(subscribers)
                .where(subscribers.c.email_key == bindparam("k"))
                .values(name=bindparam("n"), updated_at=utcnow()),
                params,
            )
        return len(params)

    def list_subscribers(self, status: str | None = None) -> Iterator[dict]:
        query = select(
            subscribers.c.id,
            subscribers.c.email,
            subscribers.c.name,
            subscribers.c.status,
            subscribers.c.created_at,
            subscribers.c.updated_at,
        ).order_by(subscribers.c.id)
        if status:
            query = query.where(subscribers.c.status == status)
        with self._tx(write=False) as conn:
            for row in conn.execute(query).mappings():
                yield dict(row)

    def subscriber_by_email(self, email: str) -> dict | None:
        with self._tx(write=False) as conn:
            row = (
                conn.execute(
                    select(subscribers).where(subscribers.c.email_key == email.strip().lower())
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def subscriber_by_token(self, token: str) -> dict | None:
        with self._tx(write=False) as conn:
            row = (
                conn.execute(select(subscribers).where(subscribers.c.token == token))
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def set_subscriber_status(self, subscriber_id: int, status: str) -> None:
        with self._tx() as conn:
            conn.execute(
                update(subscribers)
                .where(subscribers.c.id == subscriber_id)
                .values(status=status, updated_at=utcnow())
            )

    def suppress_subscriber(self, email: str, status: str) -> bool:
        """Mark an address unsubscribed/bounced/complained; a worse status is never undone."""
        with self._tx() as conn:
            result = conn.execute(
                update(subscribers)
                .where(subscribers.c.email_key == email.strip().lower())
                .where(subscribers.c.status.in_((ACTIVE, UNCONFIRMED, UNSUBSCRIBED)))
                .values(status=status, updated_at=utcnow())
            )
            return result.rowcount > 0

    def remove_subscriber(self, email: str) -> None:
        """Delete a subscriber and their delivery rows (a removal, not an unsubscribe)."""
        with self._tx() as conn:
            sid = conn.scalar(
                select(subscribers.c.id).where(subscribers.c.email_key == email.strip().lower())
            )
            if sid is None:
                raise NotFound(f"no subscriber {email!r}")
            conn.execute(delete(deliveries).where(deliveries.c.subscriber_id == sid))
            conn.execute(delete(subscribers).where(subscribers.c.id == sid))

    def active_subscriber_batches(self, size: int) -> Iterator[list[Recipient]]:
        """Active subscribers in id order, `size` at a time, without loading them all."""
        last = 0
        while True:
            with self._tx(write=False) as conn:
                rows = conn.execute(
                    select(
                        subscribers.c.id,
                        subscribers.c.email,
                        subscribers.c.name,
                        subscribers.c.token,
                    )
                    .where(subscribers.c.status == ACTIVE, subscribers.c.id > last)
                    .order_by(subscribers.c.id)
                    .limit(size)
                ).all()
            if not rows:
                return
            yield [Recipient(r.id, r.email, r.name, r.token) for r in rows]
            last = rows[-1].id

    def count_subscribers(self, status: str | None = ACTIVE) -> int:
        query = select(func.count()).select_from(subscribers)
        if status:
            query = query.where(subscribers.c.status == status)
        with self._tx(write=False) as conn:
            return conn.scalar(query)

    # -- the article queue -----------------------------------------------------------------
    def queue_article(self, filename: str, title: str, not_before: datetime | None) -> int:
        """Put an article at the end of the queue (or back there if it was removed)."""
        with self._tx() as conn:
            position = (conn.scalar(select(func.max(articles.c.position))) or 0) + 1
            existing = conn.execute(
                select(articles.c.id, articles.c.status).where(articles.c.filename == filename)
            ).first()
            values = dict(
                title=title,
                position=position,
                status=QUEUED,
                queued_at=utcnow(),
                not_before=not_before,
                last_error=None,
                issue_id=None,
            )
            if existing is not None:
                if existing.status == QUEUED:
                    conn.execute(
                        update(articles)
                        .where(articles.c.id == existing.id)
                        .values(title=title, not_before=not_before)
                    )
                    return existing.id
                conn.execute(update(articles).where(articles.c.id == existing.id).values(**values))
                return existing.id
            return conn.execute(
                insert(articles).values(filename=filename, **values)
            ).inserted_primary_key[0]

    def known_article_files(self) -> set[str]:
        with self._tx(write=False) as conn:
            return set(conn.scalars(select(articles.c.filename)))

    def queued_articles(self) -> list[dict]:
        """Queued articles in the order they will go out (FIFO by position)."""
        with self._tx(write=False) as conn:
            rows = conn.execute(
                select(articles).where(articles.c.status == QUEUED).order_by(articles.c.position)
            ).mappings()
            return [dict(r) for r in rows]

    def set_article_error(self, article_id: int, error: str | None) -> None:
        with self._tx() as conn:
            conn.execute(
                update(articles).where(articles.c.id == article_id).values(last_error=error)
            )

    def remove_article(self, filename: str) -> dict:
        with self._tx() as conn:
            row = (
                conn.execute(
                    select(articles)
                    .where(articles.c.filename == filename)
                    .where(articles.c.status == QUEUED)
                )
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"no queued article {filename!r} (see 'newsletter queue list')")
            conn.execute(update(articles).where(articles.c.id == row["id"]).values(status=REMOVED))
            return dict(row)

    def create_issue(
        self,
        *,
        slug: str,
        subject: str,
        preheader: str,
        html: str,
        text: str,
        archive_html: str,
        placeholder_nonce: str,
        article_ids: list[int],
        scheduled_for: datetime | None = None,
    ) -> int:
        """Create the issue, take its articles off the queue and plan one delivery per active
        subscriber, all in one transaction: either the issue exists with its whole plan, or
        nothing changed."""
        now = utcnow()
        with self._tx() as conn:
            issue_id = conn.execute(
                insert(issues).values(
                    slug=slug,
                    subject=subject,
                    preheader=preheader,
                    html=html,
                    text=text,
                    archive_html=archive_html,
                    placeholder_nonce=placeholder_nonce,
                    status=ISSUE_SENDING,
                    created_at=now,
                    scheduled_for=scheduled_for,
                    next_batch=0,
                    failed_batches=0,
                    opens=0,
                    clicks=0,
                )
            ).inserted_primary_key[0]
            if article_ids:
                conn.execute(
                    update(articles)
                    .where(articles.c.id.in_(article_ids))
                    .values(status=PUBLISHED, issue_id=issue_id, last_error=None)
                )
            conn.execute(
                insert(deliveries).from_select(
                    ["issue_id", "subscriber_id", "state", "attempts"],
                    select(literal(issue_id), subscribers.c.id, literal(PENDING), literal(0)).where(
                        subscribers.c.status == ACTIVE
                    ),
                )
            )
        return issue_id

    def get_issue(self, issue_id: int) -> dict:
        with self._tx(write=False) as conn:
            row = conn.execute(select(issues).where(issues.c.id == issue_id)).mappings().first()
        if row is None:
            raise NotFound(f"no issue {issue_id} (see 'newsletter issues')")
        return dict(row)

    def issue_by_slug(self, slug: str) -> dict | None:
        with self._tx(write=False) as conn:
            row = conn.execute(select(issues).where(issues.c.slug == slug)).mappings().first()
        return dict(row) if row else None

    def list_issues(self) -> list[dict]:
        with self._tx(write=False) as conn:
            rows = conn.execute(
                select(
                    issues.c.id,
                    issues.c.slug,
                    issues.c.subject,
                    issues.c.preheader,
                    issues.c.status,
                    issues.c.created_at,
                    issues.c.finished_at,
                    issues.c.last_error,
                ).order_by(issues.c.id.desc())
            ).mappings()
            return [dict(r) for r in rows]

    def unfinished_issues(self) -> list[int]:
        with self._tx(write=False) as conn:
            return list(
                conn.scalars(
                    select(issues.c.id)
                    .where(issues.c.status == ISSUE_SENDING)
                    .order_by(issues.c.id)
                )
            )

    def set_issue_status(
        self,
        issue_id: int,
        status: str,
        *,
        error: str | None = None,
        only_from: tuple[str, ...] = (),
    ) -> bool:
        values: dict = {"status": status}
        if error is not None:
            values["last_error"] = error
        if status in (ISSUE_SENT, ISSUE_CANCELLED):
            values["finished_at"] = utcnow()
        query = update(issues).where(issues.c.id == issue_id)
        if only_from:
            query = query.where(issues.c.status.in_(only_from))
        with self._tx() as conn:
            return conn.execute(query.values(**values)).rowcount > 0

    def issue_status(self, issue_id: int) -> str:
        with self._tx(write=False) as conn:
            status = conn.scalar(select(issues.c.status).where(issues.c.id == issue_id))
        if status is None:
            raise NotFound(f"no issue {issue_id}")
        return status

    def record_failed_batch(self, issue_id: int, error: str) -> int:
        with self._tx() as conn:
            conn.execute(
                update(issues)
                .where(issues.c.id == issue_id)
                .values(failed_batches=issues.c.failed_batches + 1, last_error=error)
            )
            return conn.scalar(select(issues.c.failed_batches).where(issues.c.id == issue_id))

    def add_engagement(self, issue_id: int, opens: int = 0, clicks: int = 0) -> None:
        with self._tx() as conn:
            conn.execute(
                update(issues)
                .where(issues.c.id == issue_id)
                .values(opens=issues.c.opens + opens, clicks=issues.c.clicks + clicks)
            )

    # -- the delivery log ------------------------------------------------------------------
    def claim_batch(
        self, issue_id: int, size: int, worker: str = "main", after: int = 0
    ) -> Batch | None:
        """Take the next `size` pending rows (of subscribers after `after`), mark them in flight
        under a new batch number and return who they are. Rows of subscribers who left since
        planning become `skipped`. Senders pass the last id they claimed as `after`: on
        PostgreSQL the index still holds the old versions of rows already claimed, and
        starting past them keeps each claim from wading through them."""
        now = utcnow()
        with self._tx() as conn:
            number = conn.execute(
                update(issues)
                .where(issues.c.id == issue_id)
                .values(next_batch=issues.c.next_batch + 1)
                .returning(issues.c.next_batch)
            ).scalar_one()
            pending = (
                select(deliveries.c.subscriber_id)
                .where(
                    deliveries.c.issue_id == issue_id,
                    deliveries.c.state == PENDING,
                    deliveries.c.subscriber_id > after,
                )
                .order_by(deliveries.c.subscriber_id)
                .limit(size)
            )
            if self.is_sqlite:
                # The transaction holds SQLite's write lock (BEGIN IMMEDIATE), so the first
                # `size` pending rows are exactly the pending rows of their id range.
                ids = list(conn.scalars(pending))
                claim = deliveries.c.subscriber_id.between(ids[0], ids[-1]) if ids else None
                claim = and_(claim, deliveries.c.state == PENDING) if ids else None
            else:
                # Concurrent claimers skip each other's locked rows. The ids travel as one
                # array: an IN list of a thousand parameters is slow to plan, and the
                # one-statement form UPDATE ... IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)
                # may re-run the subquery per row and claim far more than n rows.
                ids = list(conn.scalars(pending.with_for_update(skip_locked=True)))
                claim = deliveries.c.subscriber_id == func.any(
                    bindparam("claimed", ids, type_=postgresql.ARRAY(Integer))
                )
            if ids:
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.issue_id == issue_id, claim)
                    .values(
                        state=IN_FLIGHT,
                        batch=number,
                        worker=worker,
                        claimed_at=now,
                        updated_at=now,
                        attempts=deliveries.c.attempts + 1,
                    )
                )
            if not ids:
                return None
            # Who they are: a primary-key range scan of subscribers, kept to the claimed ids.
            claimed = set(ids)
            rows = conn.execute(
                select(
                    subscribers.c.id,
                    subscribers.c.email,
                    subscribers.c.name,
                    subscribers.c.token,
                    subscribers.c.status,
                )
                .where(subscribers.c.id.between(ids[0], ids[-1]))
                .order_by(subscribers.c.id)
            )
            recipients = []
            gone = []
            for sid, email, name, token, status in rows:
                if sid not in claimed:
                    continue
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
        return Batch(issue_id, number, tuple(recipients), ids[0], ids[-1])

    @staticmethod
    def _in_flight(batch: Batch):
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
        with self._tx() as conn:
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

    def fail_deliveries(self, batch: Batch, reasons: dict[int, str]) -> int:
        """Mark some rows of an in-flight batch failed for good (the provider refuses them)."""
        if not reasons:
            return 0
        with self._tx() as conn:
            conn.execute(
                update(deliveries)
                .where(self._in_flight(batch), deliveries.c.subscriber_id == bindparam("sid"))
                .values(state=FAILED, error=bindparam("why"), retryable=False, updated_at=utcnow()),
                [{"sid": sid, "why": why} for sid, why in reasons.items()],
            )
        return len(reasons)

    def release_batch(self, batch: Batch, error: str | None = None) -> int:
        """Put an in-flight batch back to pending: the provider surely did not take it (a
        clear error answer), so sending it again later is safe."""
        with self._tx() as conn:
            return conn.execute(
                update(deliveries)
                .where(self._in_flight(batch))
                .values(state=PENDING, error=error, worker=None, updated_at=utcnow())
            ).rowcount

    def mark_batch(
        self, batch: Batch, state: str, error: str | None = None, retryable: bool | None = None
    ) -> int:
        """Move an in-flight batch to failed or uncertain, keeping the reason."""
        with self._tx() as conn:
            return conn.execute(
                update(deliveries)
                .where(self._in_flight(batch))
                .values(state=state, error=error, retryable=retryable, updated_at=utcnow())
            ).rowcount

    def in_flight_claims(self, issue_id: int) -> list[tuple[str | None, datetime]]:
        """(worker, oldest claim time) for each sender with rows in flight for an issue."""
        with self._tx(write=False) as conn:
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
        with self._tx() as conn:
            return conn.execute(
                query.values(
                    state=UNCERTAIN,
                    updated_at=utcnow(),
                    error="in flight when its sender stopped: it may or may not have gone out",
                )
            ).rowcount

    def delivery_counts(self, issue_id: int) -> dict[str, int]:
        with self._tx(write=False) as conn:
            rows = conn.execute(
                select(deliveries.c.state, func.count())
                .where(deliveries.c.issue_id == issue_id)
                .group_by(deliveries.c.state)
            )
            counts = {state: 0 for state in DELIVERY_STATES}
            counts.update({state: n for state, n in rows})
        return counts

    def deliveries_in_state(self, issue_id: int, state: str) -> list[dict]:
        with self._tx(write=False) as conn:
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
            ).mappings()
            return [dict(r) for r in rows]

    def sent_by_worker(self, issue_id: int) -> dict[str, int]:
        """How many deliveries of an issue each sender recorded as sent."""
        with self._tx(write=False) as conn:
            rows = conn.execute(
                select(deliveries.c.worker, func.count())
                .where(deliveries.c.issue_id == issue_id, deliveries.c.state == SENT)
                .group_by(deliveries.c.worker)
            )
            return {worker or "-": n for worker, n in rows}

    def sent_emails(self, issue_id: int) -> list[str]:
        with self._tx(write=False) as conn:
            return list(
                conn.scalars(
                    select(subscribers.c.email)
                    .join(deliveries, deliveries.c.subscriber_id == subscribers.c.id)
                    .where(deliveries.c.issue_id == issue_id, deliveries.c.state == SENT)
                )
            )

    def settle_deliveries(
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
        values: dict = {"state": to_state, "updated_at": utcnow()}
        if to_state == PENDING:
            values.update(batch=None, worker=None)
        with self._tx() as conn:
            return conn.execute(query.values(**values)).rowcount

    # -- leases (one active scheduler, crash-safe takeover) ---------------------------------
    def acquire_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take or renew the lease `name`; succeeds if free, expired, or already ours."""
        now = utcnow()
        with self._tx() as conn:
            taken = conn.execute(
                update(leases)
                .where(leases.c.name == name)
                .where((leases.c.holder == holder) | (leases.c.expires_at < now))
                .values(holder=holder, expires_at=now + ttl)
            ).rowcount
            if taken:
                return True
            if conn.scalar(select(func.count()).select_from(leases).where(leases.c.name == name)):
                return False
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(leases).values(name=name, holder=holder, expires_at=now + ttl)
                    )
            except IntegrityError:
                return False
            return True

    def take_over_lease(self, name: str, old_holder: str, holder: str, ttl: timedelta) -> bool:
        """Take a lease from a holder known to be dead, only if it is still theirs."""
        with self._tx() as conn:
            return (
                conn.execute(
                    update(leases)
                    .where(leases.c.name == name, leases.c.holder == old_holder)
                    .values(holder=holder, expires_at=utcnow() + ttl)
                ).rowcount
                > 0
            )

    def release_lease(self, name: str, holder: str) -> None:
        with self._tx() as conn:
            conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))

    def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        with self._tx(write=False) as conn:
            row = conn.execute(
                select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)
            ).first()
        return (row.holder, row.expires_at) if row else None

    # -- webhook idempotency (the batched form is in the block at the end of this file) -----
    def first_time_event(self, event_id: str) -> bool:
        """True the first time an event id is seen; redelivered events return False."""
        with self._tx() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(webhook_events).values(event_id=event_id, received_at=utcnow())
                    )
            except IntegrityError:
                return False
            return True

    # -- double opt-in ---------------------------------------------------------------------
    def confirm_subscriber(self, subscriber_id: int) -> bool:
        """Activate a pending (unconfirmed) subscriber. One conditional UPDATE, so a confirm
        link can never reactivate an address that unsubscribed, bounced or complained, even
        if that happened a moment before the click."""
        with self._tx() as conn:
            return (
                conn.execute(
                    update(subscribers)
                    .where(subscribers.c.id == subscriber_id)
                    .where(subscribers.c.status == UNCONFIRMED)
                    .values(status=ACTIVE, updated_at=utcnow())
                ).rowcount
                > 0
            )


# =============================================================================================
# SendGrid event webhook: one signed POST applied in one transaction, set-based.
# (Kept together so it moves as one piece: the dedupe belongs with the events aggregate, the
# confirmations with the deliveries, the suppressions with the subscribers.)
# =============================================================================================

# sg_event_id is stored in webhook_events.event_id, a String(200).
EVENT_ID_MAX = 200
# A worse status is never undone: these are the statuses a suppression may replace.
SUPPRESSIBLE = (ACTIVE, UNCONFIRMED, UNSUBSCRIBED)
HARD_SUPPRESSIONS = (BOUNCED, COMPLAINED)
# PostgreSQL's answers to two transactions that crossed (deadlock, serialization failure):
# the whole POST is simply applied again.
RETRY_SQLSTATES = {"40P01", "40001"}
WEBHOOK_ATTEMPTS = 5


class WebhookEvent(NamedTuple):
    """One event of a verified POST, reduced to what it changes. `kind` is "suppress"
    (email_key + status), "confirm" (issue + subscriber) or "open" / "click" (issue).
    Events without an `event_id` cannot be deduplicated: only idempotent ones come so."""

    kind: str
    event_id: str | None
    email_key: str = ""
    status: str = ""
    issue_id: int = 0
    subscriber_id: int = 0


@dataclass(frozen=True)
class WebhookOutcome:
    suppressed: int = 0
    confirmed: int = 0
    opens: int = 0
    clicks: int = 0
    duplicates: int = 0


def final_suppressions(events: Iterable[WebhookEvent]) -> dict[str, str]:
    """email_key -> the status a batch leaves it with, as if applied one by one: the first
    bounce or complaint wins (neither replaces the other), an unsubscribe never replaces
    either."""
    final: dict[str, str] = {}
    for e in events:
        if e.kind != "suppress":
            continue
        current = final.get(e.email_key)
        if current is None or (current == UNSUBSCRIBED and e.status in HARD_SUPPRESSIONS):
            final[e.email_key] = e.status
    return final


class _WebhookSQL:
    """The set-based statements. A list travels as one bound parameter whatever its length
    (a JSON array read by json_each on SQLite, an array read by unnest on PostgreSQL), so a
    statement costs the same to send and plan for 1 event as for 5,000. Plain SQL text, as
    these run for every POST and building Core constructs cost more than running them."""

    def __init__(self, sqlite: bool) -> None:
        self.sqlite = sqlite
        now = bindparam("now", type_=UTCDateTime)
        if sqlite:
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
            self._confirm = text(
                "UPDATE deliveries SET state = 'sent', updated_at = :now "
                "WHERE issue_id = :issue_id AND state = 'uncertain' "
                "AND subscriber_id IN (SELECT value FROM json_each(:ids))"
            ).bindparams(now)
        else:
            # Answers with the ids that were already there (usually none: one NULL) rather
            # than with every new one: fetching a thousand rows cost more than the insert.
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
            self._confirm = text(
                "UPDATE deliveries SET state = 'sent', updated_at = :now "
                "WHERE issue_id = :issue_id AND state = 'uncertain' "
                "AND subscriber_id = ANY(CAST(:ids AS integer[]))"
            ).bindparams(now)
        self._count = text(
            "UPDATE issues SET opens = opens + :opens, clicks = clicks + :clicks WHERE id = :id"
        )

    def _list(self, values: list) -> object:
        return json.dumps(values) if self.sqlite else values

    def first_seen(self, conn: Connection, event_ids: list[str], now: datetime) -> set[str]:
        """Record the ids (sorted, one lock order); return those never seen before.
        Concurrent redeliveries of the same ids wait for each other on the primary key, so
        each id is new to exactly one of them."""
        if not event_ids:
            return set()
        params = {"ids": json.dumps(event_ids), "now": now}
        if self.sqlite:
            return set(conn.scalars(self._first_seen, params))
        return set(event_ids).difference(conn.scalar(self._first_seen, params) or ())

    def suppress(self, conn: Connection, final: dict[str, str], now: datetime) -> int:
        if not final:
            return 0
        keys = sorted(final)
        if not self.sqlite:
            statuses = [final[k] for k in keys]
            return conn.execute(
                self._suppress, {"keys": keys, "statuses": statuses, "now": now}
            ).rowcount
        changed = 0
        for status in sorted(set(final.values())):
            chosen = [k for k in keys if final[k] == status]
            changed += conn.execute(
                self._suppress, {"keys": json.dumps(chosen), "status": status, "now": now}
            ).rowcount
        return changed

    def confirm(self, conn: Connection, pairs: set[tuple[int, int]], now: datetime) -> int:
        """uncertain -> sent, only where the provider named this very issue and subscriber."""
        by_issue: dict[int, list[int]] = {}
        for issue_id, subscriber_id in sorted(pairs):
            by_issue.setdefault(issue_id, []).append(subscriber_id)
        return sum(
            conn.execute(
                self._confirm, {"issue_id": issue_id, "ids": self._list(ids), "now": now}
            ).rowcount
            for issue_id, ids in by_issue.items()
        )

    def count_engagement(self, conn: Connection, counts: dict[int, tuple[int, int]]) -> None:
        for issue_id, (opens, clicks) in sorted(counts.items()):
            conn.execute(self._count, {"id": issue_id, "opens": opens, "clicks": clicks})


def _apply_webhook_events(
    sql: _WebhookSQL, conn: Connection, events: Sequence[WebhookEvent]
) -> WebhookOutcome:
    now = utcnow()
    ids = sorted({e.event_id for e in events if e.event_id is not None})
    fresh = sql.first_seen(conn, ids, now)
    kept: list[WebhookEvent] = []
    duplicates = 0
    for e in events:
        if e.event_id is not None:
            if e.event_id not in fresh:
                duplicates += 1
                continue
            fresh.discard(e.event_id)  # the same id twice in one POST counts once too
        kept.append(e)
    suppressed = sql.suppress(conn, final_suppressions(kept), now)
    confirmed = sql.confirm(
        conn, {(e.issue_id, e.subscriber_id) for e in kept if e.kind == "confirm"}, now
    )
    counts: dict[int, list[int]] = {}
    for e in kept:
        if e.kind in ("open", "click"):
            slot = counts.setdefault(e.issue_id, [0, 0])
            slot[0 if e.kind == "open" else 1] += 1
    sql.count_engagement(conn, {i: (o, c) for i, (o, c) in counts.items()})
    return WebhookOutcome(
        suppressed=suppressed,
        confirmed=confirmed,
        opens=sum(o for o, _ in counts.values()),
        clicks=sum(c for _, c in counts.values()),
        duplicates=duplicates,
    )


def apply_webhook_events(store: Store, events: Sequence[WebhookEvent]) -> WebhookOutcome:
    """Apply one verified POST in one transaction: all of it or none of it. Each event id
    acts once, even when SendGrid redelivers a batch while the first delivery is still
    being applied."""
    sql = store._webhook_sql
    for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
        try:
            with store._tx() as conn:
                return _apply_webhook_events(sql, conn, events)
        except StoreError as exc:
            state = getattr(getattr(exc.__cause__, "orig", None), "sqlstate", None)
            if state not in RETRY_SQLSTATES or attempt == WEBHOOK_ATTEMPTS:
                raise
    raise AssertionError("unreachable")
