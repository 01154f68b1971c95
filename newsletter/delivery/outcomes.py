"""Recording a batch's outcome: one small method per thing a provider can answer, and the
table `record` dispatches on. The send loop (`sender.py`) claims and sends; what each answer
writes to the delivery log, and whether the send goes on, backs off, shrinks its batches or
pauses the issue, is decided here."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from newsletter.delivery.policy import backoff_delay
from newsletter.delivery.state import SendState
from newsletter.exceptions import (
    ConfigError,
    CredentialsRefused,
    NotSent,
    RateLimited,
    Rejected,
    Stopped,
    StoreError,
    TooLarge,
    TransientError,
    Uncertain,
    Unreachable,
)
from newsletter.providers import Accepted, Settles
from newsletter.records import Batch, DeliveryState, IssueStatus

PENDING, FAILED, UNCERTAIN = DeliveryState.PENDING, DeliveryState.FAILED, DeliveryState.UNCERTAIN
ISSUE_PAUSED = IssueStatus.PAUSED

log = logging.getLogger(__name__)


@dataclass
class Streak:
    """One thread's failed attempts in a row (batch-level retries count against it), and
    whether it gave up on readers the provider keeps deferring."""

    failures: int = 0
    gave_up: bool = False


class Outcomes(SendState):
    """What the send's threads record, batch by batch (the sender's base)."""

    def record(
        self, batch: Batch, outcome: Accepted | Exception, streak: Streak, *, written: bool
    ) -> None:
        """Hand the provider's answer (or what it raised) to its method; `written`: the request
        may have left (the provider passed its last check), which an unexpected error needs."""
        if isinstance(outcome, Accepted):
            streak.failures = 0
            return self.accepted(batch, outcome, streak)
        for kinds, handler in OUTCOMES:
            if isinstance(outcome, kinds):
                return handler(self, batch, outcome, streak)
        return self.unexpected(batch, outcome, written=written)

    # -- one method per outcome -----------------------------------------------------------
    def accepted(self, batch: Batch, accepted: Accepted, streak: Streak) -> None:
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

    def deferred(self, reasons: dict[int, str], streak: Streak) -> None:
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

    def transient(self, batch: Batch, exc: TransientError | RateLimited, streak: Streak) -> None:
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

    def unreachable(self, batch: Batch, exc: Unreachable, streak: Streak) -> None:
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

    def too_large(self, batch: Batch, exc: TooLarge, _streak: Streak) -> None:
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

    def refused(self, batch: Batch, exc: Rejected, _streak: Streak) -> None:
        """The provider refuses the whole batch for good."""
        detail = "; ".join(exc.details) or str(exc)
        self.log.mark(batch, FAILED, detail, retryable=False)
        error = f"{exc}: {detail}" if exc.details else str(exc)
        self.note(error)
        self._count_failed_batch(error)

    def credentials_refused(self, batch: Batch, exc: CredentialsRefused, _streak: Streak) -> None:
        """A refused key or login: nothing went out; the issue is paused at once."""
        self.log.release(batch, error=str(exc))
        self.log.set_issue_status(self.issue_id, ISSUE_PAUSED, error=str(exc))
        self.finish(ISSUE_PAUSED, str(exc))

    def uncertain(self, batch: Batch, exc: Uncertain, _streak: Streak) -> None:
        """The request may or may not have gone out: held, never resent silently."""
        self.log.mark(batch, UNCERTAIN, str(exc))
        self.note(str(exc), recipients=len(batch.recipients))

    def stopped_batch(self, batch: Batch, exc: Stopped, _streak: Streak) -> None:
        """Stopped at the provider's last check (paused, cancelled, a refused key, a failing
        database): nothing was written."""
        self.log.release(batch)
        if isinstance(exc.__cause__, StoreError):
            raise exc.__cause__ from None
        self.done.set()

    def not_sent(self, batch: Batch, exc: NotSent, _streak: Streak) -> None:
        """Never written (the request could not be built): safe to send again later."""
        self.log.release(batch, error=str(exc))
        self.note(str(exc))
        log.warning("issue %s batch %s: %s", self.issue_id, batch.number, exc)
        self._count_failed_batch(str(exc))

    def misconfigured(self, batch: Batch, exc: ConfigError, _streak: Streak) -> None:
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
OUTCOMES: tuple[tuple[type[Exception] | tuple[type[Exception], ...], Callable], ...] = (
    (Stopped, Outcomes.stopped_batch),
    (Unreachable, Outcomes.unreachable),
    ((RateLimited, TransientError), Outcomes.transient),
    (TooLarge, Outcomes.too_large),
    (Rejected, Outcomes.refused),
    (CredentialsRefused, Outcomes.credentials_refused),
    (Uncertain, Outcomes.uncertain),
    (NotSent, Outcomes.not_sent),
    (ConfigError, Outcomes.misconfigured),
)
