"""SendGrid's signed Event Webhook: check what costs nothing first, then apply a POST whole.

In order, each step refusing before the next costs anything:
1. the headers: a signature that decodes to an ECDSA signature and a timestamp within five
   minutes (a captured request cannot be replayed later); a declared body over the cap gets
   413. No byte of the body has been read yet.
2. the body, streamed into one buffer under a cap (413 the moment it is passed), by at most
   `BODY_SLOTS` requests at a time, each within `BODY_SECONDS`. Anyone can send headers
   that look right, so this is what bounds memory: the slots times the cap, whatever the
   number of connections (the others wait, unread, behind TCP flow control).
3. the signature (ECDSA P-256 over timestamp + raw body) against SendGrid's key, loaded with
   SendGrid's own helper; the SHA-256 is computed as the body streams in.
4. the events: any malformed value (not JSON, nesting past the parser's depth, a wrong type,
   an id out of range) refuses the whole POST with 400 before anything is applied.
5. one transaction for the whole POST (`store.events.apply`): each `sg_event_id` is
   recorded once, and only the events seen for the first time act, so SendGrid's redeliveries
   (for 24 hours, and sometimes while the first delivery is still being applied) change
   nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from sendgrid.helpers.eventwebhook import EventWebhook
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from newsletter.exceptions import BodyTooLarge, ConfigError, MalformedEvents, StoreError
from newsletter.records import SubscriberStatus, WebhookEvent, WebhookOutcome
from newsletter.store import Store
from newsletter.store.events import EVENT_ID_MAX

log = logging.getLogger(__name__)

BOUNCED, COMPLAINED = SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED

PUBLIC_KEY_ENV = "SENDGRID_WEBHOOK_PUBLIC_KEY"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_SKEW_SECONDS = 300

# SendGrid posts a batch "within approximately 30 seconds or when the batch size reaches 768
# kilobytes" (its Event Webhook documentation): 4 MiB is five times that, room for a batch
# that overshoots and for the format to grow, and still small enough that the slots below
# bound the memory the webhook can be made to hold to 32 MiB.
BODY_LIMIT = 4 * 1024 * 1024
BODY_SLOTS = 8
SLOT_WAIT_SECONDS = 10  # a POST that finds every slot taken this long gets 503; SendGrid retries
BODY_SECONDS = 30  # a body trickled slower than this holds a slot no longer
# A DER-encoded P-256 ECDSA signature is at most 72 bytes; base64 of that is 96 characters.
SIGNATURE_MAX_BYTES = 72
ID_MAX = 2**31 - 1  # issue and subscriber ids are INTEGER columns

# Events that take an address off the list, and the status it gets.
SUPPRESSING = {
    "bounce": BOUNCED,
    "dropped": BOUNCED,
    "spamreport": COMPLAINED,
    "unsubscribe": UNSUBSCRIBED,
    "group_unsubscribe": UNSUBSCRIBED,
}
# SendGrid drops messages to addresses already on its own suppression lists; the reason says
# which list, so the subscriber gets the matching status rather than a blanket "bounced".
DROPPED_REASONS = {
    "spam reporting address": COMPLAINED,
    "unsubscribed address": UNSUBSCRIBED,
    "group unsubscribe": UNSUBSCRIBED,
}
CONFIRMING = ("processed", "delivered")
ENGAGEMENT = ("open", "click")
# Apple Mail Privacy Protection fetches every message's images through Apple's proxy, whose
# user agent is this bare string (a person's Mail app sends a full one): such an open is the
# proxy's, not the reader's. SendGrid marks the opens it recognises as machine opens itself
# (`sg_machine_open`); this catches the proxy's where the flag is absent.
APPLE_PROXY_USER_AGENTS = frozenset({"Mozilla/5.0"})
MACHINE_OPEN = "machine_open"


def is_machine_open(event: dict) -> bool:
    """An open a machine made: SendGrid says so, or the user agent is Apple's proxy."""
    if event.get("sg_machine_open") in (True, "true", 1):
        return True
    agent = event.get("useragent")
    return isinstance(agent, str) and agent.strip() in APPLE_PROXY_USER_AGENTS


EMAIL_MAX = 320  # longer cannot be a subscriber's address (the email_key column)


