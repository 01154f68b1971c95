"""The editors' workspace: editor accounts, their sessions, the subscriber imports run off
the request."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text

from newsletter.store.schema.base import UTCDateTime, metadata

# Accounts and sessions (newsletter.store.editors).
# AUTOINCREMENT on SQLite (a sequence on PostgreSQL): an id is never given again, so nothing
# that named a removed editor (a session, a log line) can ever name a new one.
editors = Table(
    "editors",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("timezone", String(64), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    sqlite_autoincrement=True,
)

# One row per signed-in browser: the SHA-256 of the random session id its cookie carries (a
# copy of the table gives no one a session). Deleted on sign-out, on a password change and
# with the account; a session unused for a while, or too old, no longer counts.
editor_sessions = Table(
    "editor_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column(
        "editor_id",
        Integer,
        ForeignKey("editors.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("created_at", UTCDateTime, nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
    Index("ix_editor_sessions_editor", "editor_id"),
)

# Subscriber imports from the workspace (newsletter.store.imports): one row per uploaded file,
# run off the request by `serve`'s import worker. `rows_done` and the counts are committed in
# the transaction of each chunk they count; `errors` is a JSON list of located messages (the
# first ones), `worker` "host:pid" of the process running it. Ids are never given again: a
# progress page's address never shows another file's import.
import_jobs = Table(
    "import_jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("editor", String(320), nullable=False),
    Column("filename", String(255), nullable=False),
    Column("state", String(16), nullable=False, default="queued"),
    Column("rows_total", Integer, nullable=True),
    Column("rows_done", Integer, nullable=False, default=0),
    Column("added", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("errors", Text, nullable=True),
    Column("worker", String(200), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("heartbeat_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Index("ix_import_jobs_state", "state"),
    sqlite_autoincrement=True,
)
