"""What every page of the editors' workspace shares: the session check, the CSRF check of
every POST, form reading (with uploads), rendering and the headers.

A handler is a plain function of a `Ctx`, run in the thread pool; `editor_page` wraps it so
it never runs without a signed-in editor, nor for a POST without a valid CSRF token from this
site, nor with an id in its path that no database row can have.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from newsletter.editors import Editor, editor_for_session
from newsletter.exceptions import NewsletterError, NotFound
from newsletter.settings import Settings
from newsletter.store import Store
from newsletter.web.admin.session import (
    CSRF_FIELD,
    SESSION_COOKIE,
    LoginThrottle,
    ProofLimit,
    SessionData,
    Sessions,
    same_origin,
)
from newsletter.web.bodies import BodyTooLarge
from newsletter.web.state import WebState, web_state
from newsletter.web.templating import render

FLASH_COOKIE = "nl_admin_flash"
BODY_LIMIT_ADMIN_FORM = 64 * 1024
BODY_LIMIT_UPLOAD = 2 * 1024 * 1024
BODY_LIMIT_CSV = 64 * 1024 * 1024
# Ids in paths are database integers (64-bit on both backends): a larger one names nothing.
MAX_ID = 2**63 - 1

# The public pages' policy, plus what the workspace needs and nothing more: its own script
# (the live counts) and frames of its own email previews.
ADMIN_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "script-src 'self'; connect-src 'self'; frame-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
ADMIN_HEADERS = {"Cache-Control": "no-store", "content-security-policy": ADMIN_CSP}


@dataclass
class AdminState:
    sessions: Sessions
    throttle: LoginThrottle
    proofs: ProofLimit
    flash: URLSafeTimedSerializer
    previews: dict = field(default_factory=dict)  # (file, mtime, size) -> rendered preview
    totals: dict = field(default_factory=dict)  # issue id -> (deliveries planned, when counted)

    @classmethod
    def for_web(cls, state: WebState) -> AdminState:
        secure = state.settings.base_url.startswith("https://")
        secret = state.token_secret[0]  # the current signing key (older ones only verify links)
        return cls(
            sessions=Sessions(secret, secure),
            throttle=LoginThrottle(state.store),
            proofs=ProofLimit(state.store),
            flash=URLSafeTimedSerializer(secret, salt="newsletter.admin-flash"),
        )


def admin_state(request: Request) -> AdminState:
    return request.app.state.admin


@dataclass
class Ctx:
    """One request of a signed-in editor."""

    request: Request
    web: WebState
    admin: AdminState
    editor: Editor
    session: SessionData
    form: dict[str, str]
    files: dict[str, tuple[str, Path]]  # field -> (file name as sent, temporary file)
    flash: str | None = None

    @property
    def store(self) -> Store:
        return self.web.store

    @property
    def settings(self) -> Settings:
        return self.web.settings

    @property
    def zone(self):
        return self.editor.zone(self.settings.timezone)

    @property
    def csrf(self) -> str:
        return self.admin.sessions.csrf_token(self.session.session_id)

    def local(self, moment: datetime | None, fmt: str = "%a %Y-%m-%d %H:%M %Z") -> str:
        return "-" if moment is None else moment.astimezone(self.zone).strftime(fmt)

    def page(self, template: str, status_code: int = 200, **context) -> HTMLResponse:
        from newsletter.web.admin.approval import notices  # it builds on this module

        html = render(
            self.settings,
            template,
            noindex=True,
            editor=self.editor,
            csrf=self.csrf,
            csrf_field=CSRF_FIELD,
            flash=self.flash,
            local=self.local,
            zone=self.zone,
            path=self.request.url.path,
            approval_notices=notices(self),
            **context,
        )
        response = HTMLResponse(html, status_code=status_code, headers=ADMIN_HEADERS)
        if self.flash is not None:
            response.delete_cookie(FLASH_COOKIE, path="/admin")
        return response

    def redirect(self, path: str, message: str | None = None) -> Response:
        """303 to another admin page (POST/redirect/GET), with a one-time message."""
        response = RedirectResponse(path, status_code=303)
        if message:
            response.set_cookie(
                FLASH_COOKIE,
                self.admin.flash.dumps(message[:500]),
                **self.admin.sessions.cookie_options(120),
            )
        return response


def plain_page(state: WebState, template: str, status_code: int = 200, **context) -> HTMLResponse:
    """A workspace page shown without a session (sign-in, refusals)."""
    html = render(state.settings, template, noindex=True, editor=None, flash=None, **context)
    return HTMLResponse(html, status_code=status_code, headers=ADMIN_HEADERS)


def forbidden(state: WebState, message: str) -> HTMLResponse:
    return plain_page(state, "admin/refused.html", 403, heading="Request refused", message=message)


def login_redirect(request: Request) -> Response:
    target = request.url.path
    if request.method == "GET" and request.url.query:
        target += "?" + request.url.query
    return RedirectResponse(f"/admin/login?next={quote(target, safe='')}", status_code=303)


def safe_next(value: str | None) -> str:
    """Only a path inside the workspace: never another site (open redirect)."""
    if not value:
        return "/admin/queue"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin/"):
        return "/admin/queue"
    if value.startswith("//") or "\\" in value or parts.path.startswith("/admin/login"):
        return "/admin/queue"
    return value


async def read_admin_form(
    request: Request, limit: int
) -> tuple[dict[str, str], dict[str, tuple[str, Path]]]:
    """Fields and uploaded files of a urlencoded or multipart form, refusing bodies over
    `limit` bytes (browsers always send Content-Length with a form). An upload is copied,
    a block at a time, to a temporary file the caller removes (`remove_uploads`): a large
    CSV never sits in memory."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > limit:
        raise BodyTooLarge
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, Path]] = {}
    if content_type == "multipart/form-data":
        form = await request.form(max_files=2, max_fields=50, max_part_size=limit)
        try:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if value.filename and key not in files:
                        files[key] = (value.filename, await run_in_threadpool(_spool, value))
                else:
                    fields.setdefault(key, value)
        finally:
            await form.close()
        return fields, files
    body = await request.body()
    if len(body) > limit:
        raise BodyTooLarge
    for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        fields.setdefault(key, value)
    return fields, files


