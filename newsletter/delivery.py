"""The delivery state machine: claim a batch, mark it in flight, hand it to the provider,
record the answer. The delivery log in `store` is the truth, so a crash at any point leaves
every subscriber either pending (resend is safe), sent, or uncertain (held for the editor or
settled by the provider's events) -- never silently sent twice.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, timedelta, tzinfo

from newsletter.exceptions import (
    ConfigError,
    CredentialsRefused,
    LeaseLost,
    NewsletterError,
    NotSent,
    RateLimited,
    Rejected,
    SenderBusy,
    Stopped,
    StoreError,
    TooLarge,
    TransientError,
    Uncertain,
    Unreachable,
    WorkerStopping,
)
from newsletter.links import stored_issue
from newsletter.processes import process_gone
from newsletter.providers import OutgoingBatch, Provider, Settles
from newsletter.records import Batch, DeliveryState, IssueRecord, IssueStatus, utcnow
from newsletter.settings import Settings
from newsletter.store import Store

PENDING, IN_FLIGHT, SENT, FAILED, UNCERTAIN, SKIPPED = DeliveryState
ISSUE_SENDING, ISSUE_PAUSED = IssueStatus.SENDING, IssueStatus.PAUSED
ISSUE_SENT, ISSUE_CANCELLED = IssueStatus.SENT, IssueStatus.CANCELLED

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DeliveryPolicy:
    """How the sender treats batches, from [delivery] (whose schema holds the defaults:
    none here). Backoff in seconds."""

    batch_size: int
    max_retries: int
    max_failed_batches: int
    backoff_base: float
    backoff_cap: float
    resend_uncertain: bool
    concurrency: int
    claim_timeout: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        knobs = settings.delivery
        return cls(
            batch_size=knobs.batch_size,
            max_retries=knobs.max_retries,
            max_failed_batches=knobs.max_failed_batches,
            backoff_base=knobs.backoff_base.total_seconds(),
            backoff_cap=knobs.backoff_cap.total_seconds(),
            resend_uncertain=knobs.resend_uncertain,
            concurrency=knobs.concurrency,
            claim_timeout=knobs.claim_timeout,
        )


@dataclass
class SendReport:
    issue_id: int
    status: str
    counts: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    last_error: str | None = None
    delivered: int = 0  # recipients the provider accepted during this send
    stopped: bool = False  # a stop request (a signal) ended it: the rest stays pending

    @property
    def tried_in_vain(self) -> bool:
        """Batches went out during this send and not one recipient was accepted."""
        return self.batches > 0 and self.delivered == 0

    @property
    def ok(self) -> bool:
        return (
            self.status == ISSUE_SENT
            and not self.counts.get(FAILED)
            and not self.counts.get(UNCERTAIN)
        )


SENDER_LEASE = "sender"
# Who this process is in the delivery log and the lease table: host, pid and a random part.
PROCESS_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SendingLease:
    """Only one process sends at a time. The lease expires if its holder dies, so a standby
    (or the next `run`) takes over; in-flight rows are only recovered by the new holder."""

    def __init__(
        self, store: Store, ttl: timedelta, holder: str | None = None, *, zone: tzinfo = UTC
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.zone = zone  # the newsletter's: what the messages show times in
        self.holder = holder or PROCESS_ID
        self.held = False
        self._renewed = float("-inf")  # time.monotonic() of the last acquire or renewal

    def acquire(self) -> bool:
        self._renewed = time.monotonic()
        self.held = self.store.meta.acquire(SENDER_LEASE, self.holder, self.ttl)
        if not self.held:
            current = self.store.meta.holder(SENDER_LEASE)
            if current and _dead_local_process(current[0]):
                # Its holder was killed on this machine: no need to wait for the lease to expire.
                self.held = self.store.meta.take_over(
                    SENDER_LEASE, current[0], self.holder, self.ttl
                )
        return self.held

    def renew(self) -> None:
        """Called between batches. Renewing takes the database's write lock, so only once a
        tenth of the lease has passed: a stall long enough to lose the lease is longer than
        that, so it is still found out before the next batch."""
        now = time.monotonic()
        if self.held and now - self._renewed < self.ttl.total_seconds() / 10:
            return
        self._renewed = now
        if not self.store.meta.acquire(SENDER_LEASE, self.holder, self.ttl):
            self.held = False
            raise LeaseLost("the sending lease was lost (this process stalled); stopping")

    def release(self) -> None:
        if self.held:
            self.store.meta.release(SENDER_LEASE, self.holder)
            self.held = False

    def __enter__(self) -> SendingLease:
        if not self.acquire():
            current = self.store.meta.holder(SENDER_LEASE)
            until = current[1].astimezone(self.zone) if current else None
            who = f"{current[0]} (lease until {until:%H:%M:%S %Z})" if current else "another"
            raise SenderBusy(f"another sender is active: {who}; not sending from here")
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


class StopRequest(threading.Event):
    """Set by SIGINT or SIGTERM (see `stop_on_signals`); remembers which one came first."""

    signal_name: str | None = None


@contextmanager
def stop_on_signals(
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[StopRequest]:
    """While inside: SIGINT and SIGTERM set the yielded stop request instead of raising, so
    a send finishes the request in flight, records it and stops between batches (give it
    to `SendContext.stop`). The previous handlers come back on leaving. Main thread only."""
    stop = StopRequest()

    def handler(signum: int, _frame: object) -> None:
        if stop.signal_name is None:
            stop.signal_name = signal.Signals(signum).name
        stop.set()

    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _dead_local_process(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    return host == socket.gethostname() and pid.isdigit() and process_gone(int(pid))


def backoff_delay(attempt: int, policy: DeliveryPolicy) -> float:
    """Capped exponential backoff with full jitter."""
    return random.uniform(0, min(policy.backoff_cap, policy.backoff_base * 2**attempt))


def recover_in_flight(
    store: Store, issue_id: int, policy: DeliveryPolicy, provider: Provider | None = None
) -> int:
    """Batches left in flight by a sender that died become uncertain (or pending again when
    the list prefers a duplicate to a gap): at once when that sender was a process of this
    machine that no longer exists, otherwise once its claim is older than the claim timeout
    (a live sender never keeps a batch in flight longer than one request). A provider that
    can tell what it delivered (`Settles`) then settles every uncertain row of the issue."""
    moved = 0
    stale = utcnow() - policy.claim_timeout
    for worker, oldest in store.deliveries.in_flight_claims(issue_id):
        if worker == PROCESS_ID:
            continue  # our own threads' batches
        if worker is None or _dead_local_process(worker):
            moved += store.deliveries.in_flight_to_uncertain(issue_id, worker=worker)
        elif oldest < stale:
            moved += store.deliveries.in_flight_to_uncertain(
                issue_id, older_than=stale, worker=worker
            )
    if moved:
        log.warning(
            "issue %s: %d deliveries were in flight when their sender stopped: now uncertain",
            issue_id,
            moved,
        )
    if isinstance(provider, Settles):
        settle_with_provider(store, provider, issue_id)
    if policy.resend_uncertain:
        store.deliveries.settle(issue_id, UNCERTAIN, PENDING)
    return moved


def settle_with_provider(
    store: Store, provider: Settles, issue_id: int, subscriber_ids: list[int] | None = None
) -> tuple[int, int]:
    """Ask the provider which uncertain rows it delivered: those become sent, the others
    pending (it says they never went out). Returns (sent, pending)."""
    if subscriber_ids is None:
        subscriber_ids = [r.subscriber_id for r in store.deliveries.in_state(issue_id, UNCERTAIN)]
    if not subscriber_ids:
        return 0, 0
    delivered = provider.settle_uncertain(issue_id, subscriber_ids)
    sent = [sid for sid in subscriber_ids if delivered.get(sid)]
    unsent = [sid for sid in subscriber_ids if not delivered.get(sid)]
    moved_sent = store.deliveries.settle(issue_id, UNCERTAIN, SENT, sent) if sent else 0
    moved_back = store.deliveries.settle(issue_id, UNCERTAIN, PENDING, unsent) if unsent else 0
    log.warning(
        "issue %s: the provider settled %d uncertain deliveries: %d delivered, %d to send again",
        issue_id,
        moved_sent + moved_back,
        moved_sent,
        moved_back,
    )
    return moved_sent, moved_back


@dataclass(frozen=True)
class SendContext:
    """Everything a send needs, built once (by the CLI, a worker or the scheduler) and handed
    down: the database, the settings, the provider, the policy, and the hooks that tie a send
    to its process (progress bar, lease heartbeat or stop request, sleep and clock)."""

    store: Store
    settings: Settings
    provider: Provider
    policy: DeliveryPolicy
    categories: tuple[str, ...]
    progress: Callable[[int], None] | None = None
    heartbeat: Callable[[], None] | None = None  # between batches: renew a lease, or stop
    # Set (by a signal, see `stop_on_signals`): the request in flight is finished and
    # recorded, the rest stays pending and the issue resumable.
    stop: threading.Event | None = None
    worker: str = PROCESS_ID  # who claims, in the delivery log
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time  # unix time, to honour a provider's retry time

    @classmethod
    def of(
        cls,
        store: Store,
        settings: Settings,
        provider: Provider,
        *,
        policy: DeliveryPolicy | None = None,
        categories: tuple[str, ...] = (),
        progress: Callable[[int], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
        worker: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> SendContext:
        """The context with the settings' defaults for what is not given."""
        return cls(
            store=store,
            settings=settings,
            provider=provider,
            policy=policy or DeliveryPolicy.from_settings(settings),
            categories=categories or settings.sendgrid.categories,
            progress=progress,
            heartbeat=heartbeat,
            stop=stop,
            worker=worker or PROCESS_ID,
            sleep=sleep,
        )


