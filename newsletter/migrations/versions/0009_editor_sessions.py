"""Server-side sessions for the editors' workspace, and editor ids that are never reused.

A session was a signed cookie naming an editor's id and a per-account version: signing out
left a copy working for hours, and SQLite gave a removed editor's id (with its version
starting again at 1) to the next editor added, reviving the old cookie. Sessions are now rows
of `editor_sessions` (the hash of a random id the cookie carries), deleted on sign-out, on a
password change and with the account; `editors` is rebuilt with AUTOINCREMENT on SQLite
(PostgreSQL's sequence never gave an id twice) and loses `session_version`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    columns = {c["name"] for c in inspector.get_columns("editors")}
    sqlite = bind.dialect.name == "sqlite"
    # On SQLite the copy (rows keep their ids) makes sqlite_sequence start past the largest;
    # on PostgreSQL a copy would restart the sequence, so the column is dropped in place.
    with op.batch_alter_table(
        "editors",
        recreate="always" if sqlite else "auto",
        table_kwargs={"sqlite_autoincrement": True},
    ) as batch:
        if "session_version" in columns:
            batch.drop_column("session_version")
    if "editor_sessions" not in inspector.get_table_names():
        op.create_table(
            "editor_sessions",
            sa.Column("id_hash", sa.String(64), primary_key=True),
            sa.Column(
                "editor_id",
                sa.Integer,
                sa.ForeignKey("editors.id", ondelete="CASCADE"),
                nullable=False,
            ),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("seen_at", sa.DateTime(), nullable=False),
        )
        op.create_index("ix_editor_sessions_editor", "editor_sessions", ["editor_id"])


def downgrade() -> None:
    op.drop_index("ix_editor_sessions_editor", table_name="editor_sessions")
    op.drop_table("editor_sessions")
    with op.batch_alter_table("editors") as batch:
        batch.add_column(
            sa.Column("session_version", sa.Integer, nullable=False, server_default="1")
        )
