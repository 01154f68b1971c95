"""The project's database, one facade over a few aggregates (SQLAlchemy Core).

`Store` owns the engine, the SQLite set-up (pragmas, BEGIN IMMEDIATE), transactions and the
mapping of database errors to `newsletter.exceptions`; each aggregate is a short module that
owns its SQL and returns `newsletter.records`:

    store.subscribers   the list (import, sign-ups, suppressions)
    store.articles      the editors' queue of articles
    store.issues        the issues made of it, their article pages, the next one's layout
    store.deliveries    the delivery log: plan, claim, mark, settle, count (the only writer
                        of its tables: delivery_plans, delivery_batches, deliveries)
    store.meta          small pieces of state (key-value), and the sending lease
    store.events        webhook idempotency
    store.editors       editor accounts and their server-side sessions
    store.engagement    opens and clicks per issue and hour (the workspace's chart)
    store.alerts        alerts already sent to the editors (once per event)
    store.publication   the counter the public pages are cached on
    store.imports       the workspace's subscriber imports, run off the request
    store.tags          subscribers' tags, what segments name

The delivery log is the truth about who has an issue; the same code runs on the embedded
SQLite file and on PostgreSQL.
"""

from newsletter.store._facade import Store

__all__ = ["Store"]
