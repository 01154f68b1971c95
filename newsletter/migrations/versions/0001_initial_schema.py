"""Initial schema: the tables exactly as `metadata.create_all` made them before migrations.

Databases made by that older code (tables, no alembic_version) are stamped at this revision by
`newsletter.migrations.upgrade()` instead of running it. Time columns are the store's
UTCDateTime, which keeps naive UTC in a plain DateTime column.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Keep newsletter.migrations.INITIAL_TABLES (what an adopted database must have) equal to the
# tables made here.


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text()),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email_key"),
        sa.UniqueConstraint("token"),
    )
    op.create_index("ix_subscribers_status", "subscribers", ["status", "id"])
    op.create_table(
        "issues",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("preheader", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("archive_html", sa.Text(), nullable=False),
        sa.Column("placeholder_nonce", sa.String(32), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("scheduled_for", sa.DateTime()),
        sa.Column("finished_at", sa.DateTime()),
        sa.Column("last_error", sa.Text()),
        sa.Column("next_batch", sa.Integer(), nullable=False),
        sa.Column("failed_batches", sa.Integer(), nullable=False),
        sa.Column("opens", sa.Integer(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    op.create_table(
        "articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("queued_at", sa.DateTime(), nullable=False),
        sa.Column("not_before", sa.DateTime()),
        sa.Column("last_error", sa.Text()),
        sa.Column("issue_id", sa.Integer()),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("filename"),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"]),
    )
    op.create_table(
        "deliveries",
        sa.Column("issue_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("batch", sa.Integer()),
        sa.Column("worker", sa.String(100)),
        sa.Column("claimed_at", sa.DateTime()),
        sa.Column("message_id", sa.String(200)),
        sa.Column("error", sa.Text()),
        sa.Column("retryable", sa.Boolean()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime()),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"]),
        sa.PrimaryKeyConstraint("issue_id", "subscriber_id"),
    )
    op.create_index("ix_deliveries_state", "deliveries", ["issue_id", "state", "subscriber_id"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "webhook_events",
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )


def downgrade() -> None:
    op.drop_table("webhook_events")
    op.drop_table("leases")
    op.drop_index("ix_deliveries_state", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_table("articles")
    op.drop_table("issues")
    op.drop_index("ix_subscribers_status", table_name="subscribers")
    op.drop_table("subscribers")
    op.drop_table("meta")
