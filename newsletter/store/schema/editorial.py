"""What is published: the queue of articles, the issues and their article pages, the
approvals and rejections, the feeds that fill the queue, and the publication counter the
public pages are cached on."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text

from newsletter.store.schema.base import UTCDateTime, metadata

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

# The editorial workflow (migration 0013).
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
