"""The Starlette app for subscribers and SendGrid, built by `create_app(settings, store)`.

Routes (the first two are the links every email carries, see `newsletter.render`):
    GET  /unsubscribe/{token}   confirmation page with a button (changes nothing)
    POST /unsubscribe/{token}   RFC 8058 one-click unsubscribe: 200, no redirect
    GET  /archive/{slug}        an issue's web edition
    GET  /articles/{slug}       an article's own page, the ending behind a reveal
    GET  /archive               past issues with teasers and dates
    GET  /feed.xml              Atom feed
    GET  /subscribe             sign-up form (no JavaScript needed; one script of ours fills
                                the reader's time zone from the browser)
    GET  /static/timezone.js    that script
    POST /subscribe             records a pending subscriber, emails the confirmation link
    GET  /confirm/{token}       page with a confirm button (mail scanners prefetch GETs)
    POST /confirm/{token}       activates the subscription
    POST /webhooks/sendgrid     SendGrid's signed Event Webhook
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import cast
from urllib.parse import SplitResult, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.editors import prune_sessions
from newsletter.links import SiteAt, admin_url, archive_url, subscribe_url
from newsletter.settings import Settings, secret
from newsletter.store import Store
from newsletter.subscribers import signing_secret
from newsletter.web import admin, archive, pages
from newsletter.web.cache import PageCache
from newsletter.web.events import PUBLIC_KEY_ENV, SendGridWebhook, WebhookVerifier
from newsletter.web.ratelimit import SignupLimits
from newsletter.web.state import WebState, web_state

log = logging.getLogger(__name__)

# Our own pages: inline styles only, no scripts, no third-party anything; forms post back to
# us, and no page may be framed (clickjacking an unsubscribe or confirm button).
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# The sign-up form alone runs one script, a file of ours (web/static/timezone.js, with its
# integrity hash on the tag): no inline script, nothing from elsewhere.
SIGNUP_CSP = PAGE_CSP.replace("default-src 'none'; ", "default-src 'none'; script-src 'self'; ")
SECURITY_HEADERS = {
    "content-security-policy": PAGE_CSP,
    "x-content-type-options": "nosniff",
    # Token links must not leak to other sites through the Referer header.
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


class SecurityHeaders:
    """Adds the headers above to every response that does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- errors ------------------------------------------------------------------------------------
