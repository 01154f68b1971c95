"""Every table of the project (SQLAlchemy Core) on one `MetaData`, a module per family of
tables: `base` (the metadata, the UTC datetime type, read-only transactions), `readers`
(subscribers, tags, reasons for leaving), `editorial` (articles, issues and their pages,
reviews, feeds, the publication counter), `delivery` (the delivery log, webhook events,
engagement, bounce reports), `service` (meta, leases, rate limits, alerts sent), `workspace`
(editors, their sessions, imports). Importing the package registers every table, so
`metadata` is whole wherever it is read; callers import the tables from here.

Imports nothing of the project's: the migrations (`newsletter.migrations`) import it to
compare the code with the database, and the store imports the migrations. Column defaults are
the stored strings of `newsletter.records`' states.
"""

from __future__ import annotations

from newsletter.store.schema.base import SQLITE_BEGIN_OPTION, UTCDateTime, metadata, reading
from newsletter.store.schema.delivery import (
    bounce_reports,
    deliveries,
    delivery_batches,
    delivery_plans,
    engagement_hours,
    webhook_events,
)
from newsletter.store.schema.editorial import (
    article_pages,
    articles,
    feed_entries,
    feeds,
    issue_reviews,
    issues,
    publication,
)
from newsletter.store.schema.readers import (
    subscriber_tags,
    subscribers,
    tags,
    unsubscribe_reasons,
)
from newsletter.store.schema.service import alerts_sent, leases, meta_table, rate_limits
from newsletter.store.schema.workspace import editor_sessions, editors, import_jobs

__all__ = [
    "SQLITE_BEGIN_OPTION",
    "UTCDateTime",
    "alerts_sent",
    "article_pages",
    "articles",
    "bounce_reports",
    "deliveries",
    "delivery_batches",
    "delivery_plans",
    "editor_sessions",
    "editors",
    "engagement_hours",
    "feed_entries",
    "feeds",
    "import_jobs",
    "issue_reviews",
    "issues",
    "leases",
    "meta_table",
    "metadata",
    "publication",
    "rate_limits",
    "reading",
    "subscriber_tags",
    "subscribers",
    "tags",
    "unsubscribe_reasons",
    "webhook_events",
]
