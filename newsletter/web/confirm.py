"""The double opt-in email: one transactional message with the signed confirmation link.

The outbox provider writes it as a complete .eml under `outbox/confirmations/`, built the same
way as an issue's messages; other providers do not have a transactional path yet.
"""

from __future__ import annotations

import os
import uuid
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from pathlib import Path

from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.render import header_safe
from newsletter.web.templating import render


def confirm_url(settings: Settings, token: str) -> str:
    return f"{settings.base_url}/confirm/{token}"


def build_confirmation(settings: Settings, subscriber: dict) -> EmailMessage:
    """The complete confirmation email for one pending subscriber: text part, then HTML."""
    url = confirm_url(settings, subscriber["token"])
    name = header_safe(subscriber.get("name") or "", 200)
    domain = settings.from_email.rpartition("@")[2] or "localhost"
    msg = EmailMessage(policy=SMTP)
    msg["From"] = Address(
        display_name=header_safe(settings.from_name), addr_spec=settings.from_email
    )
    msg["To"] = Address(display_name=name, addr_spec=subscriber["email"])
    msg["Subject"] = header_safe(f"Confirm your subscription to {settings.name}")
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@{domain}>"
    msg.set_content(
        render(settings, "email/confirm.txt", name=name, url=url), subtype="plain", charset="utf-8"
    )
    msg.add_alternative(
        render(settings, "email/confirm.html", name=name, url=url), subtype="html", charset="utf-8"
    )
    return msg


def confirmation_path(settings: Settings, subscriber_id: int) -> Path:
    return settings.outbox_path / "confirmations" / f"{subscriber_id}.eml"


def send_confirmation(settings: Settings, subscriber: dict) -> Path:
    """Send the confirmation email through the configured provider; returns where the outbox
    wrote it. Raises NewsletterError when the provider cannot send it."""
    if settings.provider != "outbox":
        raise NewsletterError(
            f"sending the sign-up confirmation email through {settings.provider!r} is not "
            "implemented yet; use the outbox provider for sign-ups for now"
        )
    message = build_confirmation(settings, subscriber)
    target = confirmation_path(settings, subscriber["id"])
    temporary = target.with_suffix(".tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(message.as_bytes())
        os.replace(temporary, target)  # a reader never sees half a message
    except OSError as exc:
        raise NewsletterError(
            f"cannot write the confirmation email to {target}: {exc.strerror}"
        ) from exc
    return target