_MESSAGES = {
    404: ("Page not found", "There is nothing at this address."),
    405: ("Not allowed", "This address does not accept that kind of request."),
}


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        redirect = slash_redirect(request)
        if redirect is not None:
            return redirect
    heading, message = _MESSAGES.get(exc.status_code, ("Request refused", str(exc.detail)))
    response = web_state(request).page(
        "error.html", exc.status_code, heading=heading, message=message
    )
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def server_error(request: Request, exc: Exception) -> Response:
    """Starlette answers this one outside every middleware, SecurityHeaders included: the
    headers are set here."""
    response = web_state(request).page(
        "error.html",
        500,
        heading="Something went wrong",
        message="The page could not be shown. Please try again in a few minutes.",
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def slash_redirect(request: Request) -> Response | None:
    """`/archive/` -> `/archive` (and the reverse) when only the other spelling is a page,
    as Starlette's own redirect does, but relative: a Location built on the Host header (the
    client's to forge) could send readers elsewhere, and one built on base_url sends them
    where `serve` may not listen (`serve --port 8799` with base_url on 8000)."""
    path = request.scope["path"]
    if request.method not in ("GET", "HEAD") or path == "/":
        return None
    other = path.rstrip("/") if path.endswith("/") else path + "/"
    probe = {**request.scope, "path": other}
    if not any(route.matches(probe)[0] is not Match.NONE for route in request.app.routes):
        return None
    raw = request.scope.get("raw_path") or path.encode("utf-8")
    raw_path = raw.decode("latin-1")
    target = raw_path.rstrip("/") if path.endswith("/") else raw_path + "/"
    query = request.scope.get("query_string", b"").decode("latin-1")
    location = _base_path(request) + target + (f"?{query}" if query else "")
    return RedirectResponse(location, status_code=307)


def _base_path(request: Request) -> str:
    """base_url's path ("" or, behind a proxy that mounts the site below one, "/letters"):
    redirects within the app are relative to the site, whatever host and port it answers on."""
    return urlsplit(web_state(request).settings.base_url).path.rstrip("/")


def _home(request: Request) -> Response:
    return RedirectResponse(subscribe_url(SiteAt(base_url=_base_path(request))), status_code=303)


BOTH = ["GET", "POST"]
Handler = Callable[[Request], Response | Awaitable[Response]]


def by_method(get: Handler, post: Handler) -> Callable[[Request], Awaitable[Response]]:
    """One route for a page and its form (GET/HEAD and POST), so a wrong method gets 405
    with the full Allow header. Blocking (database) handlers run in the thread pool, as
    Starlette would run them."""

    async def endpoint(request: Request) -> Response:
        handler = post if request.method == "POST" else get
        if inspect.iscoroutinefunction(handler):
            return await handler(request)
        return await run_in_threadpool(cast(Callable[[Request], Response], handler), request)

    return endpoint


def with_policy(
    endpoint: Callable[[Request], Awaitable[Response]], policy: str
) -> Callable[[Request], Awaitable[Response]]:
    """`endpoint` with its own Content-Security-Policy instead of `PAGE_CSP`."""

    async def wrapped(request: Request) -> Response:
        response = await endpoint(request)
        response.headers["content-security-policy"] = policy
        return response

    return wrapped


def _static_script(name: str) -> Callable[[Request], Response]:
    body = (pages.STATIC / name).read_bytes()

    def endpoint(request: Request) -> Response:
        return Response(
            body, media_type="text/javascript", headers={"Cache-Control": "public, max-age=300"}
        )

    return endpoint


# -- the app -----------------------------------------------------------------------------------
def create_app(
    settings: Settings,
    store: Store,
    *,
    webhook_public_key: str | None = None,
    limits: SignupLimits | None = None,
) -> Starlette:
    """The web app on `store`. The webhook's public key comes from the argument or from the
    SENDGRID_WEBHOOK_PUBLIC_KEY environment variable; without one, every event is refused.
    `limits` defaults to the sign-up limits of `newsletter.web.ratelimit`."""
    key = webhook_public_key or secret(PUBLIC_KEY_ENV)
    verifier = WebhookVerifier(key) if key else None
    if verifier is None and settings.provider == "sendgrid":
        log.warning("%s is not set: the SendGrid event webhook will refuse events", PUBLIC_KEY_ENV)
    state = WebState(
        settings=settings,
        store=store,
        token_secret=signing_secret(store),
        verifier=verifier,
        limits=limits or SignupLimits(store),
    )
    state.limits.purge()
    prune_sessions(store)
    routes = [
        Route("/", _home, methods=["GET"]),
        Route(
            "/subscribe",
            with_policy(by_method(pages.subscribe_form, pages.subscribe_submit), SIGNUP_CSP),
            methods=BOTH,
        ),
        Route(f"/static/{pages.ZONE_SCRIPT}", _static_script(pages.ZONE_SCRIPT), methods=["GET"]),
        # `path` so that a token mangled with slashes still reaches the same 400 page.
        Route(
            "/confirm/{token:path}",
            by_method(pages.confirm_page, pages.confirm_submit),
            methods=BOTH,
        ),
        Route(
            "/unsubscribe/{token:path}",
            by_method(pages.unsubscribe_page, pages.unsubscribe_submit),
            methods=BOTH,
        ),
        Route("/archive", archive.archive_index, methods=["GET"]),
        Route("/archive/{slug}", archive.archive_issue, methods=["GET"]),
        Route("/articles/{slug}", archive.archive_article, methods=["GET"]),
        Route("/feed.xml", archive.feed_xml, methods=["GET"]),
        # SendGrid's signed Event Webhook (newsletter.web.events).
        Route("/webhooks/sendgrid", SendGridWebhook(store, verifier).endpoint, methods=["POST"]),
        *admin.routes(),  # the editors' workspace, /admin
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={HTTPException: http_error, Exception: server_error},
        lifespan=admin.lifespan,  # the workspace's import worker
    )
    # Ours (slash_redirect) builds the Location on base_url, not on the Host header.
    app.router.redirect_slashes = False
    app.state.web = state
    app.state.admin = admin.AdminState.for_web(state)
    app.state.public_pages = PageCache(store)
    return app


def _port_of(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_banner(settings: Settings, host: str, port: int) -> list[str]:
    """What `serve` says at start: where the sign-up form, the archive and the workspace are,
    and, when base_url is a loopback address other than where it listens, that the links in
    emails and pages will not reach this server."""
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::", ""):
        shown = "127.0.0.1"
    here = f"http://{shown}:{port}"
    listening = SiteAt(base_url=here)
    lines = [
        f"sign-up form: {subscribe_url(listening)}",
        f"archive:      {archive_url(listening)}",
        f"workspace:    {admin_url(listening)}",
    ]
    base = urlsplit(settings.base_url)
    base_host = base.hostname or ""
    same_host = (
        host in ("0.0.0.0", "::", "")
        or base_host == host
        or (_loopback(base_host) and _loopback(host))
    )
    if _loopback(base_host) and (_port_of(base) != port or not same_host):
        lines.append(
            f"warning: base_url is {settings.base_url} but serve listens on {here}: links in "
            "emails and pages point where this server is not (set [newsletter] base_url or "
            "NEWSLETTER_BASE_URL, or serve on that port)"
        )
    return lines


def serve(
    settings: Settings, host: str = "127.0.0.1", port: int = 8000, *, access_log: bool = True
) -> None:
    """Run the web side under uvicorn until interrupted (`newsletter serve`). The access log
    costs about a sixth of a cached page's CPU; behind a proxy that logs, it can go.
    X-Forwarded-For is believed from `[web] forwarded_allow_ips` only."""
    import uvicorn

    store = Store(settings.database_url)
    try:
        app = create_app(settings, store)
        for line in serve_banner(settings, host, port):
            print(line, flush=True)
        uvicorn.run(
            app,
            host=host,
            port=port,
            server_header=False,
            log_level="info",
            access_log=access_log,
            proxy_headers=True,
            forwarded_allow_ips=settings.forwarded_allow_ips,
        )
    finally:
        store.close()
