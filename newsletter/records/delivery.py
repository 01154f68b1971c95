"""Readers and their deliveries: a subscriber, a claimed batch (its recipients by columns),
what a claim answers, a delivery row, webhook events and their outcome, why readers left."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, overload

from newsletter.records.states import IssueStatus, SubscriberStatus


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
