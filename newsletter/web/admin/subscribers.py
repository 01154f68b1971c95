"""Subscribers: search, filter by status, keyset pages, CSV import with the line-numbered
report (`subscribers.import_csv`), export (`subscribers.export_csv`), unsubscribe one."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urlencode

from starlette.background import BackgroundTask
from starlette.responses import FileResponse, Response

from newsletter.exceptions import NotFound
from newsletter.records import SubscriberStatus
from newsletter.store.subscribers import SEARCH_FIELDS
from newsletter.subscribers import export_csv, import_csv_chunked
from newsletter.web.admin.base import Ctx
from newsletter.web.pages import REASON_LABELS

STATUSES = tuple(s.value for s in SubscriberStatus)
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED
PAGE_SIZE = 50


def subscribers_page(ctx: Ctx, report=None, report_name: str = "") -> Response:
    params = ctx.request.query_params
    query = params.get("q", "")[:320]
    status = params.get("status", "")
    status = status if status in STATUSES else ""
    field = params.get("field", "address")
    field = field if field in SEARCH_FIELDS else "address"
    after = params.get("after", "")[:700]
    page = ctx.store.subscribers.search(query, status or None, after, PAGE_SIZE, field)
    base = "/admin/subscribers?" + urlencode({"q": query, "status": status, "field": field})
    return ctx.page(
        "admin/subscribers.html",
        page=page,
        q=query,
        status=status,
        statuses=STATUSES,
        field=field,
        fields=SEARCH_FIELDS,
        report=report,
        report_name=report_name,
        first_url=base if after else "",
        next_url=f"{base}&{urlencode({'after': page.next_cursor})}" if page.next_cursor else "",
        back=base,
        leaving=ctx.store.subscribers.leaving_summary(),
        reason_labels=REASON_LABELS,
    )


def import_subscribers(ctx: Ctx) -> Response:
    upload = ctx.files.get("file")
    if not upload or not upload[1].stat().st_size:
        return ctx.redirect("/admin/subscribers", "Choose a CSV file to import.")
    name = Path(upload[0].replace("\\", "/")).name or "subscribers.csv"
    # The upload is already a temporary file (`read_admin_form`), removed after the page.
    result = import_csv_chunked(ctx.store, upload[1])
    return subscribers_page(ctx, report=result, report_name=name)


def export_subscribers(ctx: Ctx) -> Response:
    """Every subscriber as CSV, written to a temporary file first (a million rows must not
    sit in memory) and removed once sent."""
    descriptor, name = tempfile.mkstemp(prefix="newsletter-export-", suffix=".csv")
    path = Path(name)
    try:
        with open(descriptor, "w", encoding="utf-8", newline="") as handle:
            export_csv(ctx.store.subscribers.each(), handle)
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
    # The same rule as the one-click link: a bounce or complaint is never softened.
    ctx.store.subscribers.suppress(row.email, UNSUBSCRIBED)
    back = ctx.form.get("back", "")
    target = back if back.startswith("/admin/subscribers") else "/admin/subscribers"
    return ctx.redirect(target, f"Unsubscribed {row.email}.")
