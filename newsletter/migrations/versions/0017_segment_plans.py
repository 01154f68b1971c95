"""A segmented issue planned as a definition: `delivery_plans.expression` (the segment with
its relative ages anchored at planning, evaluated at each claim), and on `subscribers` the
tags a reader had before their last change (`tags_before`, `tags_changed_at`), so a claim
can tell a reader who stopped matching mid-send (counted skipped) from one who never did.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 12:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    # Plain ADD COLUMNs (nullable, or with a constant default): no table rebuild on SQLite.
    if "expression" not in _columns("delivery_plans"):
        op.add_column(
            "delivery_plans",
            sa.Column("expression", sa.Text, nullable=False, server_default=""),
        )
    have = _columns("subscribers")
    if "tags_before" not in have:
        op.add_column(
            "subscribers", sa.Column("tags_before", sa.Text, nullable=False, server_default="")
        )
    if "tags_changed_at" not in have:
        op.add_column("subscribers", sa.Column("tags_changed_at", sa.DateTime()))


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("tags_changed_at")
        batch.drop_column("tags_before")
    # SQLite's copy of the table leaves behind the expression index (Alembic cannot reflect
    # it): made again as revision 0006 made it.
    op.create_index(
        "ix_subscribers_name_lower", "subscribers", [sa.text("lower(name)")], if_not_exists=True
    )
    with op.batch_alter_table("delivery_plans") as batch:
        batch.drop_column("expression")
