"""The layout each issue was rendered in (full or digest), kept on the issue row.

`newsletter check ISSUE_ID` and the workspace read it rather than guess it from the HTML,
which an editor's own templates may shape differently. Issues made before this revision
keep NULL: their layout is inferred from their HTML as before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 02:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made by `metadata.create_all` and adopted at 0001 may have it already.
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("issues")}
    if "layout" in columns:
        return
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("layout", sa.String(20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("layout")
