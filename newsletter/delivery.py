"""The delivery state machine: claim a batch, mark it in flight, hand it to the provider,
record the answer. The delivery log in `store` is the truth, so a crash at any point leaves
every subscriber either pending (resend is safe), sent, or uncertain (held for the editor or
settled by the provider's events) -- never silently sent twice.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.providers import (
    CredentialsRefused,
    OutgoingBatch,
    Provider,
    RateLimited,
    Rejected,
    TooLarge,
    TransientError,
    Uncertain,
)
from newsletter.render import RenderedIssue, unsubscribe_url, view_url
from newsletter.store import (
    FAILED,
    ISSUE_CANCELLED,
    ISSUE_PAUSED,
    ISSUE_SENDING,
    ISSUE_SENT,
    PENDING,
    SENT,
    UNCERTAIN,
    Store,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryPolicy:
    batch_size: int = 1000
    max_retries: int = 5
    max_failed_batches: int = 3
    backoff_base: float = 0.5
    backoff_cap: float = 60.0
    resend_uncertain: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        sg = settings.sendgrid
        return cls(
            batch_size=sg.batch_size,
            max_retries=sg.max_retries,
            max_failed_batches=sg.max_failed_batches,
            resend_uncertain=settings.resend_uncertain,
        )


@dataclass
class SendReport:
    issue_id: int
    status: str
    counts: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    last_error: str | None = None
    newly_uncertain: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.status == ISSUE_SENT
            and not self.counts.get(FAILED)
            and not self.counts.get(UNCERTAIN)
        )


SENDER_LEASE = "sender"


class SenderBusy(NewsletterError):
    """Another process holds the sending lease (a second scheduler, or a run in progress)."""


class LeaseLost(NewsletterError):
    """This process stalled past its lease and another sender may have taken over."""


class SendingLease:
    """Only one process sends at a time. The lease expires if its holder dies, so a standby
    (or the next `run`) takes over; in-flight rows are only recovered by the new holder."""

    def __init__(self, store: Store, ttl: timedelta, holder: str | None = None) -> None:
        self.store = store
        self.ttl = ttl
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held = False

    def acquire(self) -> bool:
        self.held = self.store.acquire_lease(SENDER_LEASE, self.holder, self.ttl)
        if not self.held:
            current = self.store.lease_holder(SENDER_LEASE)
            if current and _dead_local_process(current[0]):
                # Its holder was killed on this machine: no need to wait for the lease to expire.
                self.held = self.store.take_over_lease(
                    SENDER_LEASE, current[0], self.holder, self.ttl
                )
        return self.held

    def renew(self) -> None:
        if not self.store.acquire_lease(SENDER_LEASE, self.holder, self.ttl):
            self.held = False
            raise LeaseLost("the sending lease was lost (this process stalled); stopping")

    def release(self) -> None:
        if self.held:
            self.store.release_lease(SENDER_LEASE, self.holder)
            self.held = False

    def __enter__(self) -> SendingLease:
        if not self.acquire():
            current = self.store.lease_holder(SENDER_LEASE)
            who = f"{current[0]} (lease until {current[1]:%H:%M:%S} UTC)" if current else "another"
            raise SenderBusy(f"another sender is active: {who}; not sending from here")
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def _dead_local_process(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def rendered_from_row(issue: dict, settings: Settings) -> RenderedIssue:
    """Rebuild the rendered issue from its stored row: it was rendered once, at creation."""
    return RenderedIssue(
        subject=issue["subject"],
        preheader=issue["preheader"],
        html=issue["html"],
        text=issue["text"],
        archive_html=issue["archive_html"],
        nonce=issue["placeholder_nonce"],
        view_url=view_url(settings, issue["slug"]),
        slug=issue["slug"],
    )


def backoff_delay(attempt: int, policy: DeliveryPolicy) -> float:
    """Capped exponential backoff with full jitter."""
    return random.uniform(0, min(policy.backoff_cap, policy.backoff_base * 2**attempt))


def recover_in_flight(store: Store, issue_id: int, policy: DeliveryPolicy, older_than=None) -> int:
    """Batches left in flight by a dead sender become uncertain (or pending again when the
    list prefers a duplicate to a gap). Call only while holding the sending lease."""
    moved = store.in_flight_to_uncertain(issue_id, older_than=older_than)
    if moved:
        log.warning(
            "issue %s: %d deliveries were in flight at a crash: now uncertain", issue_id, moved
        )
    if policy.resend_uncertain:
        store.settle_deliveries(issue_id, UNCERTAIN, PENDING)
    return moved


def send_issue(
    store: Store,
    settings: Settings,
    provider: Provider,
    issue_id: int,
    *,
    policy: DeliveryPolicy | None = None,
    progress: Callable[[int], None] | None = None,
    worker: str = "main",
    sleep: Callable[[float], None] = time.sleep,
    categories: tuple[str, ...] = (),
    recover: bool = True,
    heartbeat: Callable[[], None] | None = None,
) -> SendReport:
    """Send every pending delivery of an issue, batch by batch, until none is left, the
    issue is paused or cancelled, or the provider refuses the credentials."""
    policy = policy or DeliveryPolicy.from_settings(settings)
    issue = store.get_issue(issue_id)
    rendered = rendered_from_row(issue, settings)
    report = SendReport(issue_id, issue["status"])
    if recover:
        report.newly_uncertain = recover_in_flight(store, issue_id, policy)
    batch_size = max(1, min(policy.batch_size, provider.max_batch))
    consecutive_failures = 0

    def wait(seconds: float) -> None:
        # Keep the lease alive through long rate-limit waits.
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            sleep(min(left, 5.0))
            if heartbeat:
                heartbeat()

    while True:
        if heartbeat:
            heartbeat()  # between batches: renews the lease, or stops a stopping scheduler
        status = store.issue_status(issue_id)
        if status != ISSUE_SENDING:
            report.status = status
            break
        batch = store.claim_batch(issue_id, batch_size, worker=worker)
        if batch is None:
            store.set_issue_status(issue_id, ISSUE_SENT, only_from=(ISSUE_SENDING,))
            report.status = ISSUE_SENT
            break
        if not batch.recipients:
            continue
        report.batches += 1
        outgoing = OutgoingBatch(
            issue_id=issue_id,
            batch=batch.number,
            rendered=rendered,
            recipients=batch.recipients,
            unsubscribe_urls=tuple(unsubscribe_url(settings, r.token) for r in batch.recipients),
            categories=categories or settings.sendgrid.categories,
        )
        try:
            accepted = provider.send(outgoing)
        except (RateLimited, TransientError) as exc:
            consecutive_failures += 1
            report.last_error = str(exc)
            if consecutive_failures > policy.max_retries:
                store.mark_batch(issue_id, batch.number, FAILED, str(exc), retryable=True)
                consecutive_failures = 0
                if _too_many_failures(store, issue_id, policy, str(exc), report):
                    break
                continue
            store.release_batch(issue_id, batch.number, error=str(exc))
            delay = backoff_delay(consecutive_failures, policy)
            if isinstance(exc, RateLimited) and exc.retry_at is not None:
                delay = max(0.0, exc.retry_at - time.time()) + random.uniform(0, 0.25)
            log.warning(
                "issue %s batch %s: %s; retrying in %.1fs", issue_id, batch.number, exc, delay
            )
            wait(delay)
            continue
        except TooLarge as exc:
            store.release_batch(issue_id, batch.number, error=str(exc))
            if len(batch.recipients) == 1:
                store.mark_batch(issue_id, batch.number, FAILED, str(exc), retryable=False)
            batch_size = max(1, len(batch.recipients) // 2)
            log.warning("issue %s: request too large; batches of %d now", issue_id, batch_size)
            continue
        except Rejected as exc:
            detail = "; ".join(exc.details) or str(exc)
            store.mark_batch(issue_id, batch.number, FAILED, detail, retryable=False)
            report.last_error = f"{exc}: {detail}" if exc.details else str(exc)
            if _too_many_failures(store, issue_id, policy, report.last_error, report):
                break
            continue
        except CredentialsRefused as exc:
            store.release_batch(issue_id, batch.number, error=str(exc))
            store.set_issue_status(issue_id, ISSUE_PAUSED, error=str(exc))
            report.status, report.last_error = ISSUE_PAUSED, str(exc)
            break
        except Uncertain as exc:
            store.mark_batch(issue_id, batch.number, UNCERTAIN, str(exc))
            report.last_error = str(exc)
            if progress:
                progress(len(batch.recipients))
            continue
        consecutive_failures = 0
        store.fail_deliveries(issue_id, batch.number, accepted.rejected)
        store.mark_sent(issue_id, batch.number, accepted.message_ids)
        if progress:
            progress(len(batch.recipients))

    report.counts = store.delivery_counts(issue_id)
    if report.last_error is None:
        report.last_error = store.get_issue(issue_id)["last_error"]
    return report


def _too_many_failures(
    store: Store, issue_id: int, policy: DeliveryPolicy, error: str, report: SendReport
) -> bool:
    failed = store.record_failed_batch(issue_id, error)
    if failed < policy.max_failed_batches:
        return False
    message = f"paused after {failed} failed batches; last error: {error}"
    store.set_issue_status(issue_id, ISSUE_PAUSED, error=message)
    report.status, report.last_error = ISSUE_PAUSED, message
    return True


# Which editor actions are allowed from which issue status.
_TRANSITIONS = {
    ISSUE_PAUSED: (ISSUE_SENDING,),
    ISSUE_SENDING: (ISSUE_PAUSED,),
    ISSUE_CANCELLED: (ISSUE_SENDING, ISSUE_PAUSED),
}


def change_issue_status(store: Store, issue_id: int, status: str) -> None:
    """Pause, resume or cancel an issue; takes effect between batches."""
    current = store.issue_status(issue_id)
    if not store.set_issue_status(issue_id, status, only_from=_TRANSITIONS[status]):
        raise NewsletterError(f"issue {issue_id} is {current}: cannot make it {status}")


def resolve_uncertain(store: Store, issue_id: int, resend: bool) -> int:
    """The editor's decision on uncertain deliveries: resend them, or count them as sent."""
    store.get_issue(issue_id)
    moved = store.settle_deliveries(issue_id, UNCERTAIN, PENDING if resend else SENT)
    if resend and moved:
        store.set_issue_status(issue_id, ISSUE_SENDING)
    return moved
