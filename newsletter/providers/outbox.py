"""The embedded default provider: one RFC 5322 .eml file per recipient under `outbox/`.

It needs no account, and what it writes is exactly what a mail server would receive, so an
editor (or a test) can open the files in any mail client or parse them with `email`.
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
from newsletter.exceptions import TransientError
from newsletter.providers import Accepted, Message, OutgoingBatch
from newsletter.render import header_safe, personalize

# Long URL headers (List-Unsubscribe) stay on one line: folding them right after the colon
# trips some parsers. 998 is the hard limit of RFC 5322.
EMAIL_POLICY = SMTP.clone(max_line_length=998)


def compose(
    settings: Settings,
    to_email: str,
    to_name: str,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    """A complete email: From, To, Subject, Date, Message-ID, text part then HTML part."""
    msg = EmailMessage(policy=EMAIL_POLICY)
    msg["From"] = Address(
        display_name=header_safe(settings.from_name), addr_spec=settings.from_email
    )
    msg["To"] = Address(display_name=header_safe(to_name), addr_spec=to_email)
    msg["Subject"] = header_safe(subject)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        msg[name] = header_safe(value)
    msg.set_content(text, subtype="plain", charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg


def build_message(
    settings: Settings, batch: OutgoingBatch, index: int, message_id: str
) -> EmailMessage:
    """The email for the `index`-th recipient of `batch`, with its one-click unsubscribe."""
    recipient = batch.recipients[index]
    unsubscribe = batch.unsubscribe_urls[index]
    body = personalize(batch.rendered, recipient.name, unsubscribe)
    return compose(
        settings,
        recipient.email,
        recipient.name,
        batch.rendered.subject,
        body.text,
        body.html,
        message_id,
        {
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Newsletter-Issue": str(batch.issue_id),
        },
    )


def _write_atomically(target: Path, data: bytes) -> None:
    temporary = target.with_suffix(".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, target)  # a reader never sees half a message


class OutboxProvider:
    name = "outbox"
    max_batch = 1000

    def __init__(self, settings: Settings, path: Path | None = None) -> None:
        self.settings = settings
        self.path = path or settings.outbox_path

    def _message_id(self) -> str:
        domain = self.settings.from_email.rpartition("@")[2] or "localhost"
        return f"<{uuid.uuid4().hex}@{domain}>"

    def send(self, batch: OutgoingBatch) -> Accepted:
        folder = self.path / f"issue-{batch.issue_id}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            ids: dict[int, str] = {}
            for index, recipient in enumerate(batch.recipients):
                message_id = self._message_id()
                message = build_message(self.settings, batch, index, message_id)
                _write_atomically(folder / f"{recipient.subscriber_id:08d}.eml", message.as_bytes())
                ids[recipient.subscriber_id] = message_id
        except OSError as exc:
            raise TransientError(f"cannot write to the outbox {folder}: {exc.strerror}") from exc
        return Accepted(ids)

    def send_message(self, message: Message) -> str:
        folder = self.path / message.category
        message_id = self._message_id()
        email = compose(
            self.settings,
            message.to_email,
            message.to_name,
            message.subject,
            message.text,
            message.html,
            message_id,
        )
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _write_atomically(folder / f"{message.key}.eml", email.as_bytes())
        except OSError as exc:
            raise TransientError(f"cannot write to the outbox {folder}: {exc.strerror}") from exc
        return message_id
