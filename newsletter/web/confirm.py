"""The double opt-in email: one transactional message with the signed confirmation link,
sent through the configured provider (the outbox writes it under `outbox/confirmations/`)."""

from __future__ import annotations

from pathlib import Path

from newsletter.links import confirm_url
from newsletter.providers import Message, make_provider
from newsletter.records import Subscriber
from newsletter.settings import Settings
from newsletter.web.templating import render

CATEGORY = "confirmations"


def build_confirmation(settings: Settings, subscriber: Subscriber) -> Message:
    """The confirmation email for one pending subscriber, with their signed link. Nothing the
    visitor typed appears in it (not the name, not even in the To: header): the form must not
    let anyone send their own words to someone else's inbox."""
    url = confirm_url(settings, subscriber.token)
    return Message(
        to_email=subscriber.email,
        to_name="",
        subject=f"Confirm your subscription to {settings.name}",
        text=render(settings, "email/confirm.txt", url=url),
        html=render(settings, "email/confirm.html", url=url),
        category=CATEGORY,
        key=str(subscriber.id),
    )


def confirmation_path(settings: Settings, subscriber_id: int) -> Path:
    """Where the outbox provider writes a subscriber's confirmation email."""
    return settings.outbox_path / CATEGORY / f"{subscriber_id}.eml"


def send_confirmation(settings: Settings, subscriber: Subscriber) -> str:
    """Send the confirmation email through the configured provider; returns its message id.
    Raises NewsletterError (a ProviderError) when the provider cannot send it."""
    return make_provider(settings).send_message(build_confirmation(settings, subscriber))
