"""Approving or rejecting an issue awaiting approval, from its page (the stored email shown
beside the buttons), and the notice every page carries while an issue nears its slot
unapproved. The rules are `newsletter.approval`'s, as in `newsletter approve`."""

from __future__ import annotations

from starlette.responses import HTMLResponse, Response

from newsletter import approval
from newsletter.alerts import approval_alerts
from newsletter.exceptions import ApprovalRefused
from newsletter.links import stored_issue, unsubscribe_url
from newsletter.preview import SAMPLE_NAME, SAMPLE_TOKEN
from newsletter.records import IssueStatus
from newsletter.render import personalize
from newsletter.web.admin.base import Ctx
from newsletter.web.admin.queue import EMAIL_CSP

PREPARED = (IssueStatus.AWAITING_APPROVAL, IssueStatus.APPROVED)


def _issue_id(ctx: Ctx) -> int:
    return int(ctx.request.path_params["issue_id"])


def approval_context(ctx: Ctx, issue_id: int, status: str) -> dict:
    """What the issue page shows of the approval: the log, and whether this editor may
    decide (or why not)."""
    awaiting = status == IssueStatus.AWAITING_APPROVAL
    may = approval.can_decide(ctx.store, ctx.settings, issue_id, ctx.editor.id)
    return {
        "reviews": approval.reviews(ctx.store, issue_id),
        "queued_by": approval.queued_by_emails(ctx.store, issue_id),
        "awaiting": awaiting,
        "prepared": status in PREPARED,
        "may_approve": awaiting and may,
        "self_refused": awaiting and not may,
    }


def approve(ctx: Ctx) -> Response:
    issue_id = _issue_id(ctx)
    try:
        decision = approval.approve(ctx.store, ctx.settings, issue_id, ctx.editor.email)
    except ApprovalRefused as exc:
        return ctx.page("admin/problem.html", 409, heading="Not approved", message=str(exc))
    when = ctx.local(decision.issue.scheduled_for) if decision.issue.scheduled_for else "now"
    return ctx.redirect(f"/admin/issues/{issue_id}", f"Approved: issue {issue_id} goes out {when}.")


def reject(ctx: Ctx) -> Response:
    issue_id = _issue_id(ctx)
    try:
        decision = approval.reject(
            ctx.store, ctx.settings, issue_id, ctx.editor.email, ctx.form.get("reason", "")
        )
    except ApprovalRefused as exc:
        return ctx.page("admin/problem.html", 409, heading="Not rejected", message=str(exc))
    held = ", ".join(decision.held) or "none"
    return ctx.redirect(
        f"/admin/issues/{issue_id}",
        f"Rejected issue {issue_id}; its articles are held in the queue: {held}.",
    )


def issue_email(ctx: Ctx) -> Response:
    """The stored issue's HTML for a sample reader, for the frame beside the buttons."""
    issue = ctx.store.issues.get_issue(_issue_id(ctx))
    rendered = stored_issue(ctx.settings, issue)
    body = personalize(rendered, SAMPLE_NAME, unsubscribe_url(ctx.settings, SAMPLE_TOKEN))
    return HTMLResponse(
        body.html,
        headers={
            "Cache-Control": "no-store",
            "content-security-policy": EMAIL_CSP,
            "x-frame-options": "SAMEORIGIN",
        },
    )


def notices(ctx: Ctx) -> list[tuple[int, str]]:
    """(issue id, sentence) for each issue nearing its slot unapproved: on every page."""
    return [
        (int(a.link.rsplit("/", 1)[1]), a.subject) for a in approval_alerts(ctx.store, ctx.settings)
    ]
