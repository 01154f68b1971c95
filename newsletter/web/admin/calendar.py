"""The editorial calendar: the next ticks of the cadence with the articles each would take
(`planner.plan_ticks`: queue order, not-before dates, approval state, feeds fetched before
it); an article moved here moves in the queue (`publish.move_article`, as on the queue page
and `queue move`) and the calendar shows the new plan."""

from __future__ import annotations

from starlette.responses import Response

from newsletter.planner import plan_ticks
from newsletter.publish import move_article
from newsletter.web.admin.base import Ctx


def calendar_page(ctx: Ctx) -> Response:
    return ctx.page("admin/calendar.html", ticks=plan_ticks(ctx.store, ctx.settings))


def move(ctx: Ctx) -> Response:
    row = ctx.store.articles.queued_article(int(ctx.request.path_params["article_id"]))
    up = ctx.form.get("direction") == "up"
    moved = move_article(ctx.store, row.filename, up=up)
    where = "earlier" if up else "later"
    message = f"Moved {row.title or row.filename} {where}." if moved else f"{row.filename} stays."
    return ctx.redirect("/admin/calendar", message)