def _spool(upload: UploadFile) -> Path:
    """The upload's bytes in a private temporary file, copied in blocks."""
    upload.file.seek(0)
    with tempfile.NamedTemporaryFile(prefix="newsletter-upload-", delete=False) as handle:
        shutil.copyfileobj(upload.file, handle, 1024 * 1024)
    return Path(handle.name)


def remove_uploads(files: dict[str, tuple[str, Path]]) -> None:
    for _, path in files.values():
        path.unlink(missing_ok=True)


async def current_session(request: Request) -> tuple[Editor, SessionData] | None:
    state, admin = web_state(request), admin_state(request)
    session = admin.sessions.read_session(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    editor = await run_in_threadpool(editor_for_session, state.store, session.session_id)
    return (editor, session) if editor is not None else None


def editor_page(
    handler: Callable[[Ctx], Response], *, body_limit: int = BODY_LIMIT_ADMIN_FORM
) -> Callable[[Request], object]:
    """The endpoint for `handler`: no session -> the sign-in page; a POST without the
    session's CSRF token -> 403; otherwise the handler, in the thread pool."""

    async def endpoint(request: Request) -> Response:
        state, admin = web_state(request), admin_state(request)
        found = await current_session(request)
        if found is None:
            return login_redirect(request)
        editor, session = found
        if any(isinstance(v, int) and v > MAX_ID for v in request.path_params.values()):
            return plain_page(
                state,
                "admin/refused.html",
                404,
                heading="Not found",
                message="There is nothing at this address.",
            )
        fields: dict[str, str] = {}
        files: dict[str, tuple[str, Path]] = {}
        if request.method == "POST":
            try:
                fields, files = await read_admin_form(request, body_limit)
            except BodyTooLarge:
                return plain_page(
                    state,
                    "admin/refused.html",
                    413,
                    heading="Too large",
                    message=f"The form is larger than {body_limit // 1024} KB.",
                )
            except ValueError:
                fields, files = {}, {}
            if not admin.sessions.csrf_ok(session.session_id, fields.get(CSRF_FIELD)):
                remove_uploads(files)
                return forbidden(
                    state,
                    "The form's security token is missing or does not belong to your session. "
                    "Go back, reload the page and try again.",
                )
            if not same_origin(request, state.settings.base_url):
                return forbidden(state, "The form was sent from another site.")
        flash = None
        if FLASH_COOKIE in request.cookies:
            try:
                flash = admin.flash.loads(request.cookies[FLASH_COOKIE], max_age=300)
            except BadSignature:
                flash = None
        ctx = Ctx(request, state, admin, editor, session, fields, files, flash)
        try:
            return await run_in_threadpool(handler, ctx)
        except NotFound as exc:
            return _problem(ctx, 404, "Not found", str(exc))
        except NewsletterError as exc:  # the library's word for a user's mistake
            return _problem(ctx, 400, "Not done", str(exc))
        finally:
            remove_uploads(files)

    return endpoint


def _problem(ctx: Ctx, status_code: int, heading: str, message: str) -> Response:
    return ctx.page("admin/problem.html", status_code, heading=heading, message=message)


def json_response(data: dict) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":")),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
