"""Sign-up rate-limit counters shared by every `serve` process on the database.

The `limits` package keeps its counters in a storage backend; it has none for SQL, so
`newsletter.web.ratelimit.DatabaseStorage` keeps them in this table (one row per key, its
count and the end of its window in epoch seconds).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made by `metadata.create_all` (adopted at 0001) may have it already.
    if sa.inspect(op.get_bind()).has_table("rate_limits"):
        return
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
