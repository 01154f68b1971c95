"""Reading the bounce mailbox: a Maildir or mbox path, or an IMAP mailbox (`imaplib`, the
password from `BOUNCES_PASSWORD`). Each yields `(key, email.message.Message)`; the key is
stable for the mailbox, and the caller records Message-IDs so each is handled once."""

from __future__ import annotations

import email
import email.policy
import imaplib
import mailbox
import os
import ssl
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from urllib.parse import unquote, urlsplit

from newsletter.addresses import LOOPBACK_HOSTS
from newsletter.exceptions import ConfigError

_POLICY = email.policy.compat32  # what flufl.bounce's detectors are written against


def _parse(data: bytes) -> Message:
    return email.message_from_bytes(data, policy=_POLICY)


def read_mailbox(source: str) -> Iterator[tuple[str, Message]]:
    """Every message of `source`: a Maildir folder, an mbox file, or
    `imaps://user@host[:port]/MAILBOX` (`imap://` only for 127.0.0.1)."""
    if source.startswith(("imap://", "imaps://")):
        yield from _imap(source)
        return
    path = Path(source).expanduser()
    if path.is_dir():
        if not all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            raise ConfigError(
                f"{path} is a folder but not a Maildir (it needs cur/, new/ and tmp/)"
            )
        box = mailbox.Maildir(path, factory=None, create=False)
        for key in box.iterkeys():
            with box.get_file(key) as handle:
                yield key, _parse(handle.read())
        return
    if path.is_file():
        with path.open("rb") as handle:
            head = handle.read(5)
        if head != b"From ":
            raise ConfigError(f"{path} is not an mbox file (it does not start with 'From ')")
        for index, message in enumerate(mailbox.mbox(path, create=False)):
            yield f"{index}", _parse(message.as_bytes())
        return
    raise ConfigError(f"{source}: no such Maildir, mbox file or IMAP address")


def _imap(source: str) -> Iterator[tuple[str, Message]]:
    url = urlsplit(source)
    host = url.hostname or ""
    if url.scheme == "imap" and host not in LOOPBACK_HOSTS:
        raise ConfigError(f"{source}: use imaps:// (imap:// sends the password in clear)")
    password = os.environ.get("BOUNCES_PASSWORD", "")
    if not password:
        raise ConfigError("reading an IMAP mailbox needs BOUNCES_PASSWORD in the environment")
    user = unquote(url.username or "")
    folder = unquote(url.path.lstrip("/")) or "INBOX"
    try:
        client: imaplib.IMAP4 = (
            imaplib.IMAP4_SSL(host, url.port or 993)
            if url.scheme == "imaps"
            else imaplib.IMAP4(host, url.port or 143)
        )
    except ssl.SSLCertVerificationError as exc:
        raise ConfigError(
            f"the IMAP server {host}'s certificate is not trusted ({exc.verify_message})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot reach the IMAP server {host}: {exc.strerror or exc}") from None
    try:
        try:
            client.login(user, password)
        except imaplib.IMAP4.error:
            raise ConfigError(
                f"the IMAP server {host} refused the login of {user!r}: check BOUNCES_PASSWORD"
            ) from None
        status, _ = client.select(folder, readonly=True)
        if status != "OK":
            raise ConfigError(f"the IMAP server {host} has no mailbox {folder!r}")
        _, data = client.uid("SEARCH", "ALL")
        for uid in (data[0] or b"").split():
            _, parts = client.uid("FETCH", uid.decode(), "(RFC822)")
            for part in parts:
                if isinstance(part, tuple):
                    yield uid.decode(), _parse(part[1])
    finally:
        try:
            client.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
