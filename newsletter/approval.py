"""A second pair of eyes before a scheduled issue goes out (`[issue] approval = "required"`).

The tick prepares the issue (rendered, checked, stored `awaiting_approval`, no delivery
planned); an editor other than the ones who queued its articles approves it here (the
workspace's issue page or `newsletter approve`), and the tick sends it at its slot, never
before; a rejection holds its articles in the queue again with the reason. Every decision is
logged (`store.reviews`) with who and when. Who may decide is this module's one rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from newsletter.exceptions import ApprovalRefused, NewsletterError, NotFound
from newsletter.records import IssueRecord, IssueReview, IssueStatus, utcnow
from newsletter.settings import Settings
from newsletter.store import Store

MAX_REASON = 2000


def awaiting_notice(issue_id: int) -> str:
    """What every command says about an issue that waits for its approval."""
    return (
        f"issue {issue_id} awaits approval: nothing was sent. An editor other than the one "
        f"who queued its articles approves it with 'newsletter approve {issue_id} --editor "
        f"EMAIL' (or on its page in the workspace), or rejects it with 'newsletter reject "
        f"{issue_id} --editor EMAIL --reason TEXT'"
    )


@dataclass(frozen=True, kw_only=True)
class Decision:
    """An approval or rejection just made: the issue as it is now, and for a rejection the
    articles held again in the queue."""

    issue: IssueRecord
    held: list[str]


def queued_by(store: Store, issue_id: int) -> set[int]:
    """The editors who queued the issue's articles. An article queued without naming an
    editor (`queue add` without --editor, a feed, a file dropped into issues/) names nobody:
    it keeps no editor from approving, so an issue made of such articles only may be
    approved by any editor (the approval then records who looked, not that it was another)."""
    return {a.queued_by for a in store.articles.issue_articles(issue_id) if a.queued_by}


EDITOR_NEEDED = (
    "say who you are: --editor EMAIL or NEWSLETTER_EDITOR (an editor of 'newsletter editors "
    "list'; the log records who decided and when)"
)


def editor_named(store: Store, email: str | None) -> tuple[int, str]:
    """The editor account (id, address) `email` names: who queues or decides, from the
    command line (`--editor` / NEWSLETTER_EDITOR). NotFound for an address that is no editor."""
    if not email or not email.strip():
        raise NewsletterError(EDITOR_NEEDED)
    row = store.editors.by_email(email.strip())
    if row is None:
        raise NotFound(f"no editor {email.strip()!r} (see 'newsletter editors list')")
    return row.id, row.email


def queued_by_emails(store: Store, issue_id: int) -> list[str]:
    """The addresses of the editors who queued the issue's articles, for the issue page
    ([] when every article names nobody: then any editor may approve it)."""
    rows = (store.editors.by_id(editor_id) for editor_id in sorted(queued_by(store, issue_id)))
    return [row.email for row in rows if row is not None]


def _awaiting(store: Store, issue_id: int, what: str) -> IssueRecord:
    issue = store.issues.get_issue(issue_id)
    allowed: tuple[IssueStatus, ...] = (IssueStatus.AWAITING_APPROVAL,)
    if what == "reject":
        allowed += (IssueStatus.APPROVED,)
    if issue.status not in allowed:
        raise ApprovalRefused(
            f"issue {issue_id} is {issue.status.replace('_', ' ')}: only an issue awaiting "
            f"approval can be {'approved' if what == 'approve' else 'rejected'}"
        )
    return issue


def approve(
    store: Store,
    settings: Settings,
    issue_id: int,
    editor_email: str | None,
    now: datetime | None = None,
) -> Decision:
    """Approve an issue awaiting approval, as `editor_email`. Refused for an issue in any
    other state, and for an editor who queued one of its articles unless
    `[issue] allow_self_approval`."""
    editor_id, email = editor_named(store, editor_email)
    _awaiting(store, issue_id, "approve")
    if editor_id in queued_by(store, issue_id) and not settings.approval.allow_self:
        raise ApprovalRefused(
            f"{email} queued an article of issue {issue_id}: another editor approves it "
            "(or set [issue] allow_self_approval = true in newsletter.toml)"
        )
    if not store.reviews.approve(issue_id, editor_id, email, now or utcnow()):
        raise ApprovalRefused(f"issue {issue_id} was decided meanwhile: nothing changed")
    return Decision(issue=store.issues.get_issue(issue_id), held=[])


def reject(
    store: Store,
    settings: Settings,
    issue_id: int,
    editor_email: str | None,
    reason: str,
    now: datetime | None = None,
) -> Decision:
    """Reject an issue awaiting approval (or approved, before its slot), as `editor_email`,
    with a reason: its articles are held in the queue, in their places, with that reason,
    until an editor fixes and releases them. Any editor may reject."""
    reason = " ".join(reason.split())
    if not reason:
        raise NewsletterError("a rejection needs a reason (--reason): the editors read it")
    if len(reason) > MAX_REASON:
        raise NewsletterError(f"the reason is longer than {MAX_REASON} characters")
    editor_id, email = editor_named(store, editor_email)
    _awaiting(store, issue_id, "reject")
    held = store.reviews.reject(issue_id, editor_id, email, reason, now or utcnow())
    if not held and store.issues.issue_status(issue_id) != IssueStatus.REJECTED:
        raise ApprovalRefused(f"issue {issue_id} was decided meanwhile: nothing changed")
    return Decision(issue=store.issues.get_issue(issue_id), held=held)


def reviews(store: Store, issue_id: int) -> list[IssueReview]:
    """Who approved or rejected the issue, and when (oldest first)."""
    return store.reviews.for_issue(issue_id)


def overdue(store: Store, settings: Settings, now: datetime | None = None) -> list[IssueRecord]:
    """Issues still awaiting approval within `approval_deadline_minutes` of their slot (or
    past it): what the alerts tell every editor about."""
    now = now or utcnow()
    return [
        issue
        for issue in store.issues.prepared_issues()
        if issue.status == IssueStatus.AWAITING_APPROVAL
        and (issue.scheduled_for is None or issue.scheduled_for - settings.approval.deadline <= now)
    ]


def can_decide(store: Store, settings: Settings, issue_id: int, editor_id: int) -> bool:
    """Whether this editor may approve the issue (the workspace shows the button or why not)."""
    return settings.approval.allow_self or editor_id not in queued_by(store, issue_id)
