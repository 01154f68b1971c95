"""What an SMTP server's answer means for one recipient, and the envelope that names them.

    250 after DATA                      sent (the server's queue id as the message id)
    5xx at RCPT TO or after DATA        failed for good, with the server's text;
                                        5.1.x (no such user/domain) also bounces the reader
    4xx, refused connection, timeout    tried again with backoff, then `deferred`
      before DATA                       (back to pending: a later run sends them)
    421 / 454                           reconnect, slow down, try again
    connection lost after the message   `uncertain`: the server may have taken it
      was sent, before the reply
    535 (login refused)                 `CredentialsRefused` (smtp_connections): the send stops

The envelope sender is a VERP address per issue and reader (`[smtp] bounce_address`
"bounces@example.com" -> "bounces+<issue>-<token id>@example.com"), so a bounce names both
without guessing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from newsletter.providers import Accepted

RECONNECT_CODES = (421, 454)


def verp_address(bounce_address: str, issue_id: int, token: str) -> str:
    """bounces@example.com -> bounces+<issue>-<token id>@example.com (the token's random
    part: unguessable, so a forged bounce names nobody)."""
    local, _, domain = bounce_address.rpartition("@")
    token_id = token.partition(".")[0]
    return f"{local}+{issue_id}-{token_id}@{domain}"


def queue_id(reply: bytes) -> str | None:
    """The server's queue id from a 250 reply ("Ok: queued as 4Xb2Q0"), when it gives one."""
    text = reply.decode("utf-8", "replace")
    marker = "queued as "
    if marker in text:
        return text.split(marker, 1)[1].split()[0].strip("<>")
    return None


def permanent_bounce(code: int, text: str) -> bool:
    """5.1.x: the address does not exist (no such user, no such domain)."""
    return code >= 500 and text.lstrip().startswith(("5.1.", "5.1 "))


@dataclass
class Outcomes:
    """Per-recipient answers of one batch, filled by several connection threads."""

    sent: dict[int, str] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)
    bounced: set[int] = field(default_factory=set)
    deferred: dict[int, str] = field(default_factory=dict)
    uncertain: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> Accepted:
        return Accepted(
            self.sent,
            rejected=self.refused,
            bounced=frozenset(self.bounced),
            deferred=self.deferred,
            uncertain=self.uncertain,
        )

    def took_none(self) -> bool:
        """Every recipient was deferred: the batch as a whole is a temporary refusal."""
        return bool(self.deferred and not self.sent and not self.refused and not self.uncertain)

    def record_sent(self, sid: int, reply: bytes) -> None:
        with self.lock:
            self.sent[sid] = queue_id(reply) or ""
            self.deferred.pop(sid, None)

    def record_refused(self, sid: int, reason: str) -> None:
        with self.lock:
            self.refused[sid] = reason

    def record_deferred(self, sid: int, reason: str) -> None:
        with self.lock:
            self.deferred[sid] = reason

    def record_uncertain(self, sid: int, reason: str) -> None:
        with self.lock:
            self.uncertain[sid] = reason

    def answer(self, sid: int, code: int, reply: bytes, *, stage: str) -> bool:
        """Record a refusal by its code; True when it is final for this recipient, False
        when they should be tried again (a 4xx, or 421/454: see `reconnect`)."""
        text = reply.decode("utf-8", "replace")
        said = f"{code} {text} (at {stage})"
        if 400 <= code < 500:
            self.record_deferred(sid, said)
            return False
        with self.lock:
            self.refused[sid] = said
            if permanent_bounce(code, text):
                self.bounced.add(sid)
        return True

    def defer_rest(self, sids: Iterable[int], reason: str) -> None:
        """Those not answered otherwise are deferred (with the first reason they met)."""
        with self.lock:
            for sid in sids:
                if sid not in self.sent and sid not in self.refused and sid not in self.uncertain:
                    self.deferred[sid] = self.deferred.get(sid) or reason
