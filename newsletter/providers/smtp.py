"""Any provider that speaks SMTP (SES, Mailgun, Postmark, Brevo, a company's Postfix).

Each recipient gets their own message, built from the issue's MIME laid out once
(`outbox.issue_template`, the outbox's own fast path) and sent with the standard library's
`smtplib` over a few persistent connections in parallel. What the server answers is mapped,
per recipient, to what the delivery log records (`Accepted`):

    250 after DATA                      sent (the server's queue id as the message id)
    5xx at RCPT TO or after DATA        failed for good, with the server's text;
                                        5.1.x (no such user/domain) also bounces the reader
    4xx, refused connection, timeout    tried again with backoff, then `deferred`
      before DATA                       (back to pending: a later run sends them)
    421 / 454                           reconnect, slow down, try again
    connection lost after the message   `uncertain`: the server may have taken it
      was sent, before the reply
    535 (login refused)                 `CredentialsRefused`: the send stops

The envelope sender is a VERP address per issue and reader (`[smtp] bounce_address`
"bounces@example.com" -> "bounces+<issue>-<token id>@example.com"), so a bounce names both
without guessing.
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from newsletter.exceptions import ConfigError, CredentialsRefused, Rejected, TransientError
from newsletter.providers import Accepted, Message, OutgoingBatch
from newsletter.providers.outbox import (
    MessageTemplate,
    UnwritableAddress,
    issue_template,
    to_header,
)
from newsletter.records import Recipient
from newsletter.settings import Settings, SMTPSettings

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SECURITIES = ("starttls", "tls", "none")


class _Connection(smtplib.SMTP):
    """`smtplib.SMTP` that remembers whether the message itself was handed to the socket:
    a connection lost after that and before the reply leaves the message uncertain."""

    payload_sent = False

    def send(self, s: bytes | str) -> None:  # type: ignore[override]
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.payload_sent = True


class _ConnectionTLS(_Connection, smtplib.SMTP_SSL):
    """Implicit TLS (port 465) with the same bookkeeping."""


@dataclass
class _Outcomes:
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


class _Pace:
    """At most `per_second` messages a second over every connection (0 = no limit); a
    421/454 slows it down for a while."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.next_at = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next_at)
            self.next_at = at + self.interval
        if at > now:
            time.sleep(at - now)

    def slow_down(self) -> None:
        """A 421/454 asks for less: a paced send goes a quarter slower (at most 1 s apart);
        the connection that got it waits before it opens again (`SMTPProvider._send_lane`)."""
        with self.lock:
            if self.interval:
                self.interval = min(self.interval * 1.25, 1.0)


def verp_address(bounce_address: str, issue_id: int, token: str) -> str:
    """bounces@example.com -> bounces+<issue>-<token id>@example.com (the token's random
    part: unguessable, so a forged bounce names nobody)."""
    local, _, domain = bounce_address.rpartition("@")
    token_id = token.partition(".")[0]
    return f"{local}+{issue_id}-{token_id}@{domain}"


def _queue_id(reply: bytes) -> str | None:
    """The server's queue id from a 250 reply ("Ok: queued as 4Xb2Q0"), when it gives one."""
    text = reply.decode("utf-8", "replace")
    marker = "queued as "
    if marker in text:
        return text.split(marker, 1)[1].split()[0].strip("<>")
    return None


