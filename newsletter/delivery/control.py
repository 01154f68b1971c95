"""What editors and workers do to a send: pause, resume (and send the rest now), cancel,
decide on uncertain rows, and the worker loop that shares the sending of every issue."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from newsletter.delivery.context import SendContext
from newsletter.delivery.lease import SendingLease
from newsletter.delivery.log import IssueStatuses
from newsletter.delivery.policy import SendReport
from newsletter.delivery.sender import send_issue
from newsletter.exceptions import NewsletterError, WorkerStopping
from newsletter.records import DeliveryState, IssueStatus
from newsletter.store import Store

ISSUE_SENDING, ISSUE_PAUSED = IssueStatus.SENDING, IssueStatus.PAUSED
ISSUE_CANCELLED = IssueStatus.CANCELLED

# Which editor actions are allowed from which issue status.
_TRANSITIONS: dict[str, tuple[str, ...]] = {
    ISSUE_PAUSED: (ISSUE_SENDING,),
    ISSUE_SENDING: (ISSUE_PAUSED,),
    ISSUE_CANCELLED: (ISSUE_SENDING, ISSUE_PAUSED),
}


def _transition(issues: IssueStatuses, issue_id: int, status: str) -> None:
    current = issues.issue_status(issue_id)
    if not issues.set_issue_status(issue_id, status, only_from=_TRANSITIONS[status]):
        raise NewsletterError(f"issue {issue_id} is {current}: cannot make it {status}")


def change_issue_status(store: Store, issue_id: int, status: str) -> None:
    """Pause, resume or cancel an issue; takes effect between batches."""
    _transition(store.issues, issue_id, status)


def resume_issue(ctx: SendContext, issue_id: int, *, lease: SendingLease) -> SendReport | None:
    """Let a paused issue (or one a stop or a crash interrupted) go on, and send the rest
    now under the sending `lease`. None when another sender holds the lease: it sends the
    rest between its batches."""
    if ctx.log.issue_status(issue_id) != ISSUE_SENDING:
        _transition(ctx.log, issue_id, ISSUE_SENDING)
    if not lease.acquire():
        return None
    try:
        return send_issue(ctx.under(lease), issue_id)
    finally:
        lease.release()


def resolve_uncertain(
    store: Store, issue_id: int, resend: bool, subscriber_ids: list[int] | None = None
) -> int:
    """The editor's decision on uncertain deliveries (all, or those of `subscriber_ids`):
    resend them, or count them as sent."""
    store.issues.get_issue(issue_id)
    moved = store.deliveries.settle(
        issue_id,
        DeliveryState.UNCERTAIN,
        DeliveryState.PENDING if resend else DeliveryState.SENT,
        subscriber_ids,
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
    wait: Callable[[float], object] | None = None,
) -> WorkerReport:
    """Share the sending of every issue in progress with any other workers on this database:
    each claims its own batches atomically, so no two send to the same subscriber. With
    `once`, stop when nothing is left to claim (an issue held by a cap of [sending] is
    waited for); otherwise poll until `stop` is set. `wait(seconds)` is `stop.wait` unless a
    test gives its own clock's."""
    report = WorkerReport()
    wait = wait or stop.wait

    def heartbeat() -> None:
        if stop.is_set():
            raise WorkerStopping("stopping between batches")

    ctx = ctx.beating(heartbeat)
    while not stop.is_set():
        worked = False
        paced: list[datetime] = []
        now = datetime.fromtimestamp(ctx.hooks.clock(), UTC)
        for issue_id in ctx.log.unfinished_issues():
            if ctx.log.waiting_until(issue_id, now) is not None:
                continue  # reader time: its next wave has not come
            result = send_issue(ctx, issue_id)
            if result.paced_until is not None:
                paced.append(result.paced_until)
            if result.batches:
                worked = True
                report.batches += result.batches
                report.issues.add(issue_id)
                echo(
                    f"issue {issue_id}: {result.batches} batches sent from here; "
                    f"now {result.status}"
                )
        if once and not worked and not paced:
            break
        if paced and not worked:
            # Every issue left waits for a cap's next window: sleep until the first opens
            # (not a poll a second: the counts would say the same until then).
            opens = min(paced).timestamp() - ctx.hooks.clock()
            echo(f"paced: waiting until {min(paced).astimezone(ctx.policy.zone):%H:%M}")
            wait(max(opens, poll_seconds))
        elif not worked:
            wait(poll_seconds)
    return report