class WebhookVerifier:
    """SendGrid's key, loaded with the official helper; any oddity means 'not signed'."""

    def __init__(self, public_key_base64: str) -> None:
        key = "".join(public_key_base64.split())
        try:
            helper = EventWebhook(key)
        except Exception:
            raise ConfigError(
                f"{PUBLIC_KEY_ENV} is not a public key: paste the base64 verification key "
                "SendGrid shows under Mail Settings > Signed Event Webhook"
            ) from None
        if not isinstance(helper.public_key, ec.EllipticCurvePublicKey) or not isinstance(
            helper.public_key.curve, ec.SECP256R1
        ):
            raise ConfigError(f"{PUBLIC_KEY_ENV} must be an ECDSA P-256 public key")
        self._key: ec.EllipticCurvePublicKey = helper.public_key

    @staticmethod
    def check_headers(signature: str, timestamp: str, now: float | None = None) -> bytes | None:
        """The decoded signature if the headers could belong to a fresh SendGrid post; None
        otherwise. Nothing here depends on the body, so it runs before any of it is read."""
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            return None
        now = time.time() if now is None else now
        if abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
            return None
        if not signature.isascii() or len(signature) > 4 * ((SIGNATURE_MAX_BYTES + 2) // 3):
            return None
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return None
        return raw if 8 <= len(raw) <= SIGNATURE_MAX_BYTES else None

    def verify_digest(self, signature: bytes, digest: bytes) -> bool:
        """`digest` is SHA-256 of timestamp + body, as SendGrid signs it."""
        try:
            self._key.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        except (InvalidSignature, ValueError):  # ValueError: not DER at all
            return False
        return True

    def verify(self, body: bytes, signature: str, timestamp: str, now: float | None = None) -> bool:
        """Headers and body at once (for callers that already hold the whole body)."""
        raw = self.check_headers(signature, timestamp, now)
        if raw is None:
            return False
        digest = hashlib.sha256(timestamp.encode() + body).digest()
        return self.verify_digest(raw, digest)


@dataclass(frozen=True)
class EventSummary:
    """What one POST did: the store's outcome, and the events we do not act on."""

    outcome: WebhookOutcome
    ignored: int = 0

    @property
    def worth_logging(self) -> bool:
        o = self.outcome
        return bool(o.suppressed or o.confirmed or o.duplicates or self.ignored)

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self.outcome), "ignored": self.ignored}


@dataclass(frozen=True)
class ParsedBatch:
    events: list[WebhookEvent]
    ignored: int  # events of no interest to us (deferrals, mail sent by other tools ...)


