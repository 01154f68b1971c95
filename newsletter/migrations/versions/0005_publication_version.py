"""The publication counter the public pages are cached on.

One row, bumped with every change to what the archive, the issue pages and the feed show, so
that each `serve` process can serve pages rendered once and still notice, with one primary-key
read, that another process published or cancelled an issue.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 23:45:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLE = "publication"


def upgrade() -> None:
    bind = op.get_bind()
    columns = (
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("changed_at", sa.DateTime, nullable=False),
    )
    # A database adopted from `create_all` (see newsletter.migrations) may have the table.
    if sa.inspect(bind).has_table(TABLE):
        table = sa.table(TABLE, *(sa.column(c.name) for c in columns))
        if bind.execute(sa.select(table.c.id)).first() is not None:
            return
    else:
        table = op.create_table(TABLE, *columns)
    # Naive UTC, as the store's UTCDateTime writes it.
    now = datetime.now(UTC).replace(tzinfo=None)
    op.bulk_insert(table, [{"id": 1, "version": 1, "changed_at": now}])


def downgrade() -> None:
    op.drop_table(TABLE)
