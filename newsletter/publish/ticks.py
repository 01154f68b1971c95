"""Ticks: what one due tick does under the sending lease (finish interrupted issues, pick,
build, send), what the scheduler does at each wake-up, and the tick state it keeps in `meta`
(the last tick served, a tick missed by more than the grace period, waiting for the editor)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Unpack

from newsletter import alerts, segments
from newsletter.alerts import HeldArticle
from newsletter.approval import awaiting_notice
from newsletter.delivery import (
    SendContext,
    SendingLease,
    SendOptions,
    SendReport,
    send_issue,
)
from newsletter.exceptions import AwaitingApproval, CheckFailed, NoActiveSubscriber
from newsletter.providers import Provider
from newsletter.publish.build import (
    SEGMENT_SETTING,
    Picked,
    build_checked,
    culprits,
    pick,
)
from newsletter.publish.calendar import latest_tick, next_ticks
from newsletter.publish.queue import chosen_layout
from newsletter.records import IssueStatus, utcnow
from newsletter.settings import Settings
from newsletter.store import Store
from newsletter.store.meta import LAST_TICK, MISSED_TICK, SCHEDULER_STARTED

log = logging.getLogger(__name__)

NO_ACTIVE_SUBSCRIBER = (
    "no active subscriber: nothing was sent and the article stays queued; "
    "add readers with `newsletter subscribers import FILE`"
)


def no_audience(store: Store, settings: Settings) -> str | None:
    """Why an issue made now would go to nobody (no active subscriber, or an `[issue]
    segment` that matches none of them), or None: what `run`, its dry run and a tick refuse
    with before making an issue."""
    if not store.subscribers.count():
        return NO_ACTIVE_SUBSCRIBER
    if settings.segment and not segments.count(store, settings.segment):
        return (
            f"{SEGMENT_SETTING} {settings.segment!r} matches no active subscriber: nothing was "
            "sent and the article stays queued (`newsletter segment count` shows who matches)"
        )
    return None


@dataclass(frozen=True, kw_only=True)
class TickContext:
    """What a tick needs: the database and the settings to pick and build an issue, and
    the send context (hooks set once, here) to send it."""

    store: Store
    settings: Settings
    send: SendContext

    @classmethod
    def of(
        cls, store: Store, settings: Settings, provider: Provider, **options: Unpack[SendOptions]
    ) -> TickContext:
        send = SendContext.of(store, settings, provider, **options)
        return cls(store=store, settings=settings, send=send)

    @property
    def provider(self) -> Provider:
        return self.send.provider


@dataclass(kw_only=True)
class TickResult:
    issue_id: int | None = None
    articles: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    report: SendReport | None = None
    resumed: list[SendReport] = field(default_factory=list)
    tick: datetime | None = None
    held_articles: list[HeldArticle] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # the issue's check, one line each
    awaiting: int | None = None  # the issue prepared for this tick waits for its approval


def missed_tick(store: Store) -> datetime | None:
    """A tick missed by more than the grace period, waiting for the editor."""
    return store.meta.moment(MISSED_TICK)


def _served(store: Store, tick: datetime) -> bool:
    served = store.meta.moment(LAST_TICK)
    return served is not None and served >= tick


def publish_tick(
    ctx: TickContext,
    now: datetime | None = None,
    *,
    scheduled_for: datetime | None = None,
    lease: SendingLease | None = None,
    force: bool = False,
    layout: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> TickResult:
    """What one due tick does, under the sending lease: finish any issue a crash
    interrupted, then pick the next articles, build one issue and send it. A tick already
    served (same `scheduled_for`) builds nothing new, so a repeated wake-up never sends an
    issue twice. The issue's layout is `layout` (`run --layout`), else the one the editors
    chose for the next issue in the workspace, else automatic; creating the issue consumes
    the editors' choice either way. The issue check's warnings go to `warn` (default: the
    log), one line each, before the issue is sent. With no active subscriber no issue is
    built: `NoActiveSubscriber`, and the articles stay queued."""
    with ExitStack() as stack:
        if lease is None:
            lease = stack.enter_context(SendingLease.of(ctx.store, ctx.settings))
        result = _tick(
            ctx,
            ctx.send.under(lease),
            now or utcnow(),
            scheduled_for=scheduled_for,
            force=force,
            layout=layout,
            warn=warn or log.warning,
        )
    return result


def _tick(
    ctx: TickContext,
    send: SendContext,
    now: datetime,
    *,
    scheduled_for: datetime | None,
    force: bool,
    layout: str | None,
    warn: Callable[[str], None],
) -> TickResult:
    """`publish_tick`'s work, once the lease is held."""
    store, settings = ctx.store, ctx.settings
    resumed = [send_issue(send, issue_id) for issue_id in store.issues.unfinished_issues()]
    result = TickResult(resumed=resumed, tick=scheduled_for)
    if scheduled_for is not None and _served(store, scheduled_for):
        return result
    if send.hooks.stop_requested():
        return result  # stopped while finishing an interrupted issue: build nothing new
    if settings.approval.required:
        return _approval_tick(
            ctx, send, now, result, scheduled_for=scheduled_for, force=force, layout=layout,
            warn=warn,
        )  # fmt: skip
    _build(ctx, now, result, scheduled_for=scheduled_for, force=force, layout=layout)
    _mark_served(store, scheduled_for)
    if result.issue_id is None:
        return result
    for line in result.warnings:
        warn(line)
    result.report = send_issue(send, result.issue_id)
    return result


