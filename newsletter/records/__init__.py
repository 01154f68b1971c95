"""The typed records and states every layer shares: what the store returns, what a provider
is handed, what the web side and the CLI print. Standard library only, so importing it (the
provider interface does) never drags in SQLAlchemy, Alembic or premailer.

By what they describe: `states` (the `StrEnum`s and the clock), `issues` (articles,
issues, pages), `delivery` (readers, batches, deliveries, events); import them from here.
States are `StrEnum`s whose values are the strings stored in the database: a member compares
and hashes equal to its string, so the schema and existing data do not change.
"""

from newsletter.records.delivery import (
    AtCap,
    Batch,
    Claim,
    DeliveryRow,
    LeavingSummary,
    NotSending,
    Recipient,
    Recipients,
    Subscriber,
    WaveProgress,
    WebhookEvent,
    WebhookOutcome,
)
from newsletter.records.issues import (
    ArticlePage,
    IssueRecord,
    IssueReview,
    IssueSummary,
    Placeholders,
    PublicationVersion,
    PublishedArticle,
    QueuedArticle,
    RenderedIssue,
)
from newsletter.records.states import (
    PAUSE_LENGTH,
    SUPPRESSED,
    ArticleStatus,
    BatchState,
    DeliveryState,
    IssueStatus,
    SubscriberStatus,
    UnsubscribeReason,
    utcnow,
)

__all__ = [
    "ArticlePage",
    "ArticleStatus",
    "AtCap",
    "Batch",
    "BatchState",
    "Claim",
    "DeliveryRow",
    "DeliveryState",
    "IssueRecord",
    "IssueReview",
    "IssueStatus",
    "IssueSummary",
    "LeavingSummary",
    "NotSending",
    "PAUSE_LENGTH",
    "Placeholders",
    "PublicationVersion",
    "PublishedArticle",
    "QueuedArticle",
    "Recipient",
    "Recipients",
    "RenderedIssue",
    "SUPPRESSED",
    "Subscriber",
    "SubscriberStatus",
    "UnsubscribeReason",
    "WaveProgress",
    "WebhookEvent",
    "WebhookOutcome",
    "utcnow",
]
