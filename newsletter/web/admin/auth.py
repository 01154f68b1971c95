"""Sign-in and sign-out (here, or everywhere) of the editors' workspace."""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from newsletter.alerts import sign_in_alert
from newsletter.editors import (
    SESSION_MAX_AGE,
    authenticate,
    end_all_sessions,
    end_session,
    start_session,
)
from newsletter.exceptions import NewsletterError
from newsletter.providers import make_provider
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
    ACCOUNT_FREE,
    CSRF_FIELD,
    LOGIN_COOKIE,
    LOGIN_FORM_MAX_AGE,
    SESSION_COOKIE,
    same_origin,
)
from newsletter.web.bodies import BodyTooLarge
from newsletter.web.state import WebState, web_state

log = logging.getLogger(__name__)


def _client(request: Request) -> str | None:
    """The client's address: the socket's, or X-Forwarded-For's when the socket is one of
    the proxies `[web] forwarded_allow_ips` trusts (uvicorn decides)."""
    return request.client.host if request.client else None


def _tell_editor(state: WebState, email: str, failures: int, window_end: float) -> None:
    try:
        sign_in_alert(
            state.store,
            state.settings,
            make_provider(state.settings),
            email=email,
            failures=failures,
            window_end=window_end,
        )
    except NewsletterError as exc:  # a broken provider must not break the sign-in form
        log.error("could not warn the editor about failed sign-ins: %s", exc)


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
    if not admin.sessions.csrf_ok(nonce, fields.get(CSRF_FIELD)) or not same_origin(
        request, state.settings.base_url
    ):
        return forbidden(
            state,
            "The sign-in form has expired or did not come from this site. "
            "Reload the sign-in page and try again.",
        )
    email = fields.get("email", "")[:320]
    password = fields.get("password", "")
    client = _client(request)
    throttle = admin.throttle
    attempt = await run_in_threadpool(throttle.check, email, client)
    if not attempt.allowed:
        response = _login_form(
            request,
            429,
            email=email,
            error="Too many failed sign-ins from here. "
            f"Try again in {max(1, -(-attempt.retry_after // 60))} minute(s).",
        )
        response.headers["Retry-After"] = str(attempt.retry_after)
        return response
    if attempt.delay:
        await asyncio.sleep(attempt.delay)  # the account is under attack: slow, never shut
    editor = await run_in_threadpool(authenticate, state.store, email, password)
    if editor is None:
        failures = await run_in_threadpool(throttle.failed, email, client)
        if failures >= ACCOUNT_FREE:  # one email per window: the alert's key says so
            _, window_end = await run_in_threadpool(throttle.account_failures, email)
            await run_in_threadpool(_tell_editor, state, email, failures, window_end)
        return _login_form(request, 401, email=email, error="Wrong email address or password.")
    await run_in_threadpool(throttle.succeeded, email, client)
    session_id = await run_in_threadpool(start_session, state.store, editor)
    response = RedirectResponse(safe_next(fields.get("next")), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        admin.sessions.cookie_for(session_id),
        **admin.sessions.cookie_options(int(SESSION_MAX_AGE.total_seconds())),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/admin/login")
    return response


def _signed_out() -> Response:
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/admin")
    return response


def logout(ctx: Ctx) -> Response:
    """This session ends in the database: a copy of the cookie opens nothing any more."""
    end_session(ctx.store, ctx.session.session_id)
    return _signed_out()


def logout_everywhere(ctx: Ctx) -> Response:
    """Every session of the editor ends, on every device (this one too)."""
    end_all_sessions(ctx.store, ctx.editor)
    return _signed_out()
