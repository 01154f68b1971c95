"""Every table of the project (SQLAlchemy Core), and the one type they share.

Imports nothing of the project's: the migrations (`newsletter.migrations`) import it to
compare the code with the database, and the store imports the migrations. Column defaults are
the stored strings of `newsletter.records`' states.
"""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    func,
)

# Engines opened by the store begin every SQLite transaction with BEGIN IMMEDIATE (the write
# lock), unless the connection carries this execution option with another mode: `reading`.
SQLITE_BEGIN_OPTION = "sqlite_begin"


def reading(conn: Connection) -> Connection:
    """The connection for a read-only transaction: on SQLite a plain (deferred) BEGIN, so a
    read never takes the write lock. Other backends ignore the option."""
    return conn.execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"})


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
    Column("status", String(20), nullable=False, default="active"),
    Column("token", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # The reader's IANA time zone (migration 0013); "": the newsletter's.
    Column("timezone", String(64), nullable=False, default=""),
    # The readers' lifecycle (migration 0012): when the welcome email went (at most once),
    # until when a reader paused the newsletter (planning skips them until then), and their
    # last human open (machine opens never count), which `opened<90d` segments read.
    Column("welcomed_at", UTCDateTime),
    Column("paused_until", UTCDateTime),
    Column("last_opened_at", UTCDateTime),
    # A copy of the subscriber's tags (`subscriber_tags`) as " films horror " ("" for none),
    # written only by store/tags.py in the same transaction: what segments read, so a count
    # at a million subscribers is one scan of the index below and never a join.
    Column("tag_text", Text, nullable=False, default=""),
    # Their tags before the last change and when it was (migration 0017, store/tags.py; a
    # server default only, so inserts made at older revisions do not name it): a
    # claim tells a reader who stopped matching a segment mid-send from one who never did.
    Column("tags_before", Text, nullable=False, server_default=""),
    Column("tags_changed_at", UTCDateTime),
    Index("ix_subscribers_status", "status", "id"),
    # Everything a segment and the receiving rule read (newsletter.segments): a count is one
    # covering-index scan (benchmarks/segment_count.py).
    Index(
        "ix_subscribers_audience",
        "status",
        "paused_until",
        "tag_text",
        "created_at",
        "last_opened_at",
    ),
)

