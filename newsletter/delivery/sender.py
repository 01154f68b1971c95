"""The send loop: claim a batch, hand it to the provider, record its outcome. The delivery
log is the truth, so a crash at any point leaves every subscriber either pending (resend is
safe), sent, or uncertain (held for the editor or settled by the provider) -- never
silently sent twice. One small method per outcome, below `_record`."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from newsletter.delivery.context import SendContext
from newsletter.delivery.pace import Pace, is_pace_note
from newsletter.delivery.policy import SendReport, backoff_delay
from newsletter.delivery.recovery import recover_in_flight
from newsletter.delivery.state import SendState
from newsletter.exceptions import (
    ConfigError,
    CredentialsRefused,
    LeaseLost,
    NotSent,
    RateLimited,
    Rejected,
    Stopped,
    StoreError,
    TooLarge,
    TransientError,
    Uncertain,
    Unreachable,
    WorkerStopping,
)
from newsletter.links import site_of, unsubscribe_url
from newsletter.pacing import Allowance
from newsletter.providers import Accepted, OutgoingBatch, Settles
from newsletter.records import Batch, DeliveryState, IssueStatus, RenderedIssue

PENDING, IN_FLIGHT, SENT, FAILED, UNCERTAIN, SKIPPED = DeliveryState
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


@dataclass
class _Streak:
    """One thread's failed attempts in a row (batch-level retries count against it), and
    whether it gave up on readers the provider keeps deferring."""

    failures: int = 0
    gave_up: bool = False


class _IssueSender(SendState):
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
        self.provider = ctx.provider
        self.rendered = rendered
        self.site = site_of(rendered.view_url)  # for each reader's unsubscribe link
        self.batch_size = max(1, min(ctx.policy.batch_size, ctx.provider.max_batch))
        self.cursor = 0  # the highest subscriber id this send has claimed so far
        self.deferrals: dict[int, int] = {}  # subscriber id -> times deferred in this send
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
            streak = _Streak()
            while not streak.gave_up and (batch := self._next_batch()) is not None:
                outcome, written = self._send(batch)
                try:
                    self._record(batch, outcome, streak, written=written)
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
            status = self.log.issue_status(self.issue_id)
            if status != ISSUE_SENDING:
                self.finish(status)
                return None
            size = self._paced_size()
            if size == 0:
                return None
            batch = self._claim(size)
            if self.pace.limited:
                with self.lock:
                    self.reserved -= size - (len(batch.recipients) if batch else 0)
                    self.claiming -= size
            if batch is not None and batch.number == 0:
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

    def _claim(self, size: int) -> Batch | None:
        worker = self.hooks.worker
        now = self.now()  # reader time: only the waves whose instant has come are claimed
        # [sending]'s caps, counted again in the claim's transaction over every process.
        caps = self.pace.windows() if self.pace.limited else ()
        batch = self.log.claim(
            self.issue_id, size, worker=worker, after=self.cursor, now=now, windows=caps
        )
        if batch is None and self.cursor:
            # Rows released for a retry (or left by others) may sit below the cursor.
            self.cursor = 0
            batch = self.log.claim(self.issue_id, size, worker=worker, now=now, windows=caps)
        if batch is not None:
            with self.lock:
                self.cursor = max(self.cursor, batch.last_id)
        return batch

    def _send(self, batch: Batch) -> tuple[Accepted | Exception, bool]:
        """The provider's answer, or the exception it raised; and whether the request may
        have been written (the provider passed its last check)."""
        handed: list[bool] = []

        def ready() -> None:
            self.before_request()
            handed.append(True)

        try:
            outgoing = OutgoingBatch(
                issue_id=self.issue_id,
                batch=batch.number,
                rendered=self.rendered,
                recipients=batch.recipients,
                unsubscribe_urls=tuple(
                    unsubscribe_url(self.site, r.token) for r in batch.recipients
                ),
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

    def _record(
        self, batch: Batch, outcome: Accepted | Exception, streak: _Streak, *, written: bool
    ) -> None:
        if isinstance(outcome, Accepted):
            streak.failures = 0
            return self.accepted(batch, outcome, streak)
        for kinds, handler in _OUTCOMES:
            if isinstance(outcome, kinds):
                return handler(self, batch, outcome, streak)
        return self.unexpected(batch, outcome, written=written)

    # -- one method per outcome -----------------------------------------------------------
    def accepted(self, batch: Batch, accepted: Accepted, streak: _Streak) -> None:
        """Taken: sent, but for the recipients the provider names as refused (failed; those
        whose address does not exist are bounced), lost after the message was written
        (uncertain, each named) or deferred (back to pending, see `deferred`)."""
        self.log.fail(batch, accepted.rejected)
        if accepted.bounced:
            self.log.bounced(
                r.email for r in batch.recipients if r.subscriber_id in accepted.bounced
            )
        self.log.mark_each(batch, UNCERTAIN, accepted.uncertain)
        self.log.mark_each(batch, PENDING, accepted.deferred)
        self.log.mark_sent(batch, accepted.message_ids)
        others = len(accepted.rejected) + len(accepted.uncertain) + len(accepted.deferred)
        delivered = len(batch.recipients) - others
        if isinstance(accepted.message_ids, dict) and len(accepted.message_ids) < delivered:
            # Named nowhere in the answer: it may or may not have gone out.
            self.log.mark(batch, UNCERTAIN, "the provider's answer did not name this reader")
            delivered = len(accepted.message_ids)
        self.note(recipients=len(batch.recipients) - len(accepted.deferred), delivered=delivered)
        if accepted.deferred:
            self.deferred(accepted.deferred, streak)

    def deferred(self, reasons: dict[int, str], streak: _Streak) -> None:
        """Recipients the provider did not take this time (after its own retries): their
        rows are pending again and claimed once more after a backoff; deferred more than
        `max_retries` times in this send, they are left pending for the next run (the issue
        stays sending) and this thread stops claiming (the others finish their rows, then
        meet the same readers and stop too)."""
        with self.lock:
            for sid in reasons:
                self.deferrals[sid] = self.deferrals.get(sid, 0) + 1
            worst = max(self.deferrals[sid] for sid in reasons)
        reason = next(iter(reasons.values()))
        if worst > self.policy.max_retries:
            message = (
                f"{len(reasons)} readers deferred by the provider ({reason}): left pending; "
                "the next run (or the scheduler's next wake-up) sends them"
            )
            log.warning("issue %s: %s", self.issue_id, message)
            self.note(message)
            streak.gave_up = True
            return
        delay = backoff_delay(worst, self.policy)
        log.warning(
            "issue %s: %d readers deferred (%s); again in %.1fs",
            self.issue_id,
            len(reasons),
            reason,
            delay,
        )
        self.wait(delay)

    def transient(self, batch: Batch, exc: TransientError | RateLimited, streak: _Streak) -> None:
        """A temporary refusal of the whole batch: released and retried with backoff (or at
        the provider's retry time); after `max_retries` the batch fails (retryable)."""
        if not isinstance(exc, RateLimited) and self._deferred_before(batch):
            # Readers the provider deferred earlier in this send, refused again on their own.
            self.log.release(batch, error=str(exc))
            return self.deferred({r.subscriber_id: str(exc) for r in batch.recipients}, streak)
        streak.failures += 1
        self.note(str(exc))
        if streak.failures > self.policy.max_retries:
            self.log.mark(batch, FAILED, str(exc), retryable=True)
            streak.failures = 0
            self._count_failed_batch(str(exc))
            return
        self.log.release(batch, error=str(exc))
        delay = backoff_delay(streak.failures, self.policy)
        if isinstance(exc, RateLimited) and exc.retry_at is not None:
            delay = max(0.0, exc.retry_at - self.hooks.clock()) + random.uniform(0, 0.25)
        self._retry_in(batch, exc, delay)

    def _deferred_before(self, batch: Batch) -> bool:
        with self.lock:
            return all(r.subscriber_id in self.deferrals for r in batch.recipients)

    def unreachable(self, batch: Batch, exc: Unreachable, streak: _Streak) -> None:
        """No connection: not a refusal. The rows stay pending; after `max_retries` the
        issue is paused until the provider is back."""
        streak.failures += 1
        self.log.release(batch, error=str(exc))
        if streak.failures > self.policy.max_retries:
            return self._pause(str(exc), when="it is back")
        self.note(str(exc))
        self._retry_in(batch, exc, backoff_delay(streak.failures, self.policy))

    def _retry_in(self, batch: Batch, exc: Exception, delay: float) -> None:
        log.warning(
            "issue %s batch %s: %s; retrying in %.1fs", self.issue_id, batch.number, exc, delay
        )
        self.wait(delay)

    def too_large(self, batch: Batch, exc: TooLarge, _streak: _Streak) -> None:
        """Halve the batches; a single recipient too large fails for good."""
        if len(batch.recipients) == 1:
            self.log.mark(batch, FAILED, str(exc), retryable=False)
            return
        self.log.release(batch, error=str(exc))
        with self.lock:
            self.batch_size = max(1, min(self.batch_size, len(batch.recipients) // 2))
        log.warning(
            "issue %s: request too large; batches of %d now", self.issue_id, self.batch_size
        )

    def refused(self, batch: Batch, exc: Rejected, _streak: _Streak) -> None:
        """The provider refuses the whole batch for good."""
        detail = "; ".join(exc.details) or str(exc)
        self.log.mark(batch, FAILED, detail, retryable=False)
        error = f"{exc}: {detail}" if exc.details else str(exc)
        self.note(error)
        self._count_failed_batch(error)

    def credentials_refused(self, batch: Batch, exc: CredentialsRefused, _streak: _Streak) -> None:
        """A refused key or login: nothing went out; the issue is paused at once."""
        self.log.release(batch, error=str(exc))
        self.log.set_issue_status(self.issue_id, ISSUE_PAUSED, error=str(exc))
        self.finish(ISSUE_PAUSED, str(exc))

    def uncertain(self, batch: Batch, exc: Uncertain, _streak: _Streak) -> None:
        """The request may or may not have gone out: held, never resent silently."""
        self.log.mark(batch, UNCERTAIN, str(exc))
        self.note(str(exc), recipients=len(batch.recipients))

    def stopped_batch(self, batch: Batch, exc: Stopped, _streak: _Streak) -> None:
        """Stopped at the provider's last check (paused, cancelled, a refused key, a failing
        database): nothing was written."""
        self.log.release(batch)
        if isinstance(exc.__cause__, StoreError):
            raise exc.__cause__ from None
        self.done.set()

    def not_sent(self, batch: Batch, exc: NotSent, _streak: _Streak) -> None:
        """Never written (the request could not be built): safe to send again later."""
        self.log.release(batch, error=str(exc))
        self.note(str(exc))
        log.warning("issue %s batch %s: %s", self.issue_id, batch.number, exc)
        self._count_failed_batch(str(exc))

    def misconfigured(self, batch: Batch, exc: ConfigError, _streak: _Streak) -> None:
        """A setting is wrong: nothing was written, and the user is told."""
        self.log.release(batch)
        raise exc

    def unexpected(self, batch: Batch, exc: Exception, *, written: bool) -> None:
        """An exception no provider outcome names. Raised before the provider's last check
        (`written` false: building the message failed) nothing left, and the batch goes back
        to pending. After it the request may have been written: a provider that can tell
        settles the batch now (delivered: sent, the rest back to pending); otherwise it is
        uncertain (never resent silently). Either way the issue is paused at once with the
        error: the next batches would meet the same bug, and an issue is `sent` only once
        nothing is pending."""
        error = f"unexpected error while sending ({type(exc).__name__}: {exc})"
        log.warning("issue %s batch %s: %s", self.issue_id, batch.number, error)
        log.debug("the unexpected error", exc_info=exc)
        if not written:
            self.log.release(batch, error=error)
            self.note(error)
            return self._pause(f"paused: {error}")
        sent = self._settle_now(batch, error) if isinstance(self.provider, Settles) else None
        if sent is None:
            self.log.mark(batch, UNCERTAIN, f"{error}: it may or may not have gone out")
        done = len(batch.recipients) if sent is None else sent
        self.note(error, recipients=done, delivered=0 if sent is None else sent)
        self._pause(f"paused: {error}")

    def _settle_now(self, batch: Batch, error: str) -> int | None:
        """Ask a `Settles` provider what of `batch` it delivered: those sent, the rest back to
        pending. How many were sent, or None when it cannot tell after all."""
        assert isinstance(self.provider, Settles)
        ids = [r.subscriber_id for r in batch.recipients]
        try:
            delivered = self.provider.settle_uncertain(self.issue_id, ids)
        except Exception:
            log.debug("settling after the unexpected error failed", exc_info=True)
            return None
        sent = {sid: "" for sid in ids if delivered.get(sid)}
        if sent:
            self.log.mark_sent(batch, sent)
        self.log.release(batch, error=error)
        return len(sent)


# Which method records which outcome, in order: a subclass before its base.
_OUTCOMES: tuple[tuple[type[Exception] | tuple[type[Exception], ...], Callable], ...] = (
    (Stopped, _IssueSender.stopped_batch),
    (Unreachable, _IssueSender.unreachable),
    ((RateLimited, TransientError), _IssueSender.transient),
    (TooLarge, _IssueSender.too_large),
    (Rejected, _IssueSender.refused),
    (CredentialsRefused, _IssueSender.credentials_refused),
    (Uncertain, _IssueSender.uncertain),
    (NotSent, _IssueSender.not_sent),
    (ConfigError, _IssueSender.misconfigured),
)
