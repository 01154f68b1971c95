"""The delivery log as the sender sees it: the few store methods the send loop and recovery
call, declared as protocols (as listmonk's campaign manager declares its store), and
`StoreLog`, the one adapter over the `Store`. The sender depends on these methods only, so
what it reads and writes is visible in one place."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Protocol

from newsletter.links import Site, stored_issue
from newsletter.pacing import Window
from newsletter.records import Batch, Claim, DeliveryRow, RenderedIssue, SubscriberStatus
from newsletter.store import Store


class RecoveryLog(Protocol):
    """What recovery after a crash needs (`store.deliveries` has exactly these)."""

    def in_flight_claims(self, issue_id: int) -> list[tuple[str | None, datetime]]: ...

    def in_flight_to_uncertain(
        self, issue_id: int, older_than: datetime | None = None, worker: str | None = None
    ) -> int: ...

    def in_state(
        self, issue_id: int, state: str, limit: int | None = None
    ) -> list[DeliveryRow]: ...

    def settle(
        self,
        issue_id: int,
        from_state: str,
        to_state: str,
        subscriber_ids: Iterable[int] | None = None,
    ) -> int: ...


class IssueStatuses(Protocol):
    """An issue's status, read and changed (`store.issues` has exactly these)."""

    def issue_status(self, issue_id: int) -> str: ...

    def set_issue_status(
        self,
        issue_id: int,
        status: str,
        *,
        error: str | None = None,
        only_from: tuple[str, ...] = (),
    ) -> bool: ...


class PaceLog(Protocol):
    """What pacing reads and keeps: sends since a time (`store.deliveries.sent_since`, the one
    count), recipients in flight in every process, the warm-up's first day (`meta`)."""

    def sent_since(self, since: datetime) -> int: ...

    def in_flight_count(self) -> int: ...

    def warmup_start(self) -> date | None: ...

    def start_warmup(self, day: date) -> None: ...


class DeliveryLog(RecoveryLog, IssueStatuses, PaceLog, Protocol):
    """What the send loop needs: the issue (as rendered, its status), claiming a batch and
    recording each outcome of it, per batch or per recipient."""

    def rendered(self, issue_id: int) -> RenderedIssue: ...

    def last_error(self, issue_id: int) -> str | None: ...

    def finish_sending(self, issue_id: int) -> bool: ...

    def record_failed_batch(self, issue_id: int, error: str) -> int: ...

    def unfinished_issues(self) -> list[int]: ...

    def counts(self, issue_id: int) -> dict[str, int]: ...

    def claim(
        self,
        issue_id: int,
        size: int,
        worker: str,
        after: int = 0,
        now: datetime | None = None,
        windows: Sequence[Window] = (),
        while_sending: bool = False,
    ) -> Claim: ...

    def next_wave(self, issue_id: int, after: datetime) -> datetime | None: ...

    def waiting_until(self, issue_id: int, now: datetime) -> datetime | None: ...

    def release(self, batch: Batch, error: str | None = None) -> int: ...

    def mark(
        self, batch: Batch, state: str, error: str | None = None, retryable: bool | None = None
    ) -> int: ...

    def mark_each(self, batch: Batch, state: str, reasons: dict[int, str]) -> int: ...

    def mark_sent(self, batch: Batch, message_ids: dict[int, str] | str) -> int: ...

    def fail(self, batch: Batch, reasons: dict[int, str]) -> int: ...

    def bounced(self, emails: Iterable[str]) -> int: ...


# The `meta` key holding day 1 of the warm-up plan ([sending] warmup), an ISO date.
WARMUP_STARTED = "warmup_started"


class StoreLog:
    """`DeliveryLog` over the `Store`; `site` gives a stored issue its archive link."""

    def __init__(self, store: Store, site: Site) -> None:
        self.store = store
        self.site = site
        # The rows and the issue's row: straight to the store's own methods.
        deliveries, issues = store.deliveries, store.issues
        self.claim = deliveries.claim
        self.next_wave = deliveries.next_wave
        self.waiting_until = deliveries.waiting_until
        self.release = deliveries.release
        self.mark = deliveries.mark
        self.mark_each = deliveries.mark_each
        self.mark_sent = deliveries.mark_sent
        self.fail = deliveries.fail
        self.counts = deliveries.counts
        self.settle = deliveries.settle
        self.in_state = deliveries.in_state
        self.in_flight_claims = deliveries.in_flight_claims
        self.in_flight_to_uncertain = deliveries.in_flight_to_uncertain
        self.issue_status = issues.issue_status
        self.set_issue_status = issues.set_issue_status
        self.finish_sending = issues.finish_sending
        self.record_failed_batch = issues.record_failed_batch
        self.unfinished_issues = issues.unfinished_issues
        self.sent_since = deliveries.sent_since
        self.in_flight_count = deliveries.in_flight_count

    def warmup_start(self) -> date | None:
        value = self.store.meta.get(WARMUP_STARTED)
        return date.fromisoformat(value) if value else None

    def start_warmup(self, day: date) -> None:
        """Day 1 of the warm-up plan, kept once (a second sender's later write is the same day
        or ignored: the first one stays)."""
        if self.store.meta.get(WARMUP_STARTED) is None:
            self.store.meta.set(WARMUP_STARTED, day.isoformat())

    def rendered(self, issue_id: int) -> RenderedIssue:
        return stored_issue(self.site, self.store.issues.get_issue(issue_id))

    def last_error(self, issue_id: int) -> str | None:
        return self.store.issues.get_issue(issue_id).last_error

    def bounced(self, emails: Iterable[str]) -> int:
        """The addresses do not exist: their subscribers become `bounced` (never undoing a
        complaint)."""
        return sum(self.store.subscribers.suppress(e, SubscriberStatus.BOUNCED) for e in emails)
