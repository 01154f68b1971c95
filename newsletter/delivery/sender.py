"""The send loop: claim a batch, hand it to the provider, record its outcome. The delivery
log is the truth, so a crash at any point leaves every subscriber either pending (resend is
safe), sent, or uncertain (held for the editor or settled by the provider) -- never
silently sent twice. Each thread runs `claim -> send -> record`; what each outcome records is
`outcomes.py`'s, one small method per outcome."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from newsletter.delivery.context import SendContext
from newsletter.delivery.outcomes import Outcomes, Streak
from newsletter.delivery.pace import Pace, is_pace_note
from newsletter.delivery.policy import SendReport
from newsletter.delivery.recovery import recover_in_flight
from newsletter.exceptions import CredentialsRefused, LeaseLost, StoreError, WorkerStopping
from newsletter.links import site_of, unsubscribe_urls
from newsletter.pacing import Allowance
from newsletter.providers import Accepted, OutgoingBatch
from newsletter.records import (
    AtCap,
    Batch,
    Claim,
    DeliveryState,
    IssueStatus,
    NotSending,
    RenderedIssue,
)

PENDING, IN_FLIGHT = DeliveryState.PENDING, DeliveryState.IN_FLIGHT
ISSUE_SENDING, ISSUE_PAUSED, ISSUE_SENT = IssueStatus.SENDING, IssueStatus.PAUSED, IssueStatus.SENT

log = logging.getLogger(__name__)


def send_issue(ctx: SendContext, issue_id: int) -> SendReport:
    """Send every pending delivery of an issue, batch by batch, until none is left, the
    issue is paused or cancelled, or the provider refuses the credentials. With
    `policy.concurrency` > 1 several batches are in flight at once (each thread claims its own
    batch from the log), so the database and the network overlap."""
    rendered = ctx.log.rendered(issue_id)
    report = SendReport(issue_id, ctx.log.issue_status(issue_id))
    progress = None
    if ctx.hooks.progress is not None:
        counts = ctx.log.counts(issue_id)
        progress = ctx.hooks.progress(issue_id, counts[PENDING] + counts[IN_FLIGHT])
    recover_in_flight(ctx.log, issue_id, ctx.policy, ctx.provider)
    sender = _IssueSender(ctx, issue_id, rendered, report, progress)
    threads = max(1, ctx.policy.concurrency)
    if threads == 1:
        sender.run()
    else:
        with ThreadPoolExecutor(threads, thread_name_prefix=f"issue-{issue_id}") as pool:
            for future in [pool.submit(sender.run) for _ in range(threads)]:
                future.result()  # re-raises a thread's StoreError, LeaseLost, ...
    if report.paced_until is not None and threads > 1:
        sender.paced_note()  # recounted once every thread's batch in flight is recorded
    if (message := sender.pause_message()) is not None and threads > 1:
        # Recount once every thread is done, so the pause names what is really left.
        ctx.log.set_issue_status(issue_id, ISSUE_PAUSED, error=message, only_from=(ISSUE_PAUSED,))
        report.last_error = message
    report.counts = ctx.log.counts(issue_id)
    if report.status == ISSUE_SENDING:
        report.status = ctx.log.issue_status(issue_id)
    if report.last_error is None:
        report.last_error = ctx.log.last_error(issue_id)
    if report.status == ISSUE_SENDING:  # reader time: the rest waits for its wave
        report.next_wave = ctx.log.next_wave(issue_id, sender.now())
    return report


class _IssueSender(Outcomes):
    """The per-batch loop of `send_issue`; each thread runs `run` on the same instance."""

    def __init__(
        self,
        ctx: SendContext,
        issue_id: int,
        rendered: RenderedIssue,
        report: SendReport,
        progress: Callable[[int], None] | None,
    ) -> None:
        super().__init__(ctx, issue_id, report, progress)
        self.rendered = rendered
        self.site = site_of(rendered.view_url)  # for each reader's unsubscribe link
        self.cursor = 0  # the highest subscriber id this send has claimed so far
        self.pace = Pace(ctx.log, ctx.policy, ctx.hooks.clock)
        self.reserved = 0  # claimed under the caps by this send, not yet recorded
        self.claiming = 0  # of which the claim has not committed yet (not in the log)
        self.paced_by: Allowance | None = None
        self.resumed = False  # a claim under the caps was allowed in this send

    def now(self) -> datetime:
        """The hooks' clock as an aware UTC time (tests inject it)."""
        return datetime.fromtimestamp(self.hooks.clock(), UTC)

    # -- the loop: claim -> send -> record ------------------------------------------------
    def run(self) -> None:
        try:
            streak = Streak()
            while not streak.gave_up and (batch := self._next_batch()) is not None:
                outcome, written = self._send(batch, claimed_at=time.monotonic())
                try:
                    self.record(batch, outcome, streak, written=written)
                finally:
                    if self.pace.limited:
                        with self.lock:
                            self.reserved -= len(batch.recipients)
        except BaseException:
            self.done.set()
            raise
        finally:
            self.probe_done()

    def _next_batch(self) -> Batch | None:
        """The next claimed batch, or None when this thread is done: stopped, the issue no
        longer sending, or nothing left to claim."""
        while not self.done.is_set():
            if self.hooks.stop_requested():
                self.stopped()
                return None
            if self.hooks.heartbeat:
                self.hooks.heartbeat()  # between batches: renews the lease, or stops a scheduler
            self.wait_for_probe()
            if self.done.is_set():
                return None
            size = self._paced_size()
            if size == 0:
                return None
            batch = self._claim(size)
            if self.pace.limited:
                with self.lock:
                    claimed = len(batch.recipients) if isinstance(batch, Batch) else 0
                    self.reserved -= size - claimed
                    self.claiming -= size
            if isinstance(batch, NotSending):  # paused, cancelled or sent meanwhile
                self.finish(batch.status)
                return None
            if isinstance(batch, AtCap):
                # At a cap as the claim counted it (another sender's batches in flight): the
                # next pre-check counts them too; with nothing pending, the issue may finish.
                if self.log.counts(self.issue_id)[PENDING]:
                    continue
                batch = None
            if batch is None:
                # Sent only once no row is pending or in flight (one statement): otherwise
                # other threads (or processes) still have batches, or released one since.
                if self.log.finish_sending(self.issue_id):
                    self.finish(ISSUE_SENT)
                return None
            if batch.recipients:
                self.note(batch=True)
                return batch
        return None

    def _paced_size(self) -> int:
        """The next batch's size: the batch size, or less so that no cap of [sending] is
        passed (counting this send's batches still in flight); 0 at a cap: the send stops
        here with the rest pending, the issue still sending and its reason recorded."""
        if not self.pace.limited:
            return self.batch_size
        with self.lock:
            allowed = self.pace.allowance(self.claiming)
            if allowed.now != 0:
                size = self.batch_size if allowed.now is None else min(self.batch_size, allowed.now)
                self.reserved += size
                self.claiming += size
                resumed, self.resumed = not self.resumed, True
            elif self.reserved:
                # At the cap counting this send's batches in flight: this thread is done;
                # the thread recording the last of them tells the pause.
                return 0
            elif self.paced_by is None:
                self.paced_by = allowed
        if allowed.now == 0 and not self.log.counts(self.issue_id)[PENDING]:
            with self.lock:  # at the cap with nothing left to claim: the issue can finish
                self.paced_by = None
                self.reserved += self.batch_size
                self.claiming += self.batch_size
            return self.batch_size
        if allowed.now != 0:
            if resumed and is_pace_note(self.log.last_error(self.issue_id)):
                # A window opened: the pause's reason no longer holds.
                self.log.set_issue_status(
                    self.issue_id, ISSUE_SENDING, error="", only_from=(ISSUE_SENDING,)
                )
            return size
        self.paced_note()
        self.done.set()  # the other threads stop claiming; their batches in flight finish
        return 0

    def paced_note(self) -> None:
        """Record the pace's reason on the issue (what `status`, the CLI's report and the
        workspace show): "paused until 14:00 by the hourly cap, 12,000 left"."""
        if self.paced_by is None:
            return
        counts = self.log.counts(self.issue_id)
        message = self.paced_by.describe(counts[PENDING] + counts[IN_FLIGHT], self.policy.zone)
        self.log.set_issue_status(
            self.issue_id, ISSUE_SENDING, error=message, only_from=(ISSUE_SENDING,)
        )
        with self.lock:
            self.report.paced_until = self.paced_by.next_window
            self.report.last_error = message
        log.info("issue %s: %s", self.issue_id, message)

    def _claim(self, size: int) -> Claim:
        """The claim's answer; the issue's status is read in the claim's own transaction."""
        worker = self.hooks.worker
        now = self.now()  # reader time: only the waves whose instant has come are claimed
        # [sending]'s caps, counted again in the claim's transaction over every process.
        caps = self.pace.windows() if self.pace.limited else ()
        batch = self.log.claim(
            self.issue_id,
            size,
            worker=worker,
            after=self.cursor,
            now=now,
            windows=caps,
            while_sending=True,
        )
        if batch is None and self.cursor:
            # Rows released for a retry (or left by others) may sit below the cursor.
            self.cursor = 0
            batch = self.log.claim(
                self.issue_id, size, worker=worker, now=now, windows=caps, while_sending=True
            )
        if isinstance(batch, Batch):
            with self.lock:
                self.cursor = max(self.cursor, batch.last_id)
        return batch

    def _send(self, batch: Batch, claimed_at: float) -> tuple[Accepted | Exception, bool]:
        """The provider's answer, or the exception it raised; and whether the request may
        have been written (the provider passed its last check). The claim, just made at
        `claimed_at`, read the issue's status."""
        handed: list[bool] = []

        def ready() -> None:
            self.before_request(claimed_at)
            handed.append(True)

        try:
            outgoing = OutgoingBatch(
                issue_id=self.issue_id,
                batch=batch.number,
                rendered=self.rendered,
                recipients=batch.recipients,
                unsubscribe_urls=unsubscribe_urls(self.site, batch.recipients.tokens),
                before_request=ready,
            )
            try:
                return self.provider.send(outgoing), True
            except CredentialsRefused:
                self.done.set()  # before the threads waiting for this answer go on
                raise
            finally:
                self.first_answer.set()
        except (LeaseLost, WorkerStopping, StoreError):
            raise
        except Exception as exc:
            return exc, bool(handed)
