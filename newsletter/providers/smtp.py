"""Any provider that speaks SMTP (SES, Mailgun, Postmark, Brevo, a company's Postfix).

Each recipient gets their own message, built from the issue's MIME laid out once
(`outbox.issue_template`, the outbox's own fast path) and sent with the standard library's
`smtplib` over a few persistent connections in parallel (`smtp_connections`). What the server
answers is mapped, per recipient, to what the delivery log records (`smtp_answers` has the
table); the envelope sender is a VERP address per issue and reader.
"""

from __future__ import annotations

import os
import re
import smtplib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from newsletter.addresses import LOOPBACK_HOSTS
from newsletter.exceptions import ConfigError, CredentialsRefused, Rejected, TransientError
from newsletter.providers import Accepted, Message, OutgoingBatch
from newsletter.providers.outbox import (
    MessageTemplate,
    UnwritableAddress,
    issue_template,
    to_header,
)
from newsletter.providers.smtp_answers import RECONNECT_CODES, Outcomes, verp_address
from newsletter.providers.smtp_connections import Connection, ConnectionPool, Pace, reason
from newsletter.records import Recipient, RenderedIssue
from newsletter.settings import Settings, SMTPSettings

__all__ = ["SMTPProvider", "verp_address"]

# An ASCII dot-atom address (what the subscribers' check lets through, nearly always):
# nothing to quote or escape in MAIL FROM / RCPT TO.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z"
)
SECURITIES = ("starttls", "tls", "none")


