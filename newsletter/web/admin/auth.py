"""Sign-in and sign-out of the editors' workspace."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from newsletter.editors import authenticate
from newsletter.web.admin.base import (
    BODY_LIMIT_ADMIN_FORM,
    Ctx,
    admin_state,
    current_session,
    forbidden,
    plain_page,
    read_admin_form,
    safe_next,
)
from newsletter.web.admin.session import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    LOGIN_FORM_MAX_AGE,
    SESSION_COOKIE,
    SESSION_MAX_AGE,
)
from newsletter.web.bodies import BodyTooLarge
from newsletter.web.state import web_state


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _login_form(request: Request, status_code: int = 200, **context) -> Response:
    state, admin = web_state(request), admin_state(request)
    cookie, nonce = admin.sessions.new_login_nonce()
    page = plain_page(
        state,
        "admin/login.html",
        status_code,
        csrf=admin.sessions.csrf_token(nonce),
        csrf_field=CSRF_FIELD,
        next=safe_next(request.query_params.get("next")),
        **{"email": "", "error": "", **context},
    )
    page.set_cookie(
        LOGIN_COOKIE,
        cookie,
        **admin.sessions.cookie_options(LOGIN_FORM_MAX_AGE, path="/admin/login"),
    )
    return page


async def login_page(request: Request) -> Response:
    if await current_session(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return _login_form(request)


async def login_submit(request: Request) -> Response:
    state, admin = web_state(request), admin_state(request)
    try:
        fields, _ = await read_admin_form(request, BODY_LIMIT_ADMIN_FORM)
    except (BodyTooLarge, ValueError):
        return forbidden(state, "The sign-in form could not be read.")
    nonce = admin.sessions.read_login_nonce(request.cookies.get(LOGIN_COOKIE))
    if not admin.sessions.csrf_ok(nonce, fields.get(CSRF_FIELD)):
        return forbidden(
            state,
            "The sign-in form has expired or did not come from this site. "
            "Reload the sign-in page and try again.",
        )
    email = fields.get("email", "")[:320]
    password = fields.get("password", "")
    client = _client(request)
    throttle = admin.throttle
    if not await run_in_threadpool(throttle.allowed, email, client):
        wait = await run_in_threadpool(throttle.retry_after, email, client)
        response = _login_form(
            request,
            429,
            email=email,
            error=f"Too many failed sign-ins. Try again in {max(1, wait // 60)} minute(s).",
        )
        response.headers["Retry-After"] = str(wait)
        return response
    editor = await run_in_threadpool(authenticate, state.store, email, password)
    if editor is None:
        await run_in_threadpool(throttle.failed, email, client)
        return _login_form(request, 401, email=email, error="Wrong email address or password.")
    await run_in_threadpool(throttle.succeeded, email)
    cookie, _ = admin.sessions.new_session(editor.id, editor.session_version)
    response = RedirectResponse(safe_next(fields.get("next")), status_code=303)
    response.set_cookie(SESSION_COOKIE, cookie, **admin.sessions.cookie_options(SESSION_MAX_AGE))
    response.delete_cookie(LOGIN_COOKIE, path="/admin/login")
    return response


def logout(ctx: Ctx) -> Response:
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/admin")
    return response