articles = Table(
    "articles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("filename", String(255), nullable=False, unique=True),
    Column("title", String(500), nullable=False, default=""),
    Column("position", Integer, nullable=False),
    Column("status", String(20), nullable=False, default="queued"),
    Column("queued_at", UTCDateTime, nullable=False),
    Column("not_before", UTCDateTime),
    Column("last_error", Text),
    Column("issue_id", Integer, ForeignKey("issues.id")),
    # The editor who queued it (migration 0013); NULL: the CLI, a feed or a dropped file.
    Column("queued_by", Integer),
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
    Column("status", String(20), nullable=False, default="sending"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("scheduled_for", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("last_error", Text),
    Column("next_batch", Integer, nullable=False, default=0),
    Column("failed_batches", Integer, nullable=False, default=0),
    Column("opens", Integer, nullable=False, default=0),
    Column("clicks", Integer, nullable=False, default=0),
    # Opens a machine made (SendGrid's sg_machine_open, Apple's privacy proxy): not in `opens`.
    Column("machine_opens", Integer, nullable=False, default=0),
    # full or digest (newsletter.layouts); NULL for issues made before migration 0008.
    Column("layout", String(20)),
)

# Each article's own page on the web edition (/articles/<slug>), rendered at publication with
# its issue. The slug is the article's stable address: made unique when the page is created.
article_pages = Table(
    "article_pages",
    metadata,
    Column("slug", String(200), primary_key=True),
    Column("issue_id", Integer, ForeignKey("issues.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("title", String(500), nullable=False),
    Column("teaser", Text, nullable=False),
    Column("html", Text, nullable=False),
    Index("ix_article_pages_issue", "issue_id", "position"),
)

# The delivery log (store.deliveries, its only writer) keeps an issue's audience as a
# definition, one row per claimed batch, and one row per recipient only where that recipient's
# story differs from their batch's. The plan: the segment, the highest subscriber id at
# planning (who joins later is not in it), how many it held, how far claims have read.
delivery_plans = Table(
    "delivery_plans",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id"), primary_key=True),
    Column("segment", String(40), nullable=False, default="active"),
    Column("last_id", Integer, nullable=False),
    Column("size", Integer, nullable=False),
    Column("claimed_to", Integer, nullable=False, default=0),
    Column("next_batch", Integer, nullable=False, default=0),
    Column("planned_at", UTCDateTime, nullable=False),
    # The segment (migration 0017), its relative ages anchored at planning
    # (`joined<30d@2026-12-07T12:00:00Z`): each claim evaluates it over the next id range.
    # "": every receiving subscriber.
    Column("expression", Text, nullable=False, server_default=""),
)

# One row per claim: the subscribers of [first_id, last_id] active at claim time are its
# recipients, but for `excluded` (offsets from first_id, "3,17-18": those not active then).
# A `listed` batch re-sends single recipients: its members are the `deliveries` rows naming it.
delivery_batches = Table(
    "delivery_batches",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("first_id", Integer, nullable=False),
    Column("last_id", Integer, nullable=False),
    Column("recipients", Integer, nullable=False),
    Column("skipped", Integer, nullable=False, default=0),
    Column("excluded", Text, nullable=False, default=""),
    Column("listed", Boolean, nullable=False, default=False),
    Column("state", String(20), nullable=False),
    Column("worker", String(100)),
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("message_id", String(200)),
    Column("error", Text),
    Column("retryable", Boolean),
    Column("attempts", Integer, nullable=False, default=1),
    Index("ix_delivery_batches_state", "issue_id", "state"),
)

# The exceptions: a recipient whose state differs from their batch's (refused, settled by an
# event or the editor, re-sent alone, skipped with a reason). Few rows per issue.
deliveries = Table(
    "deliveries",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id"), primary_key=True),
    Column("subscriber_id", Integer, primary_key=True),
    Column("state", String(20), nullable=False, default="pending"),
    Column("batch", Integer),
    Column("worker", String(100)),
    Column("claimed_at", UTCDateTime),
    Column("message_id", String(200)),
    Column("error", Text),
    Column("retryable", Boolean),
    Column("attempts", Integer, nullable=False, default=0),
    Column("updated_at", UTCDateTime),
    # Reader-time delivery: the UTC instant of the reader's wave; claimed only once it came.
    Column("not_before", UTCDateTime),
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

# Sign-up rate-limit counters behind the `limits` package (see store.rate_limits): one row per
# key, its count and the end of its window in epoch seconds.
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("expires_at", Float, nullable=False),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("received_at", UTCDateTime, nullable=False),
)

# One row (id 1): a counter bumped in the same transaction as every change to what the public
# pages show (an issue published, or an issue's status changed). Each `serve` process keys its
# rendered archive index, issue pages and feed on it, so a cancel made by any process reaches
# every server at its next request.
publication = Table(
    "publication",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
)

# -- the editors' workspace: accounts and sessions (newsletter.store.editors) ----------------
# AUTOINCREMENT on SQLite (a sequence on PostgreSQL): an id is never given again, so nothing
# that named a removed editor (a session, a log line) can ever name a new one.
editors = Table(
    "editors",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("timezone", String(64), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    sqlite_autoincrement=True,
)

# One row per signed-in browser: the SHA-256 of the random session id its cookie carries (a
# copy of the table gives no one a session). Deleted on sign-out, on a password change and
# with the account; a session unused for a while, or too old, no longer counts.
editor_sessions = Table(
    "editor_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column(
        "editor_id",
        Integer,
        ForeignKey("editors.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("created_at", UTCDateTime, nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
    Index("ix_editor_sessions_editor", "editor_id"),
)

# Opens and clicks per issue and hour, fed by the event webhook: the editors' chart.
engagement_hours = Table(
    "engagement_hours",
    metadata,
    Column("issue_id", Integer, primary_key=True),
    Column("kind", String(10), primary_key=True),
    Column("hour", UTCDateTime, primary_key=True),
    Column("count", Integer, nullable=False),
)

# One row per alert sent to the editors: its key makes "at most once per event".
alerts_sent = Table(
    "alerts_sent",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("sent_at", UTCDateTime, nullable=False),
)

# Each message of the bounce mailbox handled once (`newsletter bounces`): its Message-ID (or
# a digest of it when it has none), what it reported and about whom, for the issue's page and
# the "three temporary failures in a row" rule.
bounce_reports = Table(
    "bounce_reports",
    metadata,
    Column("message_id", String(300), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("issue_id", Integer),
    Column("subscriber_id", Integer),
    Column("detail", Text, nullable=False, default=""),
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_bounce_reports_issue", "issue_id", "kind"),
    Index("ix_bounce_reports_subscriber", "subscriber_id", "kind", "issue_id"),
)

# -- the editorial workflow (migration 0013) ----------------------------------------------
# Every approval and rejection of an issue: who (the id, and the address as it was), when, why.
issue_reviews = Table(
    "issue_reviews",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_id", Integer, ForeignKey("issues.id"), nullable=False),
    Column("editor_id", Integer),
    Column("editor_email", String(320), nullable=False),
    Column("decision", String(20), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_issue_reviews_issue", "issue_id", "id"),
)

# One row per `[[feeds]]` url: the conditional GET's validators, when it was fetched, when it
# is due again, and its last failure (retried with backoff, shown in the workspace).
feeds = Table(
    "feeds",
    metadata,
    Column("url", String(2000), primary_key=True),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("fetched_at", UTCDateTime),
    Column("ok_at", UTCDateTime),
    Column("next_at", UTCDateTime),
    Column("failures", Integer, nullable=False, default=0),
    Column("last_error", Text),
)

# Every feed entry ever seen, keyed by the SHA-256 of its id (guid): each is taken once,
# whatever happens to the feed or the process. `status` says what became of it: queued, held
# (with the contract's located errors), seen (older than the first fetch's backlog).
feed_entries = Table(
    "feed_entries",
    metadata,
    Column("guid_hash", String(64), primary_key=True),
    Column("guid", Text, nullable=False),
    Column("feed_url", String(2000), nullable=False),
    Column("title", String(500), nullable=False, default=""),
    Column("link", Text, nullable=False, default=""),
    Column("status", String(20), nullable=False),
    Column("filename", String(255)),
    Column("error", Text),
    Column("seen_at", UTCDateTime, nullable=False),
    Index("ix_feed_entries_feed", "feed_url", "status"),
)

# Subscriber imports from the workspace (newsletter.store.imports): one row per uploaded file,
# run off the request by `serve`'s import worker. `rows_done` and the counts are committed in
# the transaction of each chunk they count; `errors` is a JSON list of located messages (the
# first ones), `worker` "host:pid" of the process running it. Ids are never given again: a
# progress page's address never shows another file's import.
import_jobs = Table(
    "import_jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("editor", String(320), nullable=False),
    Column("filename", String(255), nullable=False),
    Column("state", String(16), nullable=False, default="queued"),
    Column("rows_total", Integer, nullable=True),
    Column("rows_done", Integer, nullable=False, default=0),
    Column("added", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("errors", Text, nullable=True),
    Column("worker", String(200), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("heartbeat_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Index("ix_import_jobs_state", "state"),
    sqlite_autoincrement=True,
)

# -- tags and unsubscribe reasons (migration 0012) ------------------------------------------
# Every tag in use or once used: a segment naming a tag not here is a typo, told by column.
tags = Table(
    "tags",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# Which subscriber carries which tag. The primary key (tag, subscriber) is what `tag:x` reads.
subscriber_tags = Table(
    "subscriber_tags",
    metadata,
    Column("tag", String(64), ForeignKey("tags.name"), primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Index("ix_subscriber_tags_subscriber", "subscriber_id"),
)

# The optional answer after an unsubscribe: one of newsletter.records.UnsubscribeReason, and
# the reader's own words for "other".
unsubscribe_reasons = Table(
    "unsubscribe_reasons",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", Integer, nullable=False),
    Column("reason", String(20), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_unsubscribe_reasons_created", "created_at"),
)

# Subscriber search by name prefix, case-insensitive (the address has its unique key).
Index("ix_subscribers_name_lower", func.lower(subscribers.c.name))
