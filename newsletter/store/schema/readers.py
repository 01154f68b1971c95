"""The readers' tables: the subscribers, their tags (a copy of which each subscriber row
carries for the segments), and the answers given on leaving."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text, func

from newsletter.store.schema.base import UTCDateTime, metadata

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

# Tags and unsubscribe reasons (migration 0012).
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
