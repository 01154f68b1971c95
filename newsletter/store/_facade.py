"""The facade: engine, transactions, SQLite set-up and database errors mapped to ours."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from newsletter.exceptions import MissingExtra
from newsletter.store._errors import map_error
from newsletter.store.alerts import Alerts
from newsletter.store.articles import Articles
from newsletter.store.bounces import Bounces
from newsletter.store.deliveries import Deliveries
from newsletter.store.editors import Editors
from newsletter.store.engagement import Engagement
from newsletter.store.events import Events
from newsletter.store.feeds import Feeds
from newsletter.store.issues import Issues
from newsletter.store.meta import Meta
from newsletter.store.publication import Publication
from newsletter.store.rate_limits import RateLimits
from newsletter.store.reviews import Reviews
from newsletter.store.schema import SQLITE_BEGIN_OPTION, reading
from newsletter.store.subscribers import Subscribers


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event below start transactions, not the sqlite3 module.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """Writers take SQLite's write lock up front (BEGIN IMMEDIATE): a transaction that reads
    and then writes (claiming a batch, taking a lease) can then neither fail half-way with
    "database is locked" nor act on a stale read while another process writes."""
    mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _private_sqlite_file(url: str) -> None:
    """Create a new SQLite database file readable by its owner only (0600): it holds the
    link-signing key and every subscriber's token. SQLite gives the -wal and -shm files the
    database file's permissions. Existing files are left as they are."""
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:") or os.path.exists(path):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError:
        return  # a missing folder: SQLite itself reports that, naming the database


class Store:
    """The project's database: open it with a SQLAlchemy URL, then use its aggregates."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.safe_url = make_url(url).render_as_string(hide_password=True)
        try:
            self.engine: Engine = create_engine(url, future=True)
        except ModuleNotFoundError as exc:  # the driver of a database we do not bundle
            if make_url(url).get_backend_name() != "postgresql":
                raise
            raise MissingExtra("postgres", f"the database {self.safe_url}") from exc
        if self.engine.dialect.name == "sqlite":
            _private_sqlite_file(url)
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        self.subscribers = Subscribers(self)
        self.articles = Articles(self)
        self.issues = Issues(self)
        self.deliveries = Deliveries(self)
        self.meta = Meta(self)
        self.events = Events(self)
        self.editors = Editors(self)
        self.engagement = Engagement(self)
        self.alerts = Alerts(self)
        self.publication = Publication(self)
        self.rate_limits = RateLimits(self)
        self.bounces = Bounces(self)
        self.reviews = Reviews(self)
        self.feeds = Feeds(self)
        # SQLite has one writer at a time, and a writer that finds it busy sleeps in steps of
        # up to 100 ms before trying again. Threads of one process (a sender's) queue here
        # instead, and each goes the moment the previous one commits.
        self._writer = threading.RLock() if self.is_sqlite else None
        if create:
            from newsletter import migrations

            migrations.upgrade(self.engine)

    def close(self) -> None:
        self.publication.close()
        self.engine.dispose()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Connection]:
        """One transaction; database failures become a StoreError that says what broke.
        Read-only ones (`write=False`) do not take SQLite's write lock."""
        writer = self._writer if write else None
        # Waiting as long as SQLite's own busy timeout; past that, SQLite decides as before.
        if writer is not None and not writer.acquire(timeout=30):
            writer = None
        try:
            with self.engine.connect() as conn:
                if not write:
                    conn = reading(conn)
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            raise map_error(exc, self.safe_url) from exc
        finally:
            if writer is not None:
                writer.release()