class SMTPProvider:
    """Sends batches over `connections` persistent SMTP connections."""

    name = "smtp"
    max_batch = 1000

    def __init__(
        self,
        settings: Settings,
        *,
        smtp: SMTPSettings,
        password: str = "",
        sign: Callable[[bytes], bytes] | None = None,
    ) -> None:
        if smtp.security not in SECURITIES:
            raise ConfigError(
                f"[smtp] security: expected one of {SECURITIES}, got {smtp.security!r}"
            )
        if smtp.security == "none" and smtp.host not in LOOPBACK_HOSTS:
            raise ConfigError(
                f'[smtp] security = "none" sends the password and every message in clear: '
                f"allowed only for 127.0.0.1/localhost, not {smtp.host!r}"
            )
        self.settings = settings
        self.smtp = smtp
        self.from_email = settings.from_email
        self._sign = sign
        self._template: tuple[tuple[int, str], MessageTemplate] | None = None
        self.pace = Pace(smtp.max_per_second)
        self.pool = ConnectionPool(smtp, password)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, sign: Callable[[bytes], bytes] | None = None
    ) -> SMTPProvider:
        """The provider `[smtp]` describes, the password from `SMTP_PASSWORD`."""
        # Not `settings.secret`: a password may hold spaces; only a CRLF file's line end goes.
        password = os.environ.get("SMTP_PASSWORD", "").strip("\r\n")
        if settings.smtp.username and not password:
            raise ConfigError(
                f"[smtp] username is {settings.smtp.username!r} but SMTP_PASSWORD is not set "
                "in the environment"
            )
        return cls(settings, smtp=settings.smtp, password=password, sign=sign)

    def __repr__(self) -> str:  # never shows the password
        return f"SMTPProvider(host={self.smtp.describe()!r})"

    def close(self) -> None:
        self.pool.close()

    # -- an issue's batch ---------------------------------------------------------------
    def send(self, batch: OutgoingBatch) -> Accepted:
        if self.pool.refused_login is not None:
            raise self.pool.refused_login
        template = self._issue_template(batch)
        outcomes = Outcomes()
        jobs = list(
            zip(
                batch.recipients,
                batch.unsubscribe_urls,
                template.message_ids(len(batch.recipients)),
                strict=True,
            )
        )
        # Open one connection first: a refused login or an unreachable server stops here,
        # before any message of the batch went out.
        with self.pool.connection():
            pass
        batch.ready()
        lanes = max(1, min(self.smtp.connections, len(jobs)))
        build = _Builder(template, batch.rendered, self._sign)
        with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="smtp") as pool:
            for future in [
                pool.submit(self._send_lane, batch.issue_id, jobs[i::lanes], build, outcomes)
                for i in range(lanes)
            ]:
                future.result()
        if outcomes.took_none():
            reasons = sorted(set(outcomes.deferred.values()))
            raise TransientError(f"the SMTP server {self.smtp.describe()} took none: {reasons[0]}")
        return outcomes.accepted()

    def _issue_template(self, batch: OutgoingBatch) -> MessageTemplate:
        key = (batch.issue_id, batch.rendered.placeholder_nonce)
        if self._template is None or self._template[0] != key:
            self._template = (key, issue_template(self.settings, batch.rendered, batch.issue_id))
        return self._template[1]

    def _send_lane(
        self, issue_id: int, jobs: list[_Job], build: _Builder, outcomes: Outcomes
    ) -> None:
        """One connection's share of the batch, each message built right before it goes
        (so building one overlaps the server's answer to another). A broken connection
        (421, a drop) is opened again at once while messages get through; `max_retries`
        rounds in a row without any progress, with backoff between them, leave the rest
        deferred."""
        items: Iterator[tuple[Recipient, bytes]] = build.each(jobs, outcomes)
        stalled = 0
        while True:
            retry: list[tuple[Recipient, bytes]] = []
            tried = 0
            try:
                with self.pool.connection() as conn:
                    for recipient, message in items:
                        tried += 1
                        if conn.broken:
                            retry.append((recipient, message))
                            break
                        self.pace.wait()
                        if not self._one(conn, issue_id, recipient, message, outcomes):
                            retry.append((recipient, message))
            except CredentialsRefused:
                outcomes.defer_rest(_ids(retry + list(items)), "the SMTP login was refused")
                return
            except (TransientError, ConfigError) as exc:
                untried = list(items)
                tried += len(untried)
                retry += untried
                outcomes.defer_rest(_ids(retry), str(exc))
            rest = list(items)  # after a broken connection: those not tried yet
            retry += rest
            if not retry:
                return
            stalled = stalled + 1 if len(retry) == tried + len(rest) else 0
            if stalled > self.smtp.max_retries:
                outcomes.defer_rest(_ids(retry), "")
                return
            if stalled:
                time.sleep(min(0.1 * 2**stalled, 10.0))
            items = iter(retry)

    def _one(
        self,
        conn: Connection,
        issue_id: int,
        recipient: Recipient,
        message: bytes,
        outcomes: Outcomes,
    ) -> bool:
        """Send one message; False when it should be tried again (on a new connection if
        this one broke)."""
        sid = recipient.subscriber_id
        envelope_from = (
            verp_address(self.smtp.bounce_address, issue_id, recipient.token)
            if self.smtp.bounce_address
            else self.from_email
        )
        utf8 = not recipient.email.isascii()
        if utf8 and not conn.has_extn("smtputf8"):
            outcomes.record_refused(
                sid,
                f"{recipient.email!r}: the SMTP server does not offer SMTPUTF8, which this "
                "address needs",
            )
            return True
        options = (
            ["SMTPUTF8", "BODY=8BITMIME"]
            if utf8
            else (["BODY=8BITMIME"] if conn.has_extn("8bitmime") else [])
        )
        plain = bool(_PLAIN_ADDRESS.match(recipient.email) and _PLAIN_ADDRESS.match(envelope_from))
        try:
            stage, code, reply = conn.transaction(
                envelope_from, recipient.email, options, message, plain=plain
            )
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            conn.broken = True
            if conn.payload_sent:
                outcomes.record_uncertain(
                    sid,
                    f"the connection to {self.smtp.describe()} was lost after the message "
                    f"was sent, before the server answered ({reason(exc)})",
                )
                return True
            outcomes.record_deferred(sid, f"connection lost: {reason(exc)}")
            return False
        if stage != "sent":
            return self._refusal(conn, sid, code, reply, outcomes, stage=stage)
        outcomes.record_sent(sid, reply)
        return True

    def _refusal(
        self,
        conn: Connection,
        sid: int,
        code: int,
        reply: bytes,
        outcomes: Outcomes,
        *,
        stage: str,
    ) -> bool:
        if code in RECONNECT_CODES:  # reconnect and slow down
            conn.broken = True
            self.pace.slow_down()
        return outcomes.answer(sid, code, reply, stage=stage)

    # -- one transactional message ------------------------------------------------------
    def send_message(self, message: Message) -> str:
        """One transactional email (a sign-up confirmation, an editors' alert), laid out as
        the outbox writes it, sent over one of the same connections; the envelope sender is
        `bounce_address` as it is (no reader to name)."""
        template = MessageTemplate(self.settings, message.subject, message.text, message.html)
        try:
            to_line = to_header(message.to_email, message.to_name)
        except UnwritableAddress as exc:
            raise Rejected(f"cannot write to {message.to_email!r}: {exc}") from exc
        message_id = template.message_id()
        data = b"".join(template.fill(to_line, message_id, {}))
        if self._sign is not None:
            data = self._sign(data) + data
        sender = self.smtp.bounce_address or self.from_email
        options = ["SMTPUTF8"] if not message.to_email.isascii() else []
        where = self.smtp.describe()
        try:
            with self.pool.connection() as conn:
                try:
                    conn.sendmail(sender, [message.to_email], data, mail_options=options)
                except smtplib.SMTPRecipientsRefused as exc:
                    code, said = next(iter(exc.recipients.values()))
                    raise Rejected(
                        f"the SMTP server {where} refused {message.to_email!r}: "
                        f"{code} {said.decode('utf-8', 'replace')}"
                    ) from None
                except smtplib.SMTPResponseException as exc:
                    answer = exc.smtp_error
                    text = (
                        answer.decode("utf-8", "replace") if isinstance(answer, bytes) else answer
                    )
                    error = f"the SMTP server {where} answered {exc.smtp_code} {text}"
                    if 400 <= exc.smtp_code < 500:
                        raise TransientError(error) from None
                    raise Rejected(error) from None
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            raise TransientError(f"the connection to {where} was lost: {reason(exc)}") from None
        return message_id


_Job = tuple[Recipient, str, str]  # the reader, their unsubscribe link, their Message-ID


class _Builder:
    """One reader's message of the batch: the template's fast path, then the signature."""

    def __init__(
        self,
        template: MessageTemplate,
        rendered: RenderedIssue,
        sign: Callable[[bytes], bytes] | None,
    ) -> None:
        self.template = template
        self.rendered = rendered
        self.sign = sign

    def each(self, jobs: list[_Job], outcomes: Outcomes) -> Iterator[tuple[Recipient, bytes]]:
        """The readers' messages, built one by one as they are asked for; an address that
        cannot be written is refused for that reader alone."""
        template, rendered, sign = self.template, self.rendered, self.sign
        for recipient, url, message_id in jobs:
            try:
                pieces = template.for_recipient(rendered, recipient, url, message_id)
            except UnwritableAddress as exc:
                outcomes.record_refused(recipient.subscriber_id, f"{recipient.email!r}: {exc}")
                continue
            data = b"".join(pieces)
            yield recipient, (sign(data) + data if sign is not None else data)


def _ids(jobs: list[tuple[Recipient, bytes]]) -> list[int]:
    return [recipient.subscriber_id for recipient, _ in jobs]
