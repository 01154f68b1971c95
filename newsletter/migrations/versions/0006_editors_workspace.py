"""The editors' workspace: editor accounts, engagement per hour,
alerts already sent, and an index for searching subscribers by name.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _tables() -> list[tuple[str, list[sa.Column]]]:
    return [
        (
            "editors",
            [
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("email", sa.String(320), nullable=False),
                sa.Column("email_key", sa.String(320), nullable=False, unique=True),
                sa.Column("password_hash", sa.Text, nullable=False),
                sa.Column("session_version", sa.Integer, nullable=False),
                sa.Column("timezone", sa.String(64), nullable=False),
                sa.Column("created_at", sa.DateTime(), nullable=False),
                sa.Column("updated_at", sa.DateTime(), nullable=False),
            ],
        ),
        (
            "engagement_hours",
            [
                sa.Column("issue_id", sa.Integer, primary_key=True),
                sa.Column("kind", sa.String(10), primary_key=True),
                sa.Column("hour", sa.DateTime(), primary_key=True),
                sa.Column("count", sa.Integer, nullable=False),
            ],
        ),
        (
            "alerts_sent",
            [
                sa.Column("key", sa.String(200), primary_key=True),
                sa.Column("sent_at", sa.DateTime(), nullable=False),
            ],
        ),
    ]


def upgrade() -> None:
    # A database made by `metadata.create_all` of this code (then adopted) has them already.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, columns in _tables():
        if name not in existing:
            op.create_table(name, *columns)
    op.create_index(
        "ix_subscribers_name_lower", "subscribers", [sa.text("lower(name)")], if_not_exists=True
    )


def downgrade() -> None:
    op.drop_index("ix_subscribers_name_lower", table_name="subscribers")
    op.drop_table("alerts_sent")
    op.drop_table("engagement_hours")
    op.drop_table("editors")
