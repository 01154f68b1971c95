"""Database failures mapped to the project's exceptions, at the store's boundary (the store's
transactions and the migrations both use it)."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from newsletter.exceptions import DatabaseUnavailable, Duplicate, ReadOnlyDatabase, StoreError

# Words of the drivers' messages (sqlite3, psycopg) and SQLSTATE codes that tell what broke.
_READ_ONLY = ("readonly database", "read-only", "read only")
_UNAVAILABLE = ("database is locked", "unable to open", "connection refused", "could not connect")
_READ_ONLY_CODES = {"25006"}  # read_only_sql_transaction
_UNIQUE_CODES = {"23505"}  # unique_violation


def map_error(exc: DBAPIError, where: str, doing: str = "") -> StoreError:
    """The one place a database failure becomes one of ours: what broke, and which database
    (its URL without the password)."""
    orig = exc.orig
    detail = str(orig).strip() or type(orig).__name__
    message = f"database {where}: {doing + ': ' if doing else ''}{detail}"
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    lowered = detail.lower()
    if isinstance(exc, IntegrityError) and (code in _UNIQUE_CODES or "unique" in lowered):
        return Duplicate(message)
    if code in _READ_ONLY_CODES or any(w in lowered for w in _READ_ONLY):
        return ReadOnlyDatabase(message)
    if isinstance(exc, OperationalError) and any(w in lowered for w in _UNAVAILABLE):
        return DatabaseUnavailable(message)
    return StoreError(message)
