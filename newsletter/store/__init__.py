"""The project's database, one facade over a few aggregates (SQLAlchemy Core).

`Store` owns the engine, the SQLite set-up (pragmas, BEGIN IMMEDIATE), transactions and the
mapping of database errors to `newsletter.exceptions`; each aggregate is a short module that
owns its SQL and returns `newsletter.records`:

    store.subscribers   the list (import, sign-ups, suppressions)
    store.queue         the editors' article queue and the issues made of it
    store.deliveries    the delivery log: plan, claim, mark, settle, count
    store.leases        the sending lease, and small pieces of state (meta)
    store.events        webhook idempotency
    store.editors       editor accounts and their server-side sessions
    store.engagement    opens and clicks per issue and hour (the workspace's chart)
    store.alerts        alerts already sent to the editors (once per event)
    store.workspace     the workspace's queue moves and the issues needing an editor
    store.publication   the counter the public pages are cached on

The delivery log is the truth about who has an issue; the same code runs on the embedded
SQLite file and on PostgreSQL.
"""

from newsletter.store._facade import Store

__all__ = ["Store"]
