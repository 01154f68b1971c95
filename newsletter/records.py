"""The typed records and states every layer shares: what the store returns, what a provider
is handed, what the web side and the CLI print. Standard library only, so importing it (the
provider interface does) never drags in SQLAlchemy, Alembic or premailer.

States are `StrEnum`s whose values are the strings stored in the database: a member compares
and hashes equal to its string, so the schema and existing data do not change.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple, overload

from newsletter import clock


class DeliveryState(StrEnum):
    """One (issue, subscriber) row of the delivery log: pending -> in_flight -> sent | failed
    | uncertain; skipped when the subscriber left before their batch went out."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    SKIPPED = "skipped"


class BatchState(StrEnum):
    """One batch of the delivery log (a claim of an id range of the issue's audience): in
    flight while its request may be out, then sent, failed or uncertain; released when the
    provider surely did not take it, so its range is claimed again."""

    IN_FLIGHT = "in_flight"
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    RELEASED = "released"


class SubscriberStatus(StrEnum):
    """Only `active` subscribers get issues; the suppressed ones never again by themselves."""

    ACTIVE = "active"
    UNCONFIRMED = "unconfirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


SUPPRESSED = (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)


class UnsubscribeReason(StrEnum):
    """The one optional question after an unsubscribe; `other` comes with the reader's words."""

    TOO_FREQUENT = "too_frequent"
    NOT_RELEVANT = "not_relevant"
    SPOILERS = "spoilers"
    OTHER = "other"


# "Pause for 4 weeks" on the unsubscribe page: planning skips the reader until then.
PAUSE_LENGTH = timedelta(weeks=4)


@dataclass(frozen=True, kw_only=True)
class LeavingSummary:
    """What the workspace shows of why readers left: answers per reason, the latest words
    given with `other`, and how many readers are paused now."""

    counts: dict[str, int]
    recent_other: tuple[str, ...]
    paused: int

    @property
    def answers(self) -> int:
        return sum(self.counts.values())


class IssueStatus(StrEnum):
    """With `[issue] approval = "required"` an issue is prepared as `awaiting_approval`
    (no delivery planned, not public) and becomes `approved`, then `sending` at its slot;
    or `rejected`, its articles held again in the queue."""

    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"


class ArticleStatus(StrEnum):
    """A held article failed its pre-send check: it keeps its place in the queue, but no tick
    takes it until the editor releases it (or `run --force` sends it)."""

    QUEUED = "queued"
    PUBLISHED = "published"
    REMOVED = "removed"
    HELD = "held"


@dataclass(frozen=True, slots=True)
class Placeholders:
    """Per-subscriber slots in the rendered issue. The random nonce means no article text can
    collide with them (or trigger a SendGrid substitution by accident)."""

    name_html: str
    name_text: str
    unsubscribe_url: str

    @classmethod
    def make(cls, nonce: str) -> Placeholders:
        return cls(
            name_html=f"nl_{nonce}_name_html",
            name_text=f"nl_{nonce}_name_text",
            unsubscribe_url=f"nl_{nonce}_unsubscribe_url",
        )


@dataclass(frozen=True)
class RenderedIssue:
    """An issue rendered once, placeholders and all. Its fields but `view_url` are the
    content columns of the issue row (same names): `IssueRecord.rendered` maps back."""

    subject: str
    preheader: str
    html: str
    text: str
    archive_html: str
    placeholder_nonce: str
    view_url: str
    slug: str
    layout: str = ""  # full or digest; "" for an issue stored before layouts were kept
    # Only when an article's own text has `{{` or `{%`: the same email rendered with those
    # braces neutralised, so `newsletter check` can look for leftovers of *our* templates
    # there (article text is escaped, never evaluated: its braces are not leftovers).
    # Not stored: the check runs before the issue is created.
    without_article_braces: RenderedIssue | None = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def placeholders(self) -> Placeholders:
        return Placeholders.make(self.placeholder_nonce)


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    name: str
    status: SubscriberStatus
    token: str
    created_at: datetime
    updated_at: datetime
    timezone: str = ""  # the reader's IANA zone; "": the newsletter's (migration 0013)


