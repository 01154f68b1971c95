"""The messages of the bounce mailbox already handled (`newsletter bounces`).

One row per message read: its Message-ID (each is applied once however often the mailbox is
read), what it reported (permanent, temporary, complaint, unknown), the issue and subscriber
it named, and the diagnostic. The issue's page counts them; three temporary failures on
three issues in a row bounce a subscriber.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-07 09:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "bounce_reports" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "bounce_reports",
        sa.Column("message_id", sa.String(300), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("issue_id", sa.Integer),
        sa.Column("subscriber_id", sa.Integer),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_bounce_reports_issue", "bounce_reports", ["issue_id", "kind"])
    op.create_index(
        "ix_bounce_reports_subscriber", "bounce_reports", ["subscriber_id", "kind", "issue_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_bounce_reports_subscriber", table_name="bounce_reports")
    op.drop_index("ix_bounce_reports_issue", table_name="bounce_reports")
    op.drop_table("bounce_reports")