def _build(
    ctx: TickContext,
    now: datetime,
    result: TickResult,
    *,
    scheduled_for: datetime | None,
    force: bool,
    layout: str | None,
    awaiting_approval: bool = False,
) -> None:
    """Pick the due articles and build one issue of them into `result`, holding those
    whose check fails and going on with the next ones."""
    store, settings = ctx.store, ctx.settings
    picked, errors = pick(store, settings, now, held=force)
    result.errors.extend(errors)
    nobody = no_audience(store, settings) if picked else None
    if nobody is not None:
        _mark_served(store, scheduled_for)  # told once per tick, not at every wake-up
        raise NoActiveSubscriber(nobody)
    chosen = chosen_layout(store) if picked else None
    while picked:
        try:
            built = build_checked(
                store,
                settings,
                picked,
                scheduled_for,
                force=force,
                layout=layout or chosen,
                layout_choice=chosen,
                awaiting_approval=awaiting_approval,
                now=now,  # reader time: the waves come after the tick's own time
            )
        except CheckFailed as failure:  # hold the culprits, go on with the next ones
            newly = [_hold(ctx, p, why) for p, why in culprits(settings, picked, failure)]
            if not any(newly):
                raise
            result.held_articles.extend(h for h in newly if h is not None)
            picked, more = pick(store, settings, now)
            result.errors.extend(more)
            continue
        result.issue_id, result.warnings = built.issue_id, built.warnings
        result.articles = [p.article.title for p in picked]
        break


def _approval_tick(
    ctx: TickContext,
    send: SendContext,
    now: datetime,
    result: TickResult,
    *,
    scheduled_for: datetime | None,
    force: bool,
    layout: str | None,
    warn: Callable[[str], None],
) -> TickResult:
    """A tick under `[issue] approval = "required"`: the issue prepared for it goes out only
    once approved. None prepared yet: it is prepared now and waits. By hand (`run`), an
    unapproved issue refuses with the command that approves it."""
    store = ctx.store
    prepared = store.issues.prepared_issues()
    if prepared and prepared[0].status == IssueStatus.APPROVED:
        issue = prepared[0]
        store.issues.start_approved(issue.id, _audience(ctx), ctx.settings.deliver_at)
        _mark_served(store, scheduled_for)
        result.issue_id = issue.id
        result.articles = [a.title for a in store.articles.issue_articles(issue.id)]
        result.report = send_issue(send, issue.id)
        return result
    if prepared:
        result.awaiting = prepared[0].id
    else:
        _build(
            ctx,
            now,
            result,
            scheduled_for=scheduled_for,
            force=force,
            layout=layout,
            awaiting_approval=True,
        )
        for line in result.warnings:
            warn(line)
        result.awaiting, result.issue_id = result.issue_id, None
    _mark_served(store, scheduled_for)
    if result.awaiting is None:
        return result
    if scheduled_for is None:
        raise AwaitingApproval(awaiting_notice(result.awaiting), result.awaiting)
    log.warning("%s", awaiting_notice(result.awaiting))
    return result


