"""The embedded default provider: one RFC 5322 .eml file per recipient under `outbox/`.

It needs no account, and what it writes is exactly what a mail server would receive, so an
editor (or a test) can open the files in any mail client or parse them with `email`.

Each message comes from the issue's MIME laid out once (`_mime.MessageTemplate`, shared with
the SMTP provider); the files are written by `_outbox_files` (temporary file, one flush per
batch, then moved into place). An address that cannot be written at all is rejected for that
recipient alone (`Accepted.rejected`), so one subscriber never stalls a send.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from newsletter.exceptions import Rejected, TransientError, UnwritableAddress
from newsletter.providers import Accepted, Message, OutgoingBatch
from newsletter.providers._mime import MessageTemplate, issue_template, to_header
from newsletter.providers._outbox_files import (
    FILE_MODE,
    FOLDER_MODE,
    dead_writer,
    discard,
    durable,
    open_folder,
    write_file,
)
from newsletter.settings import Settings

# The MIME template's names stay importable from here (the SMTP provider and tests use them).
__all__ = [
    "FILE_MODE",
    "FOLDER_MODE",
    "MessageTemplate",
    "OutboxProvider",
    "UnwritableAddress",
    "issue_template",
    "to_header",
]


class OutboxProvider:
    name = "outbox"
    max_batch = 1000

    def __init__(
        self,
        settings: Settings,
        path: Path | None = None,
        *,
        sign: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.settings = settings
        self.path = path or settings.outbox_path
        self._sign = sign  # [dkim]: the DKIM-Signature header line for a message
        self._template: tuple[tuple[int, str], MessageTemplate] | None = None

    def _issue_template(self, batch: OutgoingBatch) -> MessageTemplate:
        key = (batch.issue_id, batch.rendered.placeholder_nonce)
        if self._template is None or self._template[0] != key:
            self._template = (key, issue_template(self.settings, batch.rendered, batch.issue_id))
        return self._template[1]

    def send(self, batch: OutgoingBatch) -> Accepted:
        folder = self.path / f"issue-{batch.issue_id}"
        template = self._issue_template(batch)
        rendered = batch.rendered
        ids: dict[int, str] = {}
        rejected: dict[int, str] = {}
        written: list[tuple[str, str]] = []
        suffix = f".{os.getpid()}.tmp"
        message_ids = template.message_ids(len(batch.recipients))
        batch.ready()  # the last check for a stop before anything is written
        dir_fd = None
        try:
            dir_fd = open_folder(folder)
            for recipient, unsubscribe, message_id in zip(
                batch.recipients, batch.unsubscribe_urls, message_ids, strict=True
            ):
                try:
                    pieces = template.for_recipient(rendered, recipient, unsubscribe, message_id)
                except UnwritableAddress as exc:
                    rejected[recipient.subscriber_id] = f"{recipient.email!r}: {exc}"
                    continue
                if self._sign is not None:
                    pieces = [self._sign(b"".join(pieces)), *pieces]
                name = f"{recipient.subscriber_id:08d}.eml"
                temporary = f".{name}{suffix}"
                write_file(dir_fd, temporary, pieces)
                written.append((temporary, name))
                ids[recipient.subscriber_id] = message_id
            durable(dir_fd, written)
        except OSError as exc:
            discard(dir_fd, written)
            raise TransientError(f"cannot write to the outbox {folder}: {exc.strerror}") from exc
        except BaseException:
            discard(dir_fd, written)
            raise
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        return Accepted(ids, rejected=rejected)

    def settle_uncertain(self, issue_id: int, subscriber_ids: Iterable[int]) -> dict[int, bool]:
        """Whether each subscriber's file of this issue exists: files are moved into place
        only once complete, so one that exists was delivered and one missing was not.
        Temporary files a killed sender left behind are removed."""
        folder = self.path / f"issue-{issue_id}"
        try:
            names = set(os.listdir(folder))
        except FileNotFoundError:
            names = set()
        for name in names:
            if name.startswith(".") and name.endswith(".tmp") and dead_writer(name):
                (folder / name).unlink(missing_ok=True)
        return {sid: f"{sid:08d}.eml" in names for sid in subscriber_ids}

    def send_message(self, message: Message) -> str:
        folder = self.path / message.category
        template = MessageTemplate(
            self.settings,
            message.subject,
            message.text,
            message.html,
            list_unsubscribe=bool(message.unsubscribe_url),
        )
        try:
            to_line = to_header(message.to_email, message.to_name)
        except UnwritableAddress as exc:
            raise Rejected(f"cannot write to {message.to_email!r}: {exc}") from exc
        message_id = template.message_id()
        pieces = template.fill(to_line, message_id, {}, message.unsubscribe_url or None)
        target = f"{message.key}.eml"
        written = [(f".{target}.{os.getpid()}.tmp", target)]
        dir_fd = None
        try:
            dir_fd = open_folder(folder)
            write_file(dir_fd, written[0][0], pieces)
            durable(dir_fd, written)
        except OSError as exc:
            discard(dir_fd, written)
            raise TransientError(f"cannot write to the outbox {folder}: {exc.strerror}") from exc
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        return message_id
