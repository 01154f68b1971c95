"""What the threads of one send share: the report, the stop and pause decisions, the
first request's probe, the waits that keep the lease alive, the batches' size and the readers
the provider deferred."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from newsletter.delivery.context import SendContext
from newsletter.delivery.policy import SendReport
from newsletter.exceptions import Stopped, StoreError
from newsletter.records import DeliveryState, IssueStatus

PENDING, IN_FLIGHT = DeliveryState.PENDING, DeliveryState.IN_FLIGHT
ISSUE_SENDING, ISSUE_PAUSED = IssueStatus.SENDING, IssueStatus.PAUSED

log = logging.getLogger(__name__)

# A claim reads the issue's status in its own transaction; a request that follows it within
# this long needs no read of its own (a batch that waited reads the status again).
CLAIMED_STATUS_HOLDS_SECONDS = 0.25


class SendState:
    """One send of one issue, as its threads see it (the sender's base)."""

    def __init__(
        self,
        ctx: SendContext,
        issue_id: int,
        report: SendReport,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.log, self.policy, self.hooks = ctx.log, ctx.policy, ctx.hooks
        self.issue_id = issue_id
        self.report = report
        self.progress = progress
        self.lock = threading.Lock()
        self.done = threading.Event()
        # The first request of a send goes out alone: the other threads claim nothing until
        # its answer, so a refused key costs one request rather than one per thread, and a
        # sender killed meanwhile leaves no batch in flight that never left.
        self.prober: int | None = None  # the thread sending the first request
        self.first_answer = threading.Event()
        self.paused_for: tuple[str, str] | None = None  # (reason, when to resume)
        self.provider = ctx.provider
        # The batches' size, halved for every thread when the provider says one was too large.
        self.batch_size = max(1, min(ctx.policy.batch_size, ctx.provider.max_batch))
        self.deferrals: dict[int, int] = {}  # subscriber id -> times deferred in this send

    def wait(self, seconds: float) -> None:
        # Keep the lease alive through long rate-limit waits.
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self.done.is_set():
            if self.hooks.stop_requested():
                return
            self.hooks.sleep(min(left, 5.0))
            if self.hooks.heartbeat:
                self.hooks.heartbeat()

    def finish(self, status: str, error: str | None = None) -> None:
        with self.lock:
            self.report.status = status
            if error:
                self.report.last_error = error
        self.done.set()

    def stopped(self) -> None:
        """A stop request between batches: leave the rest pending, the issue resumable."""
        with self.lock:
            self.report.stopped = True
        self.done.set()

    def note(
        self, error: str | None = None, recipients: int = 0, batch: bool = False, delivered: int = 0
    ) -> None:
        with self.lock:
            if error:
                self.report.last_error = error
            if batch:
                self.report.batches += 1
            self.report.delivered += delivered
            if recipients and self.progress:
                self.progress(recipients)

    def before_request(self, claimed_at: float) -> None:
        """Right before a request is written (called by the provider): stop if the key was
        refused, or the issue paused or cancelled, after this batch was claimed. The claim
        read the status at `claimed_at` (`time.monotonic()`); read again only if that was
        more than `CLAIMED_STATUS_HOLDS_SECONDS` ago."""
        if self.done.is_set():
            raise Stopped("the send was stopped before this request")
        if time.monotonic() - claimed_at < CLAIMED_STATUS_HOLDS_SECONDS:
            return
        try:
            status = self.log.issue_status(self.issue_id)
        except StoreError as exc:
            raise Stopped("the database failed before this request") from exc
        if status != ISSUE_SENDING:
            self.finish(status)
            raise Stopped(f"the issue is {status}")

    def wait_for_probe(self) -> None:
        """Before a claim: the first thread here sends the first request; the others wait for
        its answer (or the end of the send)."""
        if self.first_answer.is_set():
            return
        with self.lock:
            if self.prober is None:
                self.prober = threading.get_ident()
        if self.prober == threading.get_ident():
            return
        while not self.first_answer.wait(0.05) and not self.done.is_set():
            pass

    def probe_done(self) -> None:
        """A thread leaves the send: if it was sending the first request, the others go on."""
        if self.prober == threading.get_ident():
            self.first_answer.set()

    def pause_message(self) -> str | None:
        """What the pause says, counted now: other threads' batches in flight when the pause
        began have been recorded once `send_issue` has joined them."""
        if self.paused_for is None:
            return None
        reason, when = self.paused_for
        counts = self.log.counts(self.issue_id)
        return (
            f"{reason}; {counts[PENDING] + counts[IN_FLIGHT]} readers still to send; "
            f"`newsletter resume {self.issue_id}` when {when}"
        )

    def _pause(self, reason: str, when: str = "the cause is fixed") -> None:
        """Pause the issue with `reason` as its error (what `status`, the CLI's report and the
        editors' alert show); `resume` goes on once the cause is fixed."""
        with self.lock:
            self.paused_for = (reason, when)
        message = self.pause_message() or reason
        log.warning("issue %s: %s", self.issue_id, message)
        self.log.set_issue_status(
            self.issue_id, ISSUE_PAUSED, error=message, only_from=(ISSUE_SENDING,)
        )
        self.finish(ISSUE_PAUSED, message)

    def _count_failed_batch(self, error: str) -> None:
        failed = self.log.record_failed_batch(self.issue_id, error)
        if failed >= self.policy.max_failed_batches:
            message = f"paused after {failed} failed batches; last error: {error}"
            self.log.set_issue_status(self.issue_id, ISSUE_PAUSED, error=message)
            self.finish(ISSUE_PAUSED, message)