def prepare_next(ctx: TickContext, now: datetime) -> int | None:
    """Under `[issue] approval = "required"`, build the issue of the next tick ahead of it,
    so the editors have until its slot to approve it. Nothing when one is already prepared
    (or nothing is due by then). Returns the issue prepared."""
    store, settings = ctx.store, ctx.settings
    if not settings.approval.required or store.issues.prepared_issues():
        return None
    coming = next_ticks(settings, now, 1)
    if not coming or not store.subscribers.count():
        return None
    result = TickResult(tick=coming[0])
    _build(ctx, coming[0], result, scheduled_for=coming[0], force=False, layout=None,
           awaiting_approval=True)  # fmt: skip
    if result.issue_id is not None:
        log.warning("%s", awaiting_notice(result.issue_id))
    return result.issue_id


def _approved_due(ctx: TickContext, send: SendContext, now: datetime) -> list[SendReport]:
    """Approved issues whose slot has come (an approval after the slot sends at once)."""
    reports = []
    for issue in ctx.store.issues.prepared_issues():
        due = issue.scheduled_for is None or issue.scheduled_for <= now
        if (
            issue.status == IssueStatus.APPROVED
            and due
            and ctx.store.issues.start_approved(
                issue.id, _audience(ctx), ctx.settings.deliver_at, now
            )
        ):
            reports.append(send_issue(send, issue.id))
    return reports


def _mark_served(store: Store, scheduled_for: datetime | None) -> None:
    if scheduled_for is not None:
        store.meta.set_moment(LAST_TICK, scheduled_for)
    else:  # the editor sent by hand: no tick is missed any more
        store.meta.set_moment(MISSED_TICK, None)


def _hold(ctx: TickContext, picked: Picked, reason: str) -> HeldArticle | None:
    held = HeldArticle(
        article_id=picked.article_id,
        filename=picked.article.path.name,
        title=picked.article.title,
        reason=reason,
    )
    return held if alerts.hold_article(ctx.store, ctx.settings, ctx.provider, held) else None


def scheduled_work(
    ctx: TickContext,
    lease: SendingLease,
    now: datetime | None = None,
    resume_after: datetime | None = None,
) -> TickResult | None:
    """What the scheduler does at each wake-up while it holds the lease: serve the latest
    cadence tick once. Missed by at most the grace period (the scheduler was down), it still
    goes out; missed by more, it waits for the editor (`missed_tick`, an alert) instead of surprising anyone days
    later. Interrupted issues are finished either way, but not before `resume_after` (the
    next window of a cap of [sending] that stopped them: nothing could go out before it)."""
    store, settings = ctx.store, ctx.settings
    now = now or utcnow()
    started = store.meta.moment(SCHEDULER_STARTED)
    if started is None:
        store.meta.set_moment(SCHEDULER_STARTED, now)
        started = now
    tick = latest_tick(settings, now)
    if tick is not None and not _served(store, tick) and now - tick > settings.schedule.grace:
        store.meta.set_moment(LAST_TICK, tick)
        if tick > started:
            store.meta.set_moment(MISSED_TICK, tick)
            log.warning(
                "the issue due at %s was missed by more than %s (the scheduler was not "
                "running): holding it; run 'newsletter run' to send it now",
                tick,
                settings.schedule.grace,
            )
        # else: due before any scheduler served this newsletter; nothing was missed.
        tick = None
    if tick is None or _served(store, tick):
        send = ctx.send.under(lease)
        waiting = resume_after is not None and now < resume_after
        resumed = [
            send_issue(send, issue_id)
            for issue_id in ([] if waiting else store.issues.unfinished_issues())
            # reader time: an issue whose next wave has not come is left until then
            if store.deliveries.waiting_until(issue_id, now) is None
        ]
        if settings.approval.required:
            resumed += _approved_due(ctx, send, now)
            prepare_next(ctx, now)
        return TickResult(resumed=resumed) if resumed else None
    return publish_tick(ctx, now, scheduled_for=tick, lease=lease)


def _audience(ctx: TickContext) -> str:
    """The `[issue] segment`, checked, as planned when the approved issue starts (its value
    when it goes out, like an issue built at its tick)."""
    return segments.audience(ctx.store, ctx.settings.segment, setting=SEGMENT_SETTING)
