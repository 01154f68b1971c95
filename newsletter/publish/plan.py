"""`run --dry-run`: what `run` would do now, worked out the way `run` does it (the same pick,
the same check, the same holding of the articles to blame) without sending, building an issue
or using up anything. Like `queue list`, it queues article files dropped into issues/ by hand."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from newsletter import segments
from newsletter.alerts import HeldArticle
from newsletter.check import ERROR
from newsletter.check.findings import format_findings
from newsletter.delivery.log import StoreLog
from newsletter.delivery.pace import Pace
from newsletter.delivery.policy import DeliveryPolicy
from newsletter.exceptions import CheckFailed
from newsletter.publish.build import check_picked, culprits, due, warnings_of
from newsletter.publish.queue import chosen_layout, sync_queue
from newsletter.records import DeliveryState, IssueStatus, utcnow
from newsletter.settings import Settings
from newsletter.store import Store


@dataclass(frozen=True, kw_only=True)
class PlannedArticle:
    filename: str
    title: str


@dataclass(frozen=True, kw_only=True)
class Unfinished:
    """An issue already sending that `run` goes on with first, and what, if anything, it
    waits for: then `run` sends none of it now. Only one of the two waits is named, the
    one that holds it back now (a reader-time wave before a cap's window)."""

    issue_id: int
    left: int  # recipients still pending or in flight
    next_wave: datetime | None = None  # reader time: nothing is due before this wave
    paced_until: datetime | None = None  # a [sending] cap allows no more before this
    held_by: str = ""  # which cap (pacing's words: "hourly cap", ...)

    @property
    def waiting(self) -> bool:
        return self.next_wave is not None or self.paced_until is not None


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """Under `[issue] approval = "required"`: the issue prepared for a slot, which `run`
    sends if approved and refuses on if still awaiting approval."""

    issue_id: int
    subject: str
    approved: bool
    scheduled_for: datetime | None


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """What `run` would do. `subject` is None when it would build no issue."""

    resume: list[Unfinished]  # issues already sending it goes on with first
    skipped: list[str]  # unreadable articles it passes over, with their errors
    held: list[HeldArticle]  # articles whose check it would hold
    recipients: int  # the active subscribers a new issue goes to
    subject: str | None
    layout: str | None
    articles: list[PlannedArticle]
    warnings: list[str]  # the check's warnings, one line each
    prepared: Prepared | None = None  # approval required: the issue prepared, if any
    # approval required and nothing prepared: the issue `run` would build waits for approval
    needs_approval: bool = False

    @property
    def refused(self) -> bool:
        """It would build an issue but nobody is active to get it: the real run refuses
        (`NO_ACTIVE_SUBSCRIBER`) and the dry run says so the same way."""
        return self.subject is not None and not self.recipients


def plan_run(
    store: Store,
    settings: Settings,
    now: datetime | None = None,
    *,
    force: bool = False,
    layout: str | None = None,
) -> RunPlan:
    """What `run` (with `force` and `layout`, as `run --force --layout`) would do now."""
    now = now or utcnow()
    resume = [
        _unfinished(store, settings, issue_id, now) for issue_id in store.issues.unfinished_issues()
    ]
    prepared = _prepared(store) if settings.approval.required else None
    if prepared is not None:
        # `run` takes the prepared issue (sends it once approved, refuses otherwise) and
        # builds nothing new.
        return RunPlan(
            resume=resume,
            skipped=[],
            held=[],
            recipients=segments.count(store, settings.segment),
            subject=None,
            layout=None,
            articles=[],
            warnings=[],
            prepared=prepared,
        )
    sync_queue(store, settings)
    chosen = chosen_layout(store)
    held: list[HeldArticle] = []
    picked, unreadable = due(store, settings, now, held=force)
    skipped = dict(unreadable)
    while picked:
        checked, _ = check_picked(store, settings, picked, layout=layout or chosen)
        errors = [f for f in checked.findings if f.severity == ERROR]
        if force or not errors:
            return RunPlan(
                resume=resume,
                skipped=list(skipped.values()),
                held=held,
                recipients=segments.count(store, settings.segment),
                subject=checked.rendered.subject,
                layout=checked.layout,
                articles=[
                    PlannedArticle(filename=p.article.path.name, title=p.article.title)
                    for p in picked
                ],
                warnings=warnings_of(checked.findings),
                needs_approval=settings.approval.required,
            )
        failure = CheckFailed("", format_findings(errors))
        for p, why in culprits(settings, picked, failure):
            held.append(
                HeldArticle(
                    article_id=p.article_id,
                    filename=p.article.path.name,
                    title=p.article.title,
                    reason=why,
                )
            )
        picked, more = due(store, settings, now, leave_out={h.article_id for h in held})
        skipped.update(more)
    return RunPlan(
        resume=resume,
        skipped=list(skipped.values()),
        held=held,
        recipients=segments.count(store, settings.segment),
        subject=None,
        layout=None,
        articles=[],
        warnings=[],
    )


class _ReadOnlyPace:
    """The pace's log for a dry run: it reads the counts and starts no warm-up."""

    def __init__(self, log: StoreLog) -> None:
        self._log = log

    def sent_since(self, since: datetime) -> int:
        return self._log.sent_since(since)

    def in_flight_count(self) -> int:
        return self._log.in_flight_count()

    def warmup_start(self) -> date | None:
        return self._log.warmup_start()

    def start_warmup(self, day: date) -> None:
        """A dry run uses nothing up: day 1 of the plan is the first real send's."""


def _unfinished(store: Store, settings: Settings, issue_id: int, now: datetime) -> Unfinished:
    """An issue already sending, and what it waits for now (the send loop's own checks: the
    next wave when none is due, the caps' allowance before a claim)."""
    counts = store.deliveries.counts(issue_id)
    left = counts[DeliveryState.PENDING] + counts[DeliveryState.IN_FLIGHT]
    wave = store.deliveries.waiting_until(issue_id, now)
    if wave is not None:
        return Unfinished(issue_id=issue_id, left=left, next_wave=wave)
    policy = DeliveryPolicy.from_settings(settings)
    if policy.pace.limited and left:
        log = _ReadOnlyPace(StoreLog(store, settings))
        allowance = Pace(log, policy, now.timestamp).allowance()
        if allowance.now == 0 and allowance.next_window is not None:
            return Unfinished(
                issue_id=issue_id,
                left=left,
                paced_until=allowance.next_window,
                held_by=allowance.held_by,
            )
    return Unfinished(issue_id=issue_id, left=left)


def _prepared(store: Store) -> Prepared | None:
    prepared = store.issues.prepared_issues()
    if not prepared:
        return None
    issue = prepared[0]
    return Prepared(
        issue_id=issue.id,
        subject=issue.subject,
        approved=issue.status == IssueStatus.APPROVED,
        scheduled_for=issue.scheduled_for,
    )
