"""The readers' lifecycle: the welcome email sent once, pausing, human and machine opens, tags
and the reasons readers give when they leave.

`subscribers` gains `welcomed_at` (set in the transaction that claims the welcome, so a second
confirmation click or a crash sends no second one), `paused_until` (planning skips the reader
until then) and `last_opened_at` (their last human open, for `opened<90d` segments); `issues`
gains `machine_opens`, counted apart from `opens`. `subscribers.tag_text` is a copy of a
reader's tags that segments read, with `ix_subscribers_audience` covering every column a
segment count reads. New tables: `tags`, `subscriber_tags` and
`unsubscribe_reasons`.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 09:40:00
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SUBSCRIBER_COLUMNS = ("welcomed_at", "paused_until", "last_opened_at")
AUDIENCE_COLUMNS = ["status", "paused_until", "tag_text", "created_at", "last_opened_at"]


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    have = {c["name"] for c in inspector.get_columns("subscribers")}
    missing = [name for name in SUBSCRIBER_COLUMNS if name not in have]
    if missing or "tag_text" not in have:
        with op.batch_alter_table("subscribers") as batch:
            for name in missing:
                batch.add_column(sa.Column(name, sa.DateTime(), nullable=True))
            if "tag_text" not in have:
                batch.add_column(sa.Column("tag_text", sa.Text, nullable=False, server_default=""))
    with warnings.catch_warnings():  # the expression index of 0006 cannot be reflected
        warnings.simplefilter("ignore", sa.exc.SAWarning)
        indexes = {ix["name"] for ix in inspector.get_indexes("subscribers")}
    if "ix_subscribers_audience" not in indexes:
        op.create_index("ix_subscribers_audience", "subscribers", AUDIENCE_COLUMNS)
    if "machine_opens" not in {c["name"] for c in inspector.get_columns("issues")}:
        with op.batch_alter_table("issues") as batch:
            batch.add_column(
                sa.Column("machine_opens", sa.Integer, nullable=False, server_default="0")
            )
    tables = set(inspector.get_table_names())
    if "tags" not in tables:
        op.create_table(
            "tags",
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("created_at", sa.DateTime(), nullable=False),
        )
    if "subscriber_tags" not in tables:
        op.create_table(
            "subscriber_tags",
            sa.Column("tag", sa.String(64), sa.ForeignKey("tags.name"), primary_key=True),
            sa.Column(
                "subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), primary_key=True
            ),
        )
        op.create_index("ix_subscriber_tags_subscriber", "subscriber_tags", ["subscriber_id"])
    if "unsubscribe_reasons" not in tables:
        op.create_table(
            "unsubscribe_reasons",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("subscriber_id", sa.Integer, nullable=False),
            sa.Column("reason", sa.String(20), nullable=False),
            sa.Column("detail", sa.Text, nullable=False),
            sa.Column("created_at", sa.DateTime(), nullable=False),
        )
        op.create_index("ix_unsubscribe_reasons_created", "unsubscribe_reasons", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_unsubscribe_reasons_created", table_name="unsubscribe_reasons")
    op.drop_table("unsubscribe_reasons")
    op.drop_index("ix_subscriber_tags_subscriber", table_name="subscriber_tags")
    op.drop_table("subscriber_tags")
    op.drop_table("tags")
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("machine_opens")
    op.drop_index("ix_subscribers_audience", table_name="subscribers")
    with op.batch_alter_table("subscribers") as batch:
        for name in (*SUBSCRIBER_COLUMNS, "tag_text"):
            batch.drop_column(name)
    # SQLite's copy of the table leaves behind the expression index (Alembic cannot reflect
    # it): made again as revision 0006 made it.
    op.create_index(
        "ix_subscribers_name_lower", "subscribers", [sa.text("lower(name)")], if_not_exists=True
    )