def _text(value: object, n: int, field: str) -> str | None:
    """A string we will store or compare, or None when absent; 400 for any other type and
    for text no database takes (NUL, lone surrogates from \\ud800-style escapes)."""
    if value is None:
        return None
    if type(value) is str and value.isascii() and "\x00" not in value:
        return value  # SendGrid's own: ASCII, so no surrogates either
    if not isinstance(value, str):
        raise MalformedEvents(f"event {n}: {field} is not a string")
    if "\x00" in value:
        raise MalformedEvents(f"event {n}: {field} contains NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedEvents(f"event {n}: {field} is not valid Unicode") from None
    return value


def _timestamp(value: object, n: int) -> int:
    """When the event happened (SendGrid's unix seconds), or 0 when it is absent."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**40:
        return value
    raise MalformedEvents(f"event {n}: timestamp is not a unix time in seconds")


def _id(value: object, n: int, field: str) -> int | None:
    """One of our ids, which SendGrid hands back as custom args (strings); None if absent."""
    if value is None:
        return None
    if type(value) is str and value.isdigit() and len(value) <= 10 and value.isascii():
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise MalformedEvents(f"event {n}: {field} is not a positive integer")
    if not 1 <= number <= ID_MAX:
        raise MalformedEvents(f"event {n}: {field} is out of range")
    return number


def suppression_status(event: dict) -> str | None:
    kind = event.get("event")
    status = SUPPRESSING.get(kind) if isinstance(kind, str) else None
    if status is None:
        return None
    if kind == "bounce" and event.get("type") == "blocked":
        # A block is the receiving server refusing our IP or content for now, not the address
        # being dead: SendGrid itself does not suppress it, and neither do we.
        return None
    if kind == "dropped":
        reason = event.get("reason")
        reason = reason.strip().lower() if isinstance(reason, str) else ""
        return DROPPED_REASONS.get(reason, BOUNCED)
    return status


def parse_events(body: str | bytes) -> ParsedBatch:
    """The verified body as typed events; MalformedEvents for anything SendGrid would not
    post. Everything is checked before anything is applied."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise MalformedEvents("the JSON is nested too deeply") from None
    except ValueError as exc:  # includes UnicodeDecodeError and over-long integer literals
        raise MalformedEvents(f"the body is not JSON ({exc})") from None
    if not isinstance(data, list):
        raise MalformedEvents("the body is not a JSON array of events")
    events: list[WebhookEvent] = []
    ignored = 0
    append = events.append
    for n, event in enumerate(data):
        if type(event) is not dict:
            raise MalformedEvents(f"event {n} is not an object")
        kind = event.get("event")
        if type(kind) is not str:
            raise MalformedEvents(f"event {n}: event is not a string")
        event_id = _text(event.get("sg_event_id"), n, "sg_event_id")
        if event_id is not None and not 0 < len(event_id) <= EVENT_ID_MAX:
            raise MalformedEvents(f"event {n}: sg_event_id is empty or over {EVENT_ID_MAX} long")
        if kind in CONFIRMING or kind in ENGAGEMENT:
            issue_id = _id(event.get("issue_id"), n, "issue_id")
            subscriber_id = _id(event.get("subscriber_id"), n, "subscriber_id")
            if kind in CONFIRMING and issue_id and subscriber_id:
                append(WebhookEvent("confirm", event_id, "", "", issue_id, subscriber_id))
            elif kind in ENGAGEMENT and issue_id and event_id:
                # Counted only with an id: without one a redelivery would count again.
                at = _timestamp(event.get("timestamp"), n)
                if kind == "open" and is_machine_open(event):
                    kind = MACHINE_OPEN
                append(WebhookEvent(kind, event_id, "", "", issue_id, subscriber_id or 0, at))
            else:
                ignored += 1  # not one of ours (no custom args), or no id to count it once
        elif kind in SUPPRESSING:
            email = _text(event.get("email"), n, "email")
            status = suppression_status(event)
            key = email.strip().lower() if email else ""
            if status is None or not key or len(key) > EMAIL_MAX:
                ignored += 1
                continue
            append(WebhookEvent("suppress", event_id, key, status))
        else:
            ignored += 1
    return ParsedBatch(events, ignored)


def apply_events(store: Store, body: str | bytes) -> EventSummary:
    """Parse a verified body and apply it in one transaction (MalformedEvents: nothing)."""
    batch = parse_events(body)
    outcome = store.events.apply(batch.events) if batch.events else WebhookOutcome()
    return EventSummary(outcome, batch.ignored)


class SendGridWebhook:
    """POST /webhooks/sendgrid. At most `slots` bodies are held at once, each of at most
    `limit` bytes: that, not the number of connections, bounds the memory it uses."""

    def __init__(
        self,
        store: Store,
        verifier: WebhookVerifier | None,
        *,
        limit: int = BODY_LIMIT,
        slots: int = BODY_SLOTS,
        slot_wait: float = SLOT_WAIT_SECONDS,
        body_seconds: float = BODY_SECONDS,
    ) -> None:
        self.store = store
        self.verifier = verifier
        self.limit = limit
        self.slot_wait = slot_wait
        self.body_seconds = body_seconds
        self._slots = asyncio.Semaphore(slots)

    async def endpoint(self, request: Request) -> Response:
        signature = request.headers.get(SIGNATURE_HEADER, "")
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        if not signature or not timestamp:
            return _plain("missing signature headers", 401)
        if self.verifier is None:
            log.error(
                "SendGrid event refused: %s is not set, so no signature can be checked",
                PUBLIC_KEY_ENV,
            )
            return _plain("event webhook not configured", 503)
        raw_signature = self.verifier.check_headers(signature, timestamp)
        if raw_signature is None:
            return _plain("bad or stale signature", 403)
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.limit:
            return _plain("payload too large", 413)
        try:
            async with asyncio.timeout(self.slot_wait):
                await self._slots.acquire()
        except TimeoutError:
            log.warning("SendGrid event POST turned away: every body slot is busy")
            return _plain("busy, try again", 503, {"Retry-After": "30"})
        try:
            try:
                async with asyncio.timeout(self.body_seconds):
                    body, digest = await self._read(request, timestamp)
            except BodyTooLarge:
                return _plain("payload too large", 413)
            except TimeoutError:
                return _plain("body too slow", 408)
            except ClientDisconnect:
                return _plain("incomplete body", 400)
            return await run_in_threadpool(self._process, body, raw_signature, digest)
        finally:
            self._slots.release()

    async def _read(self, request: Request, timestamp: str) -> tuple[bytearray, bytes]:
        """The body in one buffer, hashed as it arrives; BodyTooLarge past the cap."""
        body = bytearray()
        hasher = hashlib.sha256(timestamp.encode())
        async for chunk in request.stream():
            if len(body) + len(chunk) > self.limit:
                raise BodyTooLarge
            body += chunk
            hasher.update(chunk)
        return body, hasher.digest()

    def _process(self, body: bytearray, signature: bytes, digest: bytes) -> Response:
        assert self.verifier is not None
        if not self.verifier.verify_digest(signature, digest):
            return _plain("bad or stale signature", 403)
        try:
            text = body.decode("utf-8")  # SendGrid signs UTF-8; anything else is not its post
        except UnicodeDecodeError:
            return _plain("bad or stale signature", 403)
        try:
            summary = apply_events(self.store, text)
        except MalformedEvents as exc:
            log.warning("SendGrid event POST refused, nothing applied: %s", exc)
            return _plain(f"malformed events, nothing applied: {exc}", 400)
        except StoreError as exc:
            log.error("SendGrid event POST not applied (SendGrid will retry): %s", exc)
            return _plain("events not applied, try again", 503, {"Retry-After": "60"})
        if summary.worth_logging:
            log.info("SendGrid events: %s", summary.as_dict())
        return JSONResponse(summary.as_dict())


def _plain(text: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(text + "\n", status_code=status, headers=headers)
