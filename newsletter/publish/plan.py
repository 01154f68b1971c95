"""`run --dry-run`: what `run` would do now, worked out the way `run` does it (the same pick,
the same check, the same holding of the articles to blame) without sending, building an issue
or using up anything. Like `queue list`, it queues article files dropped into issues/ by hand."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from newsletter import segments
from newsletter.alerts import HeldArticle
from newsletter.check import ERROR
from newsletter.check.findings import format_findings
from newsletter.exceptions import CheckFailed
from newsletter.publish.build import check_picked, culprits, due, warnings_of
from newsletter.publish.queue import chosen_layout, sync_queue
from newsletter.records import DeliveryState, utcnow
from newsletter.settings import Settings
from newsletter.store import Store


@dataclass(frozen=True, kw_only=True)
class PlannedArticle:
    filename: str
    title: str


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """What `run` would do. `subject` is None when it would build no issue."""

    resume: list[tuple[int, int]]  # interrupted issues it finishes first: (id, rows left)
    skipped: list[str]  # unreadable articles it passes over, with their errors
    held: list[HeldArticle]  # articles whose check it would hold
    recipients: int  # the active subscribers a new issue goes to
    subject: str | None
    layout: str | None
    articles: list[PlannedArticle]
    warnings: list[str]  # the check's warnings, one line each

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
    resume = []
    for issue_id in store.issues.unfinished_issues():
        counts = store.deliveries.counts(issue_id)
        resume.append((issue_id, counts[DeliveryState.PENDING] + counts[DeliveryState.IN_FLIGHT]))
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
