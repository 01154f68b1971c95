"""Drop ix_deliveries_batch where databases made before migrations still have it.

Code before the 1,000,000-subscriber benchmark also made an index on deliveries
(issue_id, batch); it was dropped from the schema because ix_deliveries_state serves every
look-up by batch and a second index doubles the index writes of every claim. `create_all` never
removes an index, so adopted databases may still carry it. On a database made by these
migrations this is a no-op, and so is the downgrade (revision 0001 has no such index).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 00:00:01
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Same statement on SQLite and PostgreSQL; no batch mode needed for an index.
    op.execute("DROP INDEX IF EXISTS ix_deliveries_batch")


def downgrade() -> None:
    pass
