"""Deliverability: the doctor's last report (the one `run` and `newsletter doctor` cached,
with its time) and a button that checks again now. The checks are `newsletter.doctor`'s, as in
the CLI."""

from __future__ import annotations

from starlette.responses import Response

from newsletter.doctor import diagnose
from newsletter.doctor.gate import last_report, remember
from newsletter.web.admin.base import Ctx


def deliverability_page(ctx: Ctx) -> Response:
    return ctx.page("admin/deliverability.html", report=last_report(ctx.store))


def check_now(ctx: Ctx) -> Response:
    report = diagnose(ctx.settings, ctx.store)
    remember(ctx.store, report)
    errors, warnings = len(report.errors), len(report.warnings)
    return ctx.redirect(
        "/admin/deliverability",
        f"Checked {report.domain}: {errors} error(s), {warnings} warning(s).",
    )