class Recipient(NamedTuple):
    """One subscriber in a claimed batch, with what a provider needs to address them.
    (A named tuple: a million of them are made per issue.)"""

    subscriber_id: int
    email: str
    name: str
    token: str


class Recipients(Sequence[Recipient]):
    """A batch's recipients by columns: ids, emails, names and tokens, each in claim order.
    A claim reads a thousand readers and a provider writes them out column by column, so no
    row object is made per reader on that path; indexing or iterating makes `Recipient`s for
    the code that wants one reader at a time. Equal to any sequence of the same recipients."""

    __slots__ = ("ids", "emails", "names", "tokens")

    def __init__(
        self,
        ids: Sequence[int] = (),
        emails: Sequence[str] = (),
        names: Sequence[str] = (),
        tokens: Sequence[str] = (),
    ) -> None:
        if not len(ids) == len(emails) == len(names) == len(tokens):
            raise ValueError("recipients' columns of different lengths")
        self.ids, self.emails, self.names, self.tokens = ids, emails, names, tokens

    @classmethod
    def of(cls, rows: Iterable[Sequence[Any]]) -> Recipients:
        """From rows of (subscriber id, email, name, token): `Recipient`s or a query's."""
        if isinstance(rows, Recipients):
            return rows
        columns = tuple(zip(*rows, strict=True))
        return cls(*columns) if columns else cls()

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, at: int) -> Recipient: ...
    @overload
    def __getitem__(self, at: slice) -> Recipients: ...
    def __getitem__(self, at: int | slice) -> Recipient | Recipients:
        if isinstance(at, slice):
            return Recipients(self.ids[at], self.emails[at], self.names[at], self.tokens[at])
        return Recipient(self.ids[at], self.emails[at], self.names[at], self.tokens[at])

    def __iter__(self) -> Iterator[Recipient]:
        return map(Recipient, self.ids, self.emails, self.names, self.tokens)

    def __add__(self, other: Sequence[Recipient]) -> Recipients:
        more = Recipients.of(other)
        return Recipients(
            (*self.ids, *more.ids),
            (*self.emails, *more.emails),
            (*self.names, *more.names),
            (*self.tokens, *more.tokens),
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"Recipients({list(self)!r})"


@dataclass(frozen=True, slots=True)
class Batch:
    issue_id: int
    number: int
    recipients: Recipients  # given as any sequence of `Recipient`s, kept by columns
    first_id: int  # the lowest and highest subscriber ids claimed: the next claim starts
    last_id: int  # after `last_id`, and the batch's rows lie between the two

    def __post_init__(self) -> None:
        if not isinstance(self.recipients, Recipients):
            object.__setattr__(self, "recipients", Recipients.of(self.recipients))


@dataclass(frozen=True, slots=True)
class AtCap:
    """A claim's answer at a cap of `[sending]`: nothing claimed now, yet the issue is not
    done (its readers wait for the window, or for batches in flight to be recorded)."""

    issue_id: int


@dataclass(frozen=True, slots=True)
class NotSending:
    """A claim's answer when the issue is no longer sending (paused, cancelled, sent) as
    the claim's transaction reads it: the sender stops without a read of its own."""

    status: IssueStatus


# What `claim` answers: a batch, a cap, a stopped issue, or None when nothing is left.
Claim = Batch | AtCap | NotSending | None


@dataclass(frozen=True, slots=True)
class QueuedArticle:
    """A row of the editors' queue."""

    id: int
    filename: str
    title: str
    position: int
    status: ArticleStatus
    queued_at: datetime
    not_before: datetime | None
    last_error: str | None
    issue_id: int | None
    queued_by: int | None = None  # the editor who queued it (None: the CLI, a feed, a file)


@dataclass(frozen=True, slots=True, kw_only=True)
class IssueReview:
    """One approval or rejection of an issue: who, when, and the reason given."""

    issue_id: int
    editor_id: int | None
    editor_email: str
    decision: str  # "approved" or "rejected"
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class IssueSummary:
    """An issue without its (large) bodies: what lists and the archive index show."""

    id: int
    slug: str
    subject: str
    preheader: str
    status: IssueStatus
    created_at: datetime
    finished_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class IssueRecord:
    """A whole issue row: its rendered content and its sending state."""

    id: int
    slug: str
    subject: str
    preheader: str
    html: str
    text: str
    archive_html: str
    placeholder_nonce: str
    status: IssueStatus
    created_at: datetime
    scheduled_for: datetime | None
    finished_at: datetime | None
    last_error: str | None
    next_batch: int
    failed_batches: int
    opens: int
    clicks: int
    layout: str | None = None  # None: made before the layout was kept (migration 0008)
    # Opens a machine made (sg_machine_open, Apple's proxy), never in `opens` (migration 0012).
    machine_opens: int = 0

    def rendered(self, view_url: str) -> RenderedIssue:
        """The issue as it was rendered once, at creation (the one row -> issue mapping)."""
        return RenderedIssue(
            subject=self.subject,
            preheader=self.preheader,
            html=self.html,
            text=self.text,
            archive_html=self.archive_html,
            placeholder_nonce=self.placeholder_nonce,
            view_url=view_url,
            slug=self.slug,
            layout=self.layout or "",
        )


@dataclass(frozen=True, kw_only=True)
class WaveProgress:
    """One reader-time wave of an issue: its UTC instant, the zones in it ("" the
    newsletter's), recipients sent, left (pending or in flight) and otherwise settled."""

    at: datetime
    zones: tuple[str, ...]
    sent: int
    left: int
    other: int


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One delivery of an issue with its subscriber's address, as the CLI and web read it."""

    subscriber_id: int
    email: str
    batch: int | None
    worker: str | None
    error: str | None
    message_id: str | None


class PublicationVersion(NamedTuple):
    """What the public pages are rendered for: a counter bumped with every change readers can
    see, and when it last changed (the index's and feed's Last-Modified)."""

    version: int
    changed_at: datetime


class WebhookEvent(NamedTuple):
    """One event of a verified SendGrid POST, reduced to what it changes. `kind` is
    "suppress" (email_key + status), "confirm" (issue + subscriber) or "open" /
    "machine_open" / "click" (issue, and the subscriber when the event names one). Without an `event_id` it cannot be deduplicated: only idempotent ones come so.
    (A named tuple: thousands are made per POST.)"""

    kind: str
    event_id: str | None
    email_key: str = ""
    status: str = ""
    issue_id: int = 0
    subscriber_id: int = 0
    at: int = 0  # SendGrid's unix timestamp of an open or click; 0 when it gave none


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    """What one POST changed: rows moved, counters bumped, events already seen."""

    suppressed: int = 0
    confirmed: int = 0
    opens: int = 0
    clicks: int = 0
    duplicates: int = 0
    machine_opens: int = 0


def utcnow() -> datetime:
    """Now from the one clock of the project (`newsletter.clock`, which tests move): aware
    UTC (the store refuses naive times)."""
    return clock.now()


@dataclass(frozen=True, slots=True)
class ArticlePage:
    """An article's own page on the web edition, rendered at publication like the issue
    pages: the canonical place for its full text, at /articles/<slug>."""

    slug: str
    url: str
    title: str
    teaser: str
    html: str


@dataclass(frozen=True, slots=True)
class PublishedArticle:
    """A stored article page with the issue it went out in (what the web side serves)."""

    slug: str
    issue_id: int
    position: int
    title: str
    teaser: str
    html: str
    issue_status: IssueStatus
    published_at: datetime
