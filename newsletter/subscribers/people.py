"""One subscriber at a time: added (sign-up, tests), listed, unsubscribed (the one-click link,
the workspace), removed; the address's mailbox for sign-up limits and the name as it may go
into a header."""

from __future__ import annotations

from collections.abc import Iterator

from newsletter.addresses import EmailNotValidError, normalize_address
from newsletter.exceptions import NewsletterError
from newsletter.readertime import zone_name
from newsletter.records import Subscriber, SubscriberStatus
from newsletter.render import header_safe
from newsletter.store import Store
from newsletter.subscribers.keys import signing_secret
from newsletter.tokens import new_token


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
