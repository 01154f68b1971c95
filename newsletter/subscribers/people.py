"""One subscriber at a time: added (sign-up, tests), confirmed, listed, unsubscribed (the
one-click link, the workspace) with the reason they gave, paused instead, removed; sign-ups
never confirmed expire; the address's mailbox for sign-up limits and the name as it may go
into a header."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from newsletter.addresses import EmailNotValidError, normalize_address
from newsletter.exceptions import NewsletterError
from newsletter.readertime import zone_name
from newsletter.records import (
    PAUSE_LENGTH,
    Subscriber,
    SubscriberStatus,
    UnsubscribeReason,
    utcnow,
)
from newsletter.render import header_safe
from newsletter.store import Store
from newsletter.subscribers.keys import signing_secret
from newsletter.tokens import new_token

log = logging.getLogger(__name__)

# Sign-ups never confirmed within this long are deleted (`expire_unconfirmed`).
UNCONFIRMED_EXPIRE_AFTER = timedelta(hours=48)
# The reader's own words with the reason `other`, whitespace folded, at most this long.
MAX_DETAIL_LENGTH = 500


def mailbox_key(address: str) -> str:
    """The mailbox an address delivers to, for sign-up limits: case and plus-addressing folded,
    so victim+1@example.com and Victim@example.com count as one mailbox."""
    local, _, domain = address.strip().lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def clean_name(raw: str | None) -> str:
    """Names go into headers: no CR/LF or control characters, bounded length."""
    return header_safe(raw or "", 200)


def add_subscriber(
    store: Store,
    email: str,
    name: str = "",
    status: str = SubscriberStatus.ACTIVE,
    timezone: str = "",
) -> Subscriber:
    """Add one subscriber (used by sign-up and tests); returns the stored row. `timezone`
    must be an IANA name (or "": the newsletter's), as `readertime.zone_name` holds it."""
    try:
        address = normalize_address(email)
    except EmailNotValidError as exc:
        raise NewsletterError(f"{email!r} is not a valid address: {exc}") from None
    try:
        zone = zone_name(timezone)
    except ValueError as exc:
        raise NewsletterError(str(exc)) from None
    existing = store.subscribers.by_email(address)
    if existing is not None:
        return existing
    store.subscribers.add(
        [
            {
                "email": address,
                "name": clean_name(name),
                "status": status,
                "token": new_token(signing_secret(store)),
                "timezone": zone,
            }
        ]
    )
    added = store.subscribers.by_email(address)
    if added is None:  # removed again by someone else at that very moment
        raise NewsletterError(f"{address} could not be added; try again")
    return added


def list_subscribers(store: Store, status: str | None = None) -> Iterator[Subscriber]:
    """Every subscriber in id order (of one status if given), streamed: a list of a million
    rows is never held at once."""
    return store.subscribers.each(status)


def remove_subscriber(store: Store, email: str) -> None:
    """Delete a subscriber and their delivery history (a removal, not an unsubscribe)."""
    store.subscribers.remove(email)


def unsubscribe_subscriber(store: Store, email: str) -> bool:
    """Unsubscribe an address (the one-click link, the workspace's button). A bounce or a
    complaint is never softened into an unsubscribe; False when nothing changed."""
    return store.subscribers.suppress(email, SubscriberStatus.UNSUBSCRIBED)


def confirm_subscriber(store: Store, subscriber_id: int) -> bool:
    """Activate a pending sign-up (its confirmation link). Never reactivates an address that
    unsubscribed, bounced or complained, even a moment before; False when nothing changed."""
    return store.subscribers.confirm(subscriber_id)


def pause_subscriber(store: Store, subscriber_id: int) -> datetime | None:
    """A pause of PAUSE_LENGTH instead of leaving: active again if they had just unsubscribed,
    skipped by every claim until it ends. Returns when it ends, or None when there is nothing
    to pause (a bounce or a complaint is never undone)."""
    until = utcnow() + PAUSE_LENGTH
    return until if store.subscribers.pause(subscriber_id, until) else None


def record_unsubscribe_reason(
    store: Store, subscriber_id: int, reason: str, detail: str = ""
) -> bool:
    """Keep a reader's answer to the one question after unsubscribing (a second replaces the
    first). Only a reason we offer is stored (False otherwise); `detail` travels with `other`
    only, whitespace folded and at most MAX_DETAIL_LENGTH characters."""
    if reason not in tuple(UnsubscribeReason):
        return False
    words = " ".join(detail.split())[:MAX_DETAIL_LENGTH]
    if reason != UnsubscribeReason.OTHER:
        words = ""
    store.subscribers.record_reason(subscriber_id, reason, words)
    return True


def expire_unconfirmed(store: Store, expire_after: timedelta = UNCONFIRMED_EXPIRE_AFTER) -> int:
    """Delete the sign-ups never confirmed within `expire_after`, so a stale pending row never
    blocks a new sign-up of the address; returns how many were deleted."""
    deleted = store.subscribers.purge_unconfirmed(utcnow() - expire_after)
    if deleted:
        log.info("deleted %d sign-ups not confirmed within %s", deleted, expire_after)
    return deleted
