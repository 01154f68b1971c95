"""The editors' workspace under /admin of `newsletter serve`.

    GET       /admin/login                      sign-in form (fields email, password)
    POST      /admin/login                      sign in (throttled per account and client)
    POST      /admin/logout                     ends this session
    POST      /admin/logout-everywhere          ends every session of the editor
    GET       /admin/queue                      the queue with expected dates, held articles
    POST      /admin/queue/add                  upload a file or paste Markdown
    POST      /admin/queue/layout               the next issue's layout=automatic|full|digest
    POST      /admin/queue/{id}/move            direction=up|down
    POST      /admin/queue/{id}/not-before      set (local time) or clear
    POST      /admin/queue/{id}/remove
    GET       /admin/queue/{id}/preview         the finished email, check results
    GET       /admin/queue/{id}/email           the email's HTML for the preview frames
    POST      /admin/queue/{id}/send-test       a proof to the signed-in editor
    GET       /admin/issues, /admin/issues/{id}
    GET       /admin/issues/{id}/counts.json    live counts
    POST      /admin/issues/{id}/status         action=pause|resume|cancel
    POST      /admin/issues/{id}/resolve        action=resend|mark-sent [subscriber_id]
    POST      /admin/issues/{id}/approve        approve an issue awaiting approval
    POST      /admin/issues/{id}/reject         reason=...: its articles are held again
    GET       /admin/issues/{id}/email          the stored issue's HTML for the frame
    GET/POST  /admin/schedule                   calendar; the cadence form
    GET       /admin/feeds                      the feeds, their failures, held entries
    GET       /admin/calendar                   the next 8 ticks and what each would take
    POST      /admin/calendar/{id}/move         direction=up|down, back to the calendar
    GET       /admin/subscribers                search, filter, keyset pages
    POST      /admin/subscribers/import         CSV upload: queued, 303 to its progress page
    GET       /admin/subscribers/imports/{id}   an import's progress and outcome
    GET       /admin/subscribers/imports/{id}.json   its state and counts (the page's script)
    GET       /admin/subscribers/export         CSV download
    POST      /admin/subscribers/tag            email, tag, action=add|remove
    POST      /admin/subscribers/{id}/unsubscribe
    GET       /admin/deliverability             the doctor's last report (DNS, bulk-sender rules)
    POST      /admin/deliverability/check       run the doctor now

Every page needs a signed-in editor and every POST the session's CSRF token and no other
site's Origin (see base).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter.web.admin import (
    approval,
    auth,
    calendar,
    deliverability,
    feeds,
    imports,
    issues,
    queue,
    schedule,
    subscribers,
)
from newsletter.web.admin.base import (
    BODY_LIMIT_UPLOAD,
    AdminState,
    editor_page,
)
from newsletter.web.admin.imports import lifespan

__all__ = ["AdminState", "lifespan", "routes"]

STATIC = Path(__file__).resolve().parent / "static"


def _home(request: Request) -> Response:
    return RedirectResponse("/admin/queue", status_code=303)


def _static_js(name: str):
    def endpoint(request: Request) -> Response:
        return Response(
            (STATIC / name).read_bytes(),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=300"},
        )

    return endpoint


def _by_method(get, post):
    async def endpoint(request: Request) -> Response:
        return await (post if request.method == "POST" else get)(request)

    return endpoint


def routes() -> list[BaseRoute]:
    get, post, both = ["GET"], ["POST"], ["GET", "POST"]
    page = editor_page
    return [
        Route("/admin", _home, methods=get),
        Route("/admin/", _home, methods=get),
        Route("/admin/static/live.js", _static_js("live.js"), methods=get),
        Route("/admin/static/import.js", _static_js("import.js"), methods=get),
        Route("/admin/login", _by_method(auth.login_page, auth.login_submit), methods=both),
        Route("/admin/logout", page(auth.logout), methods=post),
        Route("/admin/logout-everywhere", page(auth.logout_everywhere), methods=post),
        Route("/admin/queue", page(queue.queue_page), methods=get),
        Route(
            "/admin/queue/add",
            page(queue.add_article, body_limit=BODY_LIMIT_UPLOAD),
            methods=post,
        ),
        Route("/admin/queue/layout", page(queue.next_layout), methods=post),
        Route("/admin/queue/{article_id:int}/move", page(queue.move_article), methods=post),
        Route("/admin/queue/{article_id:int}/not-before", page(queue.not_before), methods=post),
        Route("/admin/queue/{article_id:int}/remove", page(queue.remove_article), methods=post),
        Route("/admin/queue/{article_id:int}/preview", page(queue.preview_page), methods=get),
        Route("/admin/queue/{article_id:int}/email", page(queue.email_document), methods=get),
        Route("/admin/queue/{article_id:int}/send-test", page(queue.send_test), methods=post),
        Route("/admin/issues", page(issues.issues_page), methods=get),
        Route("/admin/issues/{issue_id:int}", page(issues.issue_page), methods=get),
        Route("/admin/issues/{issue_id:int}/counts.json", page(issues.issue_counts), methods=get),
        Route("/admin/issues/{issue_id:int}/status", page(issues.change_status), methods=post),
        Route("/admin/issues/{issue_id:int}/resolve", page(issues.resolve), methods=post),
        Route("/admin/issues/{issue_id:int}/approve", page(approval.approve), methods=post),
        Route("/admin/issues/{issue_id:int}/reject", page(approval.reject), methods=post),
        Route("/admin/issues/{issue_id:int}/email", page(approval.issue_email), methods=get),
        Route("/admin/schedule", page(schedule.schedule_endpoint), methods=both),
        Route("/admin/feeds", page(feeds.feeds_page), methods=get),
        Route("/admin/calendar", page(calendar.calendar_page), methods=get),
        Route("/admin/calendar/{article_id:int}/move", page(calendar.move), methods=post),
        Route("/admin/subscribers", page(subscribers.subscribers_page), methods=get),
        Route(
            "/admin/subscribers/import",
            page(
                imports.import_subscribers,
                body_limit=imports.BODY_LIMIT_IMPORT,
                read_form=imports.read_import_form,
                too_large=imports.TOO_LARGE,
            ),
            methods=post,
        ),
        Route("/admin/subscribers/imports/{job_id:int}", page(imports.import_page), methods=get),
        Route(
            "/admin/subscribers/imports/{job_id:int}.json",
            page(imports.import_status),
            methods=get,
        ),
        Route("/admin/subscribers/export", page(subscribers.export_subscribers), methods=get),
        Route("/admin/subscribers/tag", page(subscribers.tag_subscriber), methods=post),
        Route(
            "/admin/subscribers/{subscriber_id:int}/unsubscribe",
            page(subscribers.unsubscribe),
            methods=post,
        ),
        Route("/admin/deliverability", page(deliverability.deliverability_page), methods=get),
        Route("/admin/deliverability/check", page(deliverability.check_now), methods=post),
    ]
