"""Sign-up with double opt-in, confirmation and one-click unsubscribe.

Every token is checked against its HMAC before the database is asked anything, and every
kind of bad token (tampered, truncated, foreign, garbage, unknown) gets the same 400 page.
GET never changes anything (mail scanners prefetch links); POST does the change.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from email_validator import EmailNotValidError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from newsletter.addresses import normalize_address
from newsletter.exceptions import Duplicate, NewsletterError
from newsletter.links import static_url
from newsletter.readertime import zone_name
from newsletter.records import SUPPRESSED, Subscriber, SubscriberStatus, UnsubscribeReason
from newsletter.subscribers import (
    add_subscriber,
    confirm_subscriber,
    pause_subscriber,
    record_unsubscribe_reason,
    unsubscribe_subscriber,
)
from newsletter.tokens import verify_token
from newsletter.web.bodies import BODY_LIMIT_FORM, BodyTooLarge, read_body
from newsletter.web.confirm import send_confirmation
from newsletter.web.state import WebState, web_state
from newsletter.welcome import welcome_new_reader

log = logging.getLogger(__name__)

MAX_EMAIL_LENGTH = 320
MAX_NAME_LENGTH = 200
REASON_LABELS = {
    UnsubscribeReason.TOO_FREQUENT: "Too many emails",
    UnsubscribeReason.NOT_RELEVANT: "Not relevant to me",
    UnsubscribeReason.SPOILERS: "Too many spoilers",
    UnsubscribeReason.OTHER: "Something else",
}


# The sign-up form's one script (web/static/timezone.js): the reader's zone from the browser.
# Served by us (`script-src 'self'` on this page only, see web/app.py) with its hash as the
# tag's integrity, so the page runs that file and nothing else.
ZONE_SCRIPT = "timezone.js"
STATIC = Path(__file__).resolve().parent / "static"


@functools.cache
def _integrity(name: str) -> str:
    digest = hashlib.sha384((STATIC / name).read_bytes()).digest()
    return "sha384-" + base64.b64encode(digest).decode("ascii")


def _subscribe_page(state: WebState, status_code: int = 200, **context: Any) -> Response:
    """The sign-up form, with what the browser filled in carried over on an answer."""
    context.setdefault("detected", "")
    return state.page(
        "subscribe.html",
        status_code,
        script_url=static_url(state.settings, ZONE_SCRIPT),
        script_integrity=_integrity(ZONE_SCRIPT),
        **context,
    )


def subscribe_form(request: Request) -> Response:
    return _subscribe_page(
        web_state(request), private=False, email="", name="", timezone="", error=""
    )


MAX_ZONE_LENGTH = 100


def signup_zone(typed: str, detected: str) -> str:
    """The sign-up's time zone: an IANA name, or "" (the newsletter's). A zone the reader
    typed that we do not know is their mistake to fix (ValueError naming it); one the
    browser filled in (`detected`, the hidden field the script sets to the same value) is
    dropped instead: the reader did not choose it, and this server's zone list may be older
    than their browser's."""
    try:
        return zone_name(typed)
    except ValueError:
        if detected.strip() and typed.strip() == detected.strip():
            log.info("sign-up: the browser's time zone %r is unknown here: ignored", typed[:64])
            return ""
        raise


async def subscribe_submit(request: Request) -> Response:
    state = web_state(request)
    try:
        fields = await read_form(request)
    except BodyTooLarge:
        return _subscribe_page(
            state, 413, email="", name="", timezone="", error="The form is too long."
        )
    except ValueError:
        fields = {}
    email = fields.get("email", "")[:MAX_EMAIL_LENGTH]
    name = fields.get("name", "")[:MAX_NAME_LENGTH]
    typed_zone = fields.get("timezone", "")[:MAX_ZONE_LENGTH]
    detected = fields.get("timezone_detected", "")[:MAX_ZONE_LENGTH]
    again: dict[str, Any] = {
        "email": email,
        "name": name,
        "timezone": typed_zone,
        "detected": detected,
    }
    try:
        address = normalize_address(email)
    except EmailNotValidError as exc:
        message = str(exc) if email.strip() else "Enter your email address."
        return _subscribe_page(state, 400, **again, error=message)
    try:
        zone = signup_zone(typed_zone, detected)
    except ValueError as exc:
        return _subscribe_page(state, 400, **again, error="", zone_error=str(exc))
    client = request.client.host if request.client else None
    verdict = await run_in_threadpool(state.limits.allow_signup, client)
    if not verdict.allowed:
        log.warning("sign-up refused: %s", verdict.reason)
        response = _subscribe_page(
            state,
            429,
            **again,
            error="Too many sign-ups from your network. Please try again in an hour.",
        )
        response.headers["Retry-After"] = "3600"
        return response
    pending = await run_in_threadpool(sign_up, state, address, name, zone)
    task = BackgroundTask(_send_confirmation, state, pending) if pending else None
    # The same answer whether the address is new, pending, subscribed, has left the list or
    # has had its share of confirmation emails, so the form cannot be used to find out who
    # reads the newsletter.
    return state.page("subscribe_sent.html", background=task)


