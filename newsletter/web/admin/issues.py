"""Issues: their states, live delivery counts, pause/resume/cancel, the uncertain
recipients and the engagement chart. The actions are `delivery`'s functions, as in the CLI."""

from __future__ import annotations

import time

from starlette.responses import Response

from newsletter import delivery
from newsletter.exceptions import NewsletterError
from newsletter.records import DeliveryState, IssueStatus
from newsletter.web.admin.approval import approval_context
from newsletter.web.admin.base import MAX_ID, Ctx, json_response
from newsletter.web.admin.chart import cumulative_chart

ISSUE_PAUSED, ISSUE_SENDING, ISSUE_CANCELLED = (
    IssueStatus.PAUSED,
    IssueStatus.SENDING,
    IssueStatus.CANCELLED,
)
SENT = DeliveryState.SENT
DELIVERY_STATES = tuple(DeliveryState)
ACTIONS = {"pause": ISSUE_PAUSED, "resume": ISSUE_SENDING, "cancel": ISSUE_CANCELLED}
UNCERTAIN_SHOWN = 100
TOTAL_TTL = 300.0


def _issue_id(ctx: Ctx) -> int:
    return int(ctx.request.path_params["issue_id"])


def delivery_counts(ctx: Ctx, issue_id: int, status: str) -> dict[str, int]:
    """Counts by delivery state. While an issue sends, all of them, fresh. Once it is done
    only uncertain (resolved by editors and events), failed and skipped rows still move, and
    `sent` is the rest of the plan: the plan's size is remembered for a few minutes, so a
    finished issue of a million rows does not cost a million-row count per page."""
    if status == ISSUE_SENDING:
        return ctx.store.deliveries.counts(issue_id)
    now = time.monotonic()
    cached = ctx.admin.totals.get(issue_id)
    if cached is None or now - cached[1] > TOTAL_TTL:
        cached = (ctx.store.deliveries.total(issue_id), now)
        ctx.admin.totals[issue_id] = cached
    others = [s for s in DELIVERY_STATES if s != SENT]
    counts = ctx.store.deliveries.counts_in_states(issue_id, others)
    counts[SENT] = max(0, cached[0] - sum(counts.values()))
    return {state: counts[state] for state in DELIVERY_STATES}


def issues_page(ctx: Ctx) -> Response:
    return ctx.page("admin/issues.html", issues=ctx.store.issues.list_issues())


def issue_page(ctx: Ctx) -> Response:
    issue_id = _issue_id(ctx)
    issue = ctx.store.issues.get_issue(issue_id)
    counts = delivery_counts(ctx, issue_id, issue.status)
    chart = cumulative_chart(ctx.store.engagement.series(issue_id), ctx.zone)
    waves = ctx.store.deliveries.waves(issue_id)  # reader time; [] when sent at once
    return ctx.page(
        "admin/issue.html",
        issue=issue,
        counts=counts,
        states=DELIVERY_STATES,
        total=sum(counts.values()),
        uncertain=ctx.store.deliveries.in_state(issue_id, DeliveryState.UNCERTAIN, UNCERTAIN_SHOWN),
        uncertain_shown=UNCERTAIN_SHOWN,
        chart=chart,
        bounces=ctx.store.bounces.counts(issue_id),
        live=issue.status == ISSUE_SENDING,
        waves=waves,
        next_wave=next((w.at for w in waves if w.left), None),
        settings_zone=ctx.settings.timezone.key,
        **approval_context(ctx, issue_id, issue.status),
    )


def issue_counts(ctx: Ctx) -> Response:
    """The live view's poll: the issue's state and its counts by delivery state."""
    issue_id = _issue_id(ctx)
    status = ctx.store.issues.issue_status(issue_id)
    return json_response({"status": status, "counts": delivery_counts(ctx, issue_id, status)})


def change_status(ctx: Ctx) -> Response:
    issue_id = _issue_id(ctx)
    action = ctx.form.get("action", "")
    if action not in ACTIONS:
        return ctx.redirect(f"/admin/issues/{issue_id}", "Unknown action.")
    delivery.change_issue_status(ctx.store, issue_id, ACTIONS[action])
    done = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}[action]
    note = " The scheduler or the next run sends the rest." if action == "resume" else ""
    return ctx.redirect(f"/admin/issues/{issue_id}", f"Issue {issue_id} {done}.{note}")


def resolve(ctx: Ctx) -> Response:
    issue_id = _issue_id(ctx)
    action = ctx.form.get("action", "")
    if action not in ("resend", "mark-sent"):
        return ctx.redirect(f"/admin/issues/{issue_id}", "Unknown action.")
    subscriber = ctx.form.get("subscriber_id", "")
    ids = None
    if subscriber:
        if not (subscriber.isascii() and subscriber.isdigit()) or int(subscriber) > MAX_ID:
            raise NewsletterError(f"{subscriber[:40]!r} is not a subscriber id")
        ids = [int(subscriber)]
    moved = delivery.resolve_uncertain(ctx.store, issue_id, action == "resend", ids)
    what = "queued to send again" if action == "resend" else "counted as sent"
    return ctx.redirect(f"/admin/issues/{issue_id}", f"{moved} uncertain deliveries {what}.")
