"""Create APScheduler's job table with the rest of the schema.

APScheduler's SQLAlchemyJobStore creates `apscheduler_jobs` on start if it is missing; two
schedulers starting together on PostgreSQL would race to create it and one would die. Made
here, under the migration lock, it always exists before any scheduler starts (the job store's
own check then finds it). The columns are APScheduler 3's own.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 00:00:02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLE = "apscheduler_jobs"


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table(TABLE):
        return
    op.create_table(
        TABLE,
        sa.Column("id", sa.Unicode(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25), index=True),
        sa.Column("job_state", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table(TABLE)