def send_issue(ctx: SendContext, issue_id: int) -> SendReport:
    """Send every pending delivery of an issue, batch by batch, until none is left, the
    issue is paused or cancelled, or the provider refuses the credentials. With
    `policy.concurrency` > 1 several batches are in flight at once (each thread claims its own
    batch from the log), so the database and the network overlap."""
    store = ctx.store
    issue = store.issues.get_issue(issue_id)
    report = SendReport(issue_id, issue.status)
    recover_in_flight(store, issue_id, ctx.policy, ctx.provider)
    sender = _IssueSender(ctx, issue, report)
    threads = max(1, ctx.policy.concurrency)
    if threads == 1:
        sender.run()
    else:
        with ThreadPoolExecutor(threads, thread_name_prefix=f"issue-{issue_id}") as pool:
            for future in [pool.submit(sender.run) for _ in range(threads)]:
                future.result()  # re-raises a thread's StoreError, LeaseLost, ...
    if (message := sender.pause_message()) is not None and threads > 1:
        # Recount once every thread is done, so the pause names what is really left.
        store.issues.set_issue_status(
            issue_id, ISSUE_PAUSED, error=message, only_from=(ISSUE_PAUSED,)
        )
        report.last_error = message
    report.counts = store.deliveries.counts(issue_id)
    if report.status == ISSUE_SENDING:
        report.status = store.issues.issue_status(issue_id)
    if report.last_error is None:
        report.last_error = store.issues.get_issue(issue_id).last_error
    return report


