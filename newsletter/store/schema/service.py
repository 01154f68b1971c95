"""What the running processes keep between them: the key-value `meta` table, the sending
lease, the rate-limit counters, the alerts already sent."""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, String, Table, Text

from newsletter.store.schema.base import UTCDateTime, metadata

meta_table = Table(
    "meta", metadata, Column("key", String(64), primary_key=True), Column("value", Text)
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

# One row per alert sent to the editors: its key makes "at most once per event".
alerts_sent = Table(
    "alerts_sent",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("sent_at", UTCDateTime, nullable=False),
)
