"""The editorial workflow: who queued an article (`articles.queued_by`), the approvals and
rejections of issues (`issue_reviews`), the feeds whose entries are queued as articles
(`feeds`: conditional GET state and failures; `feed_entries`: every entry seen, once), and
each reader's time zone (`subscribers.timezone`, "" for the newsletter's).

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    # Plain ADD COLUMNs: a batch would rebuild the table on SQLite, losing the expression
    # index on subscribers (lower(name)) that SQLite cannot reflect.
    if "queued_by" not in {c["name"] for c in inspector.get_columns("articles")}:
        op.add_column("articles", sa.Column("queued_by", sa.Integer))
    if "timezone" not in {c["name"] for c in inspector.get_columns("subscribers")}:
        op.add_column(
            "subscribers", sa.Column("timezone", sa.String(64), nullable=False, server_default="")
        )
    if "issue_reviews" not in tables:
        op.create_table(
            "issue_reviews",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), nullable=False),
            sa.Column("editor_id", sa.Integer),
            sa.Column("editor_email", sa.String(320), nullable=False),
            sa.Column("decision", sa.String(20), nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("at", sa.DateTime(), nullable=False),
        )
        op.create_index("ix_issue_reviews_issue", "issue_reviews", ["issue_id", "id"])
    if "feeds" not in tables:
        op.create_table(
            "feeds",
            sa.Column("url", sa.String(2000), primary_key=True),
            sa.Column("etag", sa.Text),
            sa.Column("last_modified", sa.Text),
            sa.Column("fetched_at", sa.DateTime()),
            sa.Column("ok_at", sa.DateTime()),
            sa.Column("next_at", sa.DateTime()),
            sa.Column("failures", sa.Integer, nullable=False),
            sa.Column("last_error", sa.Text),
        )
    if "feed_entries" not in tables:
        op.create_table(
            "feed_entries",
            sa.Column("guid_hash", sa.String(64), primary_key=True),
            sa.Column("guid", sa.Text, nullable=False),
            sa.Column("feed_url", sa.String(2000), nullable=False),
            sa.Column("title", sa.String(500), nullable=False),
            sa.Column("link", sa.Text, nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("filename", sa.String(255)),
            sa.Column("error", sa.Text),
            sa.Column("seen_at", sa.DateTime(), nullable=False),
        )
        op.create_index("ix_feed_entries_feed", "feed_entries", ["feed_url", "status"])


def downgrade() -> None:
    op.drop_index("ix_feed_entries_feed", table_name="feed_entries")
    op.drop_table("feed_entries")
    op.drop_table("feeds")
    op.drop_index("ix_issue_reviews_issue", table_name="issue_reviews")
    op.drop_table("issue_reviews")
    with op.batch_alter_table("articles") as batch:
        batch.drop_column("queued_by")
    # The rebuild of subscribers on SQLite would drop the expression index: made again after.
    op.drop_index("ix_subscribers_name_lower", table_name="subscribers")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("timezone")
    op.create_index("ix_subscribers_name_lower", "subscribers", [sa.text("lower(name)")])