class _IssueSender:
    """The per-batch loop of `send_issue`; each thread runs `run` on the same instance."""

    def __init__(self, ctx: SendContext, issue: IssueRecord, report: SendReport) -> None:
        self.ctx = ctx
        self.store, self.settings, self.provider = ctx.store, ctx.settings, ctx.provider
        self.policy, self.progress, self.heartbeat = ctx.policy, ctx.progress, ctx.heartbeat
        self.issue_id = issue.id
        self.rendered = stored_issue(ctx.settings, issue)
        self.report = report
        self.batch_size = max(1, min(ctx.policy.batch_size, ctx.provider.max_batch))
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.cursor = 0  # the highest subscriber id this send has claimed so far
        # The first request of a send goes out alone: the other threads claim nothing until
        # its answer, so a refused key costs one request rather than one per thread, and a
        # sender killed meanwhile leaves no batch in flight that never left.
        self.prober: int | None = None  # the thread sending the first request
        self.first_answer = threading.Event()
        self.paused_for: tuple[str, str] | None = None  # (reason, when to resume)

    def wait(self, seconds: float) -> None:
        # Keep the lease alive through long rate-limit waits.
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self.done.is_set():
            if self.stop_requested():
                return
            self.ctx.sleep(min(left, 5.0))
            if self.heartbeat:
                self.heartbeat()

    def finish(self, status: str, error: str | None = None) -> None:
        with self.lock:
            self.report.status = status
            if error:
                self.report.last_error = error
        self.done.set()

    def stop_requested(self) -> bool:
        return self.ctx.stop is not None and self.ctx.stop.is_set()

    def stopped(self) -> None:
        """A stop request between batches: leave the rest pending, the issue resumable."""
        with self.lock:
            self.report.stopped = True
        self.done.set()

    def note(
        self,
        error: str | None = None,
        recipients: int = 0,
        batch: bool = False,
        delivered: int = 0,
    ) -> None:
        with self.lock:
            if error:
                self.report.last_error = error
            if batch:
                self.report.batches += 1
            self.report.delivered += delivered
        if recipients and self.progress:
            with self.lock:
                self.progress(recipients)

    def before_request(self) -> None:
        """Right before a request is written (called by the provider): stop if the key was
        refused, or the issue paused or cancelled, after this batch was claimed."""
        if self.done.is_set():
            raise Stopped("the send was stopped before this request")
        try:
            status = self.store.issues.issue_status(self.issue_id)
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

    def run(self) -> None:
        try:
            self._run()
        except BaseException:
            self.done.set()
            raise
        finally:
            if self.prober == threading.get_ident():
                self.first_answer.set()  # it stopped without an answer: the others go on

    def _run(self) -> None:
        store, issue_id, policy = self.store, self.issue_id, self.policy
        consecutive_failures = 0
        while not self.done.is_set():
            if self.stop_requested():
                return self.stopped()
            if self.heartbeat:
                self.heartbeat()  # between batches: renews the lease, or stops a scheduler
            self.wait_for_probe()
            if self.done.is_set():
                return None
            status = store.issues.issue_status(issue_id)
            if status != ISSUE_SENDING:
                return self.finish(status)
            batch = store.deliveries.claim(
                issue_id, self.batch_size, worker=self.ctx.worker, after=self.cursor
            )
            if batch is None and self.cursor:
                # Rows released for a retry (or left by others) may sit below the cursor.
                self.cursor = 0
                batch = store.deliveries.claim(issue_id, self.batch_size, worker=self.ctx.worker)
            if batch is not None:
                with self.lock:
                    self.cursor = max(self.cursor, batch.last_id)
            if batch is None:
                # Sent only once no row is pending or in flight (one statement): otherwise
                # other threads (or processes) still have batches, or released one since.
                if store.issues.finish_sending(issue_id):
                    return self.finish(ISSUE_SENT)
                return None
            if not batch.recipients:
                continue
            self.note(batch=True)
            handed: list[bool] = []  # set once the provider passed its last check

            def ready(handed: list[bool] = handed) -> None:
                self.before_request()
                handed.append(True)

            try:
                outgoing = OutgoingBatch.of(
                    self.settings,
                    issue_id,
                    batch.number,
                    self.rendered,
                    batch.recipients,
                    categories=self.ctx.categories,
                    before_request=ready,
                )
                try:
                    accepted = self.provider.send(outgoing)
                except CredentialsRefused:
                    self.done.set()  # before the threads waiting for this answer go on
                    raise
                finally:
                    self.first_answer.set()
            except Stopped as exc:
                store.deliveries.release(batch)
                if isinstance(exc.__cause__, StoreError):
                    raise exc.__cause__ from None
                self.done.set()
                return None
            except Unreachable as exc:
                consecutive_failures += 1
                store.deliveries.release(batch, error=str(exc))
                if consecutive_failures > policy.max_retries:
                    return self._unreachable(exc)
                delay = backoff_delay(consecutive_failures, policy)
                log.warning(
                    "issue %s batch %s: %s; retrying in %.1fs", issue_id, batch.number, exc, delay
                )
                self.note(str(exc))
                self.wait(delay)
                continue
            except (RateLimited, TransientError) as exc:
                consecutive_failures += 1
                self.note(str(exc))
                if consecutive_failures > policy.max_retries:
                    store.deliveries.mark(batch, FAILED, str(exc), retryable=True)
                    consecutive_failures = 0
                    self._count_failed_batch(str(exc))
                    continue
                store.deliveries.release(batch, error=str(exc))
                delay = backoff_delay(consecutive_failures, policy)
                if isinstance(exc, RateLimited) and exc.retry_at is not None:
                    delay = max(0.0, exc.retry_at - self.ctx.clock()) + random.uniform(0, 0.25)
                log.warning(
                    "issue %s batch %s: %s; retrying in %.1fs", issue_id, batch.number, exc, delay
                )
                self.wait(delay)
                continue
            except TooLarge as exc:
                if len(batch.recipients) == 1:
                    store.deliveries.mark(batch, FAILED, str(exc), retryable=False)
                    continue
                store.deliveries.release(batch, error=str(exc))
                with self.lock:
                    self.batch_size = max(1, min(self.batch_size, len(batch.recipients) // 2))
                log.warning(
                    "issue %s: request too large; batches of %d now", issue_id, self.batch_size
                )
                continue
            except Rejected as exc:
                detail = "; ".join(exc.details) or str(exc)
                store.deliveries.mark(batch, FAILED, detail, retryable=False)
                error = f"{exc}: {detail}" if exc.details else str(exc)
                self.note(error)
                self._count_failed_batch(error)
                continue
            except CredentialsRefused as exc:
                store.deliveries.release(batch, error=str(exc))
                store.issues.set_issue_status(issue_id, ISSUE_PAUSED, error=str(exc))
                return self.finish(ISSUE_PAUSED, str(exc))
            except Uncertain as exc:
                store.deliveries.mark(batch, UNCERTAIN, str(exc))
                self.note(str(exc), recipients=len(batch.recipients))
                continue
            except NotSent as exc:
                # Never written (the request could not be built): safe to send again later.
                store.deliveries.release(batch, error=str(exc))
                self.note(str(exc))
                log.warning("issue %s batch %s: %s", issue_id, batch.number, exc)
                self._count_failed_batch(str(exc))
                continue
            except ConfigError:
                store.deliveries.release(batch)  # a setting is wrong: nothing was written
                raise
            except (LeaseLost, WorkerStopping, StoreError):
                raise
            except Exception as exc:  # a bug or an encoding error inside the provider
                self._unexpected(batch, exc, written=bool(handed))
                continue
            consecutive_failures = 0
            store.deliveries.fail(batch, accepted.rejected)
            store.deliveries.mark_sent(batch, accepted.message_ids)
            self.note(
                recipients=len(batch.recipients),
                delivered=len(batch.recipients) - len(accepted.rejected),
            )
        return None

    def _left(self) -> int:
        counts = self.store.deliveries.counts(self.issue_id)
        return counts[PENDING] + counts[IN_FLIGHT]

    def pause_message(self) -> str | None:
        """What the pause says, counted now: other threads' batches in flight when the pause
        began have been recorded once `send_issue` has joined them."""
        if self.paused_for is None:
            return None
        reason, when = self.paused_for
        return (
            f"{reason}; {self._left()} readers still to send; "
            f"`newsletter resume {self.issue_id}` when {when}"
        )

    def _pause(self, reason: str, when: str = "the cause is fixed") -> None:
        """Pause the issue with `reason` as its error (what `status`, the CLI's report and the
        editors' alert show); `resume` goes on once the cause is fixed."""
        with self.lock:
            self.paused_for = (reason, when)
        message = self.pause_message() or reason
        log.warning("issue %s: %s", self.issue_id, message)
        self.store.issues.set_issue_status(
            self.issue_id, ISSUE_PAUSED, error=message, only_from=(ISSUE_SENDING,)
        )
        self.finish(ISSUE_PAUSED, message)

    def _unreachable(self, exc: Unreachable) -> None:
        """No connection after the retries: not a refusal. The rows stay pending and the
        issue is paused until the provider is back."""
        self._pause(str(exc), when="it is back")

    def _unexpected(self, batch: Batch, exc: Exception, *, written: bool) -> None:
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
            self.store.deliveries.release(batch, error=error)
            self.note(error)
            self._pause(f"paused: {error}")
            return
        settled, done = False, len(batch.recipients)
        if isinstance(self.provider, Settles):
            ids = [r.subscriber_id for r in batch.recipients]
            try:
                delivered = self.provider.settle_uncertain(self.issue_id, ids)
            except Exception:  # cannot tell after all
                log.debug("settling after the unexpected error failed", exc_info=True)
            else:
                sent = {sid: "" for sid in ids if delivered.get(sid)}
                if sent:
                    self.store.deliveries.mark_sent(batch, sent)
                self.store.deliveries.release(batch, error=error)
                settled, done = True, len(sent)
        if not settled:
            self.store.deliveries.mark(
                batch, UNCERTAIN, f"{error}: it may or may not have gone out"
            )
        self.note(error, recipients=done, delivered=done if settled else 0)
        self._pause(f"paused: {error}")

    def _count_failed_batch(self, error: str) -> None:
        failed = self.store.issues.record_failed_batch(self.issue_id, error)
        if failed >= self.policy.max_failed_batches:
            message = f"paused after {failed} failed batches; last error: {error}"
            self.store.issues.set_issue_status(self.issue_id, ISSUE_PAUSED, error=message)
            self.finish(ISSUE_PAUSED, message)


# Which editor actions are allowed from which issue status.
_TRANSITIONS: dict[str, tuple[str, ...]] = {
    ISSUE_PAUSED: (ISSUE_SENDING,),
    ISSUE_SENDING: (ISSUE_PAUSED,),
    ISSUE_CANCELLED: (ISSUE_SENDING, ISSUE_PAUSED),
}


def change_issue_status(store: Store, issue_id: int, status: str) -> None:
    """Pause, resume or cancel an issue; takes effect between batches."""
    current = store.issues.issue_status(issue_id)
    if not store.issues.set_issue_status(issue_id, status, only_from=_TRANSITIONS[status]):
        raise NewsletterError(f"issue {issue_id} is {current}: cannot make it {status}")


def resume_issue(
    ctx: SendContext,
    issue_id: int,
    *,
    progress_factory: Callable[[int, int], Callable[[int], None]] | None = None,
) -> SendReport | None:
    """Let a paused issue (or one a stop or a crash interrupted) go on, and send the rest
    now under the sending lease. None when another sender holds the lease: it sends the
    rest between its batches."""
    if ctx.store.issues.issue_status(issue_id) != ISSUE_SENDING:
        change_issue_status(ctx.store, issue_id, ISSUE_SENDING)
    lease = SendingLease(ctx.store, ctx.settings.schedule.lease, zone=ctx.settings.timezone)
    if not lease.acquire():
        return None
    try:
        if progress_factory is not None:
            counts = ctx.store.deliveries.counts(issue_id)
            progress = progress_factory(issue_id, counts[PENDING] + counts[IN_FLIGHT])
            ctx = dataclasses.replace(ctx, progress=progress)
        return send_issue(
            dataclasses.replace(ctx, heartbeat=ctx.heartbeat or lease.renew), issue_id
        )
    finally:
        lease.release()


def resolve_uncertain(
    store: Store, issue_id: int, resend: bool, subscriber_ids: list[int] | None = None
) -> int:
    """The editor's decision on uncertain deliveries (all, or those of `subscriber_ids`):
    resend them, or count them as sent."""
    store.issues.get_issue(issue_id)
    moved = store.deliveries.settle(
        issue_id, UNCERTAIN, PENDING if resend else SENT, subscriber_ids
    )
    if resend and moved:
        store.issues.set_issue_status(issue_id, ISSUE_SENDING)
    return moved


@dataclass
class WorkerReport:
    batches: int = 0
    issues: set[int] = field(default_factory=set)


def run_worker(
    ctx: SendContext,
    *,
    stop: threading.Event,
    once: bool = False,
    poll_seconds: float = 1.0,
    echo: Callable[[str], None] = print,
) -> WorkerReport:
    """Share the sending of every issue in progress with any other workers on this database:
    each claims its own batches atomically, so no two send to the same subscriber. With
    `once`, stop when nothing is left to claim; otherwise poll until `stop` is set."""
    report = WorkerReport()

    def heartbeat() -> None:
        if stop.is_set():
            raise WorkerStopping("stopping between batches")

    ctx = dataclasses.replace(ctx, heartbeat=heartbeat)
    while not stop.is_set():
        worked = False
        for issue_id in ctx.store.issues.unfinished_issues():
            result = send_issue(ctx, issue_id)
            if result.batches:
                worked = True
                report.batches += result.batches
                report.issues.add(issue_id)
                echo(
                    f"issue {issue_id}: {result.batches} batches sent from here; "
                    f"now {result.status}"
                )
        if once and not worked:
            break
        if not worked:
            stop.wait(poll_seconds)
    return report
