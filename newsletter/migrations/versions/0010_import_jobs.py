"""Subscriber imports from the workspace run off the request: one row per uploaded file.

The upload is kept in a private folder beside the database and a worker thread of `serve`
imports it in chunked transactions; the row says how far it got (committed with each chunk,
so a restart resumes exactly where the crash left it) and how it ended.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 09:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "import_jobs" in sa.inspect(op.get_bind()).get_table_names():
        return  # a database made by `metadata.create_all` and adopted
    op.create_table(
        "import_jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("editor", sa.String(320), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("rows_total", sa.Integer, nullable=True),
        sa.Column("rows_done", sa.Integer, nullable=False),
        sa.Column("added", sa.Integer, nullable=False),
        sa.Column("updated", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.Column("errors", sa.Text, nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_import_jobs_state", "import_jobs", ["state"])


def downgrade() -> None:
    op.drop_index("ix_import_jobs_state", table_name="import_jobs")
    op.drop_table("import_jobs")