def _permanent_bounce(code: int, text: str) -> bool:
    """5.1.x: the address does not exist (no such user, no such domain)."""
    return code >= 500 and text.lstrip().startswith(("5.1.", "5.1 "))


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
        self._password = password
        self.from_email = settings.from_email
        self._sign = sign
        self._template: tuple[tuple[int, str], MessageTemplate] | None = None
        self._pace = _Pace(smtp.max_per_second)
        self._idle: list[_Connection] = []
        self._idle_lock = threading.Lock()
        # `connections` is the most this provider has open at once, however many batches
        # the sender has in flight ([delivery] concurrency): each lane holds one slot.
        self._slots = threading.BoundedSemaphore(smtp.connections)
        self._refused_login: CredentialsRefused | None = None

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

    # -- connections --------------------------------------------------------------------
    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.smtp.ca_file or None)
        return context

    def _connect(self) -> _Connection:
        s = self.smtp
        where = s.describe()
        try:
            if s.security == "tls":
                conn: _Connection = _ConnectionTLS(
                    s.host, s.port, timeout=s.timeout_seconds, context=self._tls_context()
                )
            else:
                conn = _Connection(s.host, s.port, timeout=s.timeout_seconds)
                if s.security == "starttls":
                    conn.starttls(context=self._tls_context())
            conn.ehlo_or_helo_if_needed()
            if s.username:
                conn.login(s.username, self._password)
        except smtplib.SMTPAuthenticationError as exc:
            self._refused_login = CredentialsRefused(
                f"the SMTP server {where} refused the login of [smtp] username {s.username!r} "
                f"({exc.smtp_code}): check SMTP_PASSWORD"
            )
            raise self._refused_login from None
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError(
                f"the SMTP server {where}'s certificate is not trusted ({exc.verify_message}): "
                "set [smtp] ca_file to the certificate (or its CA) for a private server"
            ) from None
        except ssl.SSLError as exc:
            # Trying again does not help: implicit TLS against a plain port, or the reverse.
            raise ConfigError(
                f"the TLS handshake with the SMTP server {where} failed ({exc.reason}): check "
                '[smtp] security and port ("tls" is for port 465, "starttls" for 587)'
            ) from None
        except smtplib.SMTPConnectError as exc:  # a greeting other than 220
            said = _text(exc.smtp_error)
            if 400 <= exc.smtp_code < 500:
                raise TransientError(
                    f"the SMTP server {where} is busy: {exc.smtp_code} {said}"
                ) from None
            raise ConfigError(
                f"{where} did not greet as an SMTP server ({said[:80]!r}): check [smtp] host and "
                "port"
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise ConfigError(
                f"the SMTP server {where} does not offer STARTTLS: set [smtp] security "
                '= "tls" for port 465, or "none" for a server on 127.0.0.1'
            ) from None
        except socket.gaierror as exc:
            raise TransientError(
                f"cannot resolve the SMTP host {s.host!r}: {exc.strerror}"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"cannot reach the SMTP server {where}: {_reason(exc)}") from None
        conn.sent_count = 0  # type: ignore[attr-defined]
        return conn

    @contextmanager
    def _connection(self) -> Iterator[_Connection]:
        with self._slots:
            with self._idle_lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect()
            try:
                yield conn
            except BaseException:
                _close(conn)
                raise
            used_up = conn.sent_count >= self.smtp.messages_per_connection  # type: ignore[attr-defined]
            if getattr(conn, "broken", False) or used_up:
                _quit(conn)
            else:
                with self._idle_lock:
                    self._idle.append(conn)

    def close(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _quit(conn)

    # -- sending ------------------------------------------------------------------------
    def send(self, batch: OutgoingBatch) -> Accepted:
        if self._refused_login is not None:
            raise self._refused_login
        template = self._issue_template(batch)
        outcomes = _Outcomes()
        jobs = []
        message_ids = template.message_ids(len(batch.recipients))
        for r, url, message_id in zip(
            batch.recipients, batch.unsubscribe_urls, message_ids, strict=True
        ):
            try:
                pieces = template.for_recipient(batch.rendered, r, url, message_id)
            except UnwritableAddress as exc:
                outcomes.refused[r.subscriber_id] = f"{r.email!r}: {exc}"
                continue
            jobs.append((r, self._signed(b"".join(pieces))))
        # Open one connection first: a refused login or an unreachable server stops here,
        # before any message of the batch went out.
        with self._connection():
            pass
        batch.ready()
        lanes = max(1, min(self.smtp.connections, len(jobs)))
        with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="smtp") as pool:
            for future in [
                pool.submit(self._send_lane, batch.issue_id, jobs[i::lanes], outcomes)
                for i in range(lanes)
            ]:
                future.result()
        if (
            not outcomes.sent
            and not outcomes.refused
            and not outcomes.uncertain
            and outcomes.deferred
        ):
            reasons = sorted(set(outcomes.deferred.values()))
            raise TransientError(f"the SMTP server {self.smtp.describe()} took none: {reasons[0]}")
        return outcomes.accepted()

    def _issue_template(self, batch: OutgoingBatch) -> MessageTemplate:
        key = (batch.issue_id, batch.rendered.placeholder_nonce)
        if self._template is None or self._template[0] != key:
            self._template = (key, issue_template(self.settings, batch.rendered, batch.issue_id))
        return self._template[1]

    def _signed(self, message: bytes) -> bytes:
        return self._sign(message) + message if self._sign else message

    def _send_lane(
        self, issue_id: int, jobs: list[tuple[Recipient, bytes]], outcomes: _Outcomes
    ) -> None:
        """One connection's share of the batch. A broken connection (421, a drop) is opened
        again at once while messages get through; `max_retries` rounds in a row without any
        progress, with backoff between them, leave the rest deferred."""
        pending = list(jobs)
        stalled = 0
        while pending and stalled <= self.smtp.max_retries:
            if stalled:
                time.sleep(min(0.1 * 2**stalled, 10.0))
            retry: list[tuple[Recipient, bytes]] = []
            try:
                with self._connection() as conn:
                    for index, (recipient, message) in enumerate(pending):
                        if getattr(conn, "broken", False):
                            retry.extend(pending[index:])
                            break
                        self._pace.wait()
                        if not self._one(conn, issue_id, recipient, message, outcomes):
                            retry.append((recipient, message))
            except CredentialsRefused:
                _defer(outcomes, pending, "the SMTP login was refused")
                return
            except (TransientError, ConfigError) as exc:
                _defer(outcomes, pending, str(exc))
                retry = pending
            stalled = stalled + 1 if len(retry) == len(pending) else 0
            pending = retry
        _defer(outcomes, pending, "")

    def _one(
        self,
        conn: _Connection,
        issue_id: int,
        recipient: Recipient,
        message: bytes,
        outcomes: _Outcomes,
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
        options = (
            ["SMTPUTF8", "BODY=8BITMIME"]
            if utf8
            else (["BODY=8BITMIME"] if conn.has_extn("8bitmime") else [])
        )
        conn.payload_sent = False
        try:
            if utf8 and not conn.has_extn("smtputf8"):
                with outcomes.lock:
                    outcomes.refused[sid] = (
                        f"{recipient.email!r}: the SMTP server does not offer SMTPUTF8, which "
                        "this address needs"
                    )
                return True
            code, reply = conn.mail(envelope_from, options)
            if code != 250:
                return self._answer(conn, sid, code, reply, outcomes, stage="MAIL FROM")
            code, reply = conn.rcpt(recipient.email)
            if code not in (250, 251):
                conn.rset()
                return self._answer(conn, sid, code, reply, outcomes, stage="RCPT TO")
            code, reply = conn.data(message)
            conn.sent_count += 1  # type: ignore[attr-defined]
            if code != 250:
                return self._answer(conn, sid, code, reply, outcomes, stage="DATA")
        except smtplib.SMTPDataError as exc:  # the answer to DATA itself (not 354)
            said = exc.smtp_error if isinstance(exc.smtp_error, bytes) else exc.smtp_error.encode()
            return self._answer(conn, sid, exc.smtp_code, said, outcomes, stage="DATA")
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            conn.broken = True  # type: ignore[attr-defined]
            if conn.payload_sent:
                with outcomes.lock:
                    outcomes.uncertain[sid] = (
                        f"the connection to {self.smtp.describe()} was lost after the message "
                        f"was sent, before the server answered ({_reason(exc)})"
                    )
                return True
            with outcomes.lock:
                outcomes.deferred[sid] = f"connection lost: {_reason(exc)}"
            return False
        with outcomes.lock:
            outcomes.sent[sid] = _queue_id(reply) or ""
            outcomes.deferred.pop(sid, None)
        return True

    def _answer(
        self,
        conn: _Connection,
        sid: int,
        code: int,
        reply: bytes,
        outcomes: _Outcomes,
        *,
        stage: str,
    ) -> bool:
        text = reply.decode("utf-8", "replace")
        said = f"{code} {text} (at {stage})"
        if code in (421, 454):
            conn.broken = True  # type: ignore[attr-defined]
            self._pace.slow_down()
            with outcomes.lock:
                outcomes.deferred[sid] = said
            return False
        if 400 <= code < 500:
            with outcomes.lock:
                outcomes.deferred[sid] = said
            return False
        with outcomes.lock:
            outcomes.refused[sid] = said
            if _permanent_bounce(code, text):
                outcomes.bounced.add(sid)
        return True

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
        data = self._signed(b"".join(template.fill(to_line, message_id, {})))
        sender = self.smtp.bounce_address or self.from_email
        options = ["SMTPUTF8"] if not message.to_email.isascii() else []
        try:
            with self._connection() as conn:
                try:
                    conn.sendmail(sender, [message.to_email], data, mail_options=options)
                except smtplib.SMTPRecipientsRefused as exc:
                    code, said = next(iter(exc.recipients.values()))
                    raise Rejected(
                        f"the SMTP server {self.smtp.describe()} refused {message.to_email!r}: "
                        f"{code} {said.decode('utf-8', 'replace')}"
                    ) from None
                except smtplib.SMTPResponseException as exc:
                    answer = exc.smtp_error
                    text = (
                        answer.decode("utf-8", "replace") if isinstance(answer, bytes) else answer
                    )
                    error = (
                        f"the SMTP server {self.smtp.describe()} answered {exc.smtp_code} {text}"
                    )
                    if 400 <= exc.smtp_code < 500:
                        raise TransientError(error) from None
                    raise Rejected(error) from None
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            raise TransientError(
                f"the connection to {self.smtp.describe()} was lost: {_reason(exc)}"
            ) from None
        return message_id


def _defer(outcomes: _Outcomes, jobs: list[tuple[Recipient, bytes]], reason: str) -> None:
    with outcomes.lock:
        for recipient, _ in jobs:
            sid = recipient.subscriber_id
            if (
                sid not in outcomes.sent
                and sid not in outcomes.refused
                and sid not in outcomes.uncertain
            ):
                outcomes.deferred[sid] = outcomes.deferred.get(sid) or reason


def _text(said: bytes | str) -> str:
    return said.decode("utf-8", "replace") if isinstance(said, bytes) else said


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _quit(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        _close(conn)


def _close(conn: smtplib.SMTP) -> None:
    try:
        conn.close()
    except OSError:
        pass
