"""The delivery log (written only by `store.deliveries`) and what comes back after a send:
webhook events taken once, opens and clicks per hour, the bounce mailbox's reports."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Table, Text

from newsletter.store.schema.base import UTCDateTime, metadata

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

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("received_at", UTCDateTime, nullable=False),
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

# Each message of the bounce mailbox handled once (`newsletter bounces`): its Message-ID (or
# a digest of it when it has none), what it reported and about whom, for the page and
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
