"""What every table shares: the one `MetaData` they are all part of, the one column type
(aware UTC datetimes), and the option that makes a SQLite transaction a reader's."""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import Connection, DateTime, MetaData, TypeDecorator

# Engines opened by the store begin every SQLite transaction with BEGIN IMMEDIATE (the write
# lock), unless the connection carries this execution option with another mode: `reading`.
SQLITE_BEGIN_OPTION = "sqlite_begin"


def reading(conn: Connection) -> Connection:
    """The connection for a read-only transaction: on SQLite a plain (deferred) BEGIN, so a
    read never takes the write lock. Other backends ignore the option."""
    return conn.execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"})


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the backend stores."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()