def sign_up(state: WebState, address: str, name: str, timezone: str = "") -> Subscriber | None:
    """Record a pending subscriber; return the row to send a confirmation to, if any.
    Known addresses are never changed: active ones stay, suppressed ones are not resubscribed.
    Expired sign-ups are deleted first, so a stale pending row never blocks a new one."""
    store = state.store
    state.limits.purge()
    existing = store.subscribers.by_email(address)
    if existing is None:
        try:
            existing = add_subscriber(
                store, address, name, status=SubscriberStatus.UNCONFIRMED, timezone=timezone
            )
        except Duplicate:
            # Lost a race with a simultaneous sign-up of the same address (unique key).
            existing = store.subscribers.by_email(address)
            if existing is None:
                raise
    if existing.status != SubscriberStatus.UNCONFIRMED:
        return None
    verdict = state.limits.allow_confirmation(existing.email)
    if not verdict.allowed:
        log.warning(
            "sign-up confirmation for subscriber %s not sent: %s", existing.id, verdict.reason
        )
        return None
    return existing


def _send_confirmation(state: WebState, subscriber: Subscriber) -> None:
    """Runs after the answer is sent: a slow provider never delays (or reveals) anything."""
    try:
        send_confirmation(state.settings, subscriber)
    except NewsletterError as exc:
        log.error("sign-up confirmation for subscriber %s not sent: %s", subscriber.id, exc)
    except Exception:
        log.exception("sign-up confirmation for subscriber %s not sent", subscriber.id)


async def read_form(request: Request) -> dict[str, str]:
    """Fields of an application/x-www-form-urlencoded body (what a plain HTML form sends)."""
    body = await read_body(request, BODY_LIMIT_FORM)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("", "application/x-www-form-urlencoded"):
        raise ValueError(f"unsupported form encoding {content_type!r}")
    pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


# -- tokens ------------------------------------------------------------------------------------
def subscriber_for_token(state: WebState, token: str) -> Subscriber | None:
    """The subscriber a link belongs to, or None for any bad token. The signature is checked
    in constant time first, so forged tokens never reach the database."""
    # verify_token raises TypeError on non-ASCII input (hmac.compare_digest): no real token
    # is anything but ASCII, so such input is simply a bad token.
    if not token.isascii() or not verify_token(state.token_secret, token):
        return None
    return state.store.subscribers.by_token(token)


def invalid_link(state: WebState) -> Response:
    return state.page("invalid_link.html", 400)


# -- confirmation ------------------------------------------------------------------------------
def confirm_page(request: Request) -> Response:
    state = web_state(request)
    subscriber = subscriber_for_token(state, request.path_params["token"])
    if subscriber is None:
        return invalid_link(state)
    if subscriber.status == SubscriberStatus.UNCONFIRMED:
        return state.page("confirm.html")
    return state.page("confirmed.html", left=subscriber.status in SUPPRESSED)


def confirm_submit(request: Request) -> Response:
    state = web_state(request)
    subscriber = subscriber_for_token(state, request.path_params["token"])
    if subscriber is None:
        return invalid_link(state)
    task = None
    if subscriber.status == SubscriberStatus.UNCONFIRMED:
        if confirm_subscriber(state.store, subscriber.id) and state.settings.welcome.enabled:
            task = BackgroundTask(_send_welcome, state, subscriber.id)
        subscriber = state.store.subscribers.by_token(request.path_params["token"]) or subscriber
    return state.page(
        "confirmed.html", left=subscriber.status != SubscriberStatus.ACTIVE, background=task
    )


def _send_welcome(state: WebState, subscriber_id: int) -> None:
    """After the answer, like the confirmation; sent at most once (newsletter.welcome)."""
    try:
        welcome_new_reader(state.settings, state.store, subscriber_id)
    except NewsletterError as exc:
        log.error("welcome email for subscriber %s not sent: %s", subscriber_id, exc)
    except Exception:
        log.exception("welcome email for subscriber %s not sent", subscriber_id)


# -- unsubscribe -------------------------------------------------------------------------------
def unsubscribe_page(request: Request) -> Response:
    state = web_state(request)
    if subscriber_for_token(state, request.path_params["token"]) is None:
        return invalid_link(state)
    return state.page("unsubscribe.html")


async def unsubscribe_submit(request: Request) -> Response:
    """RFC 8058 one-click: the POST itself is the decision. No cookie, no redirect, no form
    field required (mail providers send `List-Unsubscribe=One-Click`, people press a button),
    and a second POST answers the same 200.

    The page it answers with offers two optional forms, posted back here: the one question
    (`reason`, with `detail` for "other"), which keeps the unsubscribe, and `action=pause`,
    which takes it back for a pause of four weeks. Any other body is simply a one-click."""
    state = web_state(request)
    token = request.path_params["token"]
    subscriber = await run_in_threadpool(subscriber_for_token, state, token)
    if subscriber is None:
        return invalid_link(state)
    try:
        fields = await read_form(request)
    except (BodyTooLarge, ValueError, UnicodeDecodeError):
        fields = {}  # whatever a mail provider posts, the unsubscribe happens
    if fields.get("action") == "pause":
        return await run_in_threadpool(_pause, state, subscriber)
    # Never turns a bounce or a complaint into a mere unsubscribe.
    await run_in_threadpool(unsubscribe_subscriber, state.store, subscriber.email)
    answered = await run_in_threadpool(
        record_unsubscribe_reason,
        state.store,
        subscriber.id,
        fields.get("reason", ""),
        fields.get("detail", ""),
    )
    return state.page("unsubscribed.html", answered=answered, reasons=REASON_LABELS)


def _pause(state: WebState, subscriber: Subscriber) -> Response:
    until = pause_subscriber(state.store, subscriber.id)
    if until is None:
        # Bounced or complained meanwhile: nothing to pause, and the answer says so.
        return state.page("unsubscribed.html", answered=False, reasons=REASON_LABELS)
    shown = until.astimezone(state.settings.timezone)
    return state.page("paused.html", until=f"{shown:%A %-d %B %Y}")
