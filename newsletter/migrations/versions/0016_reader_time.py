"""Reader-time delivery: `deliveries.not_before`, the UTC instant of a reader's wave (an
issue with `[issue] deliver_at = "local HH:MM"` plans one row per reader, claimed only
once their wave's instant has come).

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-07 11:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "not_before" not in {c["name"] for c in inspector.get_columns("deliveries")}:
        # A plain ADD COLUMN (nullable): no table rebuild on SQLite.
        op.add_column("deliveries", sa.Column("not_before", sa.DateTime()))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("not_before")
