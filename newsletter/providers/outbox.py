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
from newsletter.providers import Accepted, OutgoingBatch, TransientError
from newsletter.render import header_safe, personalize

# Long URL headers (List-Unsubscribe) stay on one line: folding them right after the colon
# trips some parsers. 998 is the hard limit of RFC 5322.
EMAIL_POLICY = SMTP.clone(max_line_length=998)


def build_message(
    settings: Settings, batch: OutgoingBatch, index: int, message_id: str
) -> EmailMessage:
    """The complete email for the `index`-th recipient of `batch`: text part, then HTML."""
    recipient = batch.recipients[index]
    unsubscribe = batch.unsubscribe_urls[index]
    body = personalize(batch.rendered, recipient.name, unsubscribe)
    msg = EmailMessage(policy=EMAIL_POLICY)
    msg["From"] = Address(
        display_name=header_safe(settings.from_name), addr_spec=settings.from_email
    )
    msg["To"] = Address(display_name=header_safe(recipient.name), addr_spec=recipient.email)
    msg["Subject"] = header_safe(batch.rendered.subject)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = message_id
    msg["List-Unsubscribe"] = f"<{unsubscribe}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Newsletter-Issue"] = str(batch.issue_id)
    msg.set_content(body.text, subtype="plain", charset="utf-8")
    msg.add_alternative(body.html, subtype="html", charset="utf-8")
    return msg


class OutboxProvider:
    name = "outbox"
    max_batch = 1000

    def __init__(self, settings: Settings, path: Path | None = None) -> None:
        self.settings = settings
        self.path = path or settings.outbox_path

    def send(self, batch: OutgoingBatch) -> Accepted:
        folder = self.path / f"issue-{batch.issue_id}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            ids: dict[int, str] = {}
            domain = self.settings.from_email.rpartition("@")[2] or "localhost"
            for index, recipient in enumerate(batch.recipients):
                message_id = f"<{uuid.uuid4().hex}@{domain}>"
                message = build_message(self.settings, batch, index, message_id)
                target = folder / f"{recipient.subscriber_id:08d}.eml"
                temporary = target.with_suffix(".tmp")
                temporary.write_bytes(message.as_bytes())
                os.replace(temporary, target)  # a reader never sees half a message
                ids[recipient.subscriber_id] = message_id
        except OSError as exc:
            raise TransientError(f"cannot write to the outbox {folder}: {exc.strerror}") from exc
        return Accepted(ids)
