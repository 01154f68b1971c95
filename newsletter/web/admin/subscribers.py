"""Subscribers: search, filter by status, keyset pages, the recent imports (run off the
request: `imports`), export (`subscribers.export_subscribers`, tags included), unsubscribe one."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from starlette.background import BackgroundTask
from starlette.responses import FileResponse, Response

from newsletter import segments
from newsletter import subscribers as lists
from newsletter.exceptions import BadTag, NotFound, SegmentError
from newsletter.records import SubscriberStatus
from newsletter.store.subscribers import SEARCH_FIELDS
from newsletter.web.admin.base import Ctx
from newsletter.web.admin.imports import BODY_LIMIT_IMPORT
from newsletter.web.pages import REASON_LABELS

STATUSES = tuple(s.value for s in SubscriberStatus)
PAGE_SIZE = 50
MAX_SEGMENT_LENGTH = 500


def subscribers_page(ctx: Ctx) -> Response:
    params = ctx.request.query_params
    query = params.get("q", "")[:320]
    status = params.get("status", "")
    status = status if status in STATUSES else ""
    field = params.get("field", "address")
    field = field if field in SEARCH_FIELDS else "address"
    after = params.get("after", "")[:700]
    page = ctx.store.subscribers.search(query, status or None, after, PAGE_SIZE, field)
    segment = params.get("segment", "")[:MAX_SEGMENT_LENGTH]
    audience = _audience(ctx, segment) if segment.strip() else None
    base = "/admin/subscribers?" + urlencode({"q": query, "status": status, "field": field})
    return ctx.page(
        "admin/subscribers.html",
        page=page,
        q=query,
        status=status,
        statuses=STATUSES,
        field=field,
        fields=SEARCH_FIELDS,
        imports=ctx.store.imports.recent(5),
        import_limit_mb=BODY_LIMIT_IMPORT // (1024 * 1024),
        first_url=base if after else "",
        next_url=f"{base}&{urlencode({'after': page.next_cursor})}" if page.next_cursor else "",
        back=base,
        leaving=ctx.store.subscribers.leaving_summary(),
        tags=ctx.store.tags.of(row.id for row in page.rows),
        # Names only: counting each tag, or the issue's audience, reads every subscriber's
        # index entry (about 0.2 s at a million), so a count is made when asked for.
        tag_names=ctx.store.tags.names(),
        segment=segment,
        audience=audience,
        issue_segment=ctx.settings.segment,
        reason_labels=REASON_LABELS,
    )


@dataclass(frozen=True, kw_only=True)
class Audience:
    """A segment's live count, or the located error that stops it from having one."""

    expression: str
    count: int | None
    error: str = ""


def _audience(ctx: Ctx, expression: str) -> Audience:
    try:
        return Audience(expression=expression, count=segments.count(ctx.store, expression))
    except SegmentError as exc:
        return Audience(expression=expression, count=None, error=str(exc))


def tag_subscriber(ctx: Ctx) -> Response:
    """Give a tag to one address, or take it away (the CLI's `subscribers tag/untag`)."""
    email = ctx.form.get("email", "").strip()[:320]
    remove = ctx.form.get("action", "add") == "remove"
    change = segments.untag_subscribers if remove else segments.tag_subscribers
    try:
        done = change(ctx.store, [email], ctx.form.get("tag", "")[:200])
    except (BadTag, NotFound) as exc:
        return ctx.redirect("/admin/subscribers", f"Nothing changed: {exc}")
    name = done.tag
    if remove:
        message = f"Took {name} from {email}." if done.changed else f"{email} had no tag {name}."
    else:
        message = f"Tagged {email} {name}." if done.changed else f"{email} was tagged {name}."
    return ctx.redirect("/admin/subscribers", message)


def export_subscribers(ctx: Ctx) -> Response:
    """Every subscriber as CSV, written to a temporary file first (a million rows must not
    sit in memory) and removed once sent."""
    descriptor, name = tempfile.mkstemp(prefix="newsletter-export-", suffix=".csv")
    path = Path(name)
    try:
        with open(descriptor, "w", encoding="utf-8", newline="") as handle:
            lists.export_subscribers(ctx.store, handle)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(
        path,
        media_type="text/csv; charset=utf-8",
        filename="subscribers.csv",
        headers={"Cache-Control": "no-store"},
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


def unsubscribe(ctx: Ctx) -> Response:
    row = ctx.store.subscribers.row_by_id(int(ctx.request.path_params["subscriber_id"]))
    if row is None:
        raise NotFound("no such subscriber")
    # The one-click link's own function: a bounce or complaint is never softened.
    lists.unsubscribe_subscriber(ctx.store, row.email)
    back = ctx.form.get("back", "")
    target = back if back.startswith("/admin/subscribers") else "/admin/subscribers"
    return ctx.redirect(target, f"Unsubscribed {row.email}.")
