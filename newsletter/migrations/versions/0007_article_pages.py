"""Article pages: each article of an issue gets a page of its own on the web edition.

The digest layout links every card's "Read the ending" button to the article's page, where its
spoiler sections sit behind a reveal; the page is rendered at publication and kept here, like
the issue's own web edition (`issues.archive_html`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made by `metadata.create_all` and adopted at 0001 may have it already.
    if sa.inspect(op.get_bind()).has_table("article_pages"):
        return
    op.create_table(
        "article_pages",
        sa.Column("slug", sa.String(200), primary_key=True),
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("teaser", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
    )
    op.create_index("ix_article_pages_issue", "article_pages", ["issue_id", "position"])


def downgrade() -> None:
    op.drop_index("ix_article_pages_issue", table_name="article_pages")
    op.drop_table("article_pages")
