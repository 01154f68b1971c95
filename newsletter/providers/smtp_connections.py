"""The SMTP provider's connections: opening one (each failure told as the setting to check),
keeping at most `[smtp] connections` open and reusing them, and the pace over all of them.

A failure to connect is one of three things, and the send loop treats them differently:
a wrong setting (`ConfigError`: TLS mode, certificate, a port that is not SMTP; trying again
does not help), a server that cannot be reached now (`Unreachable`: refused, timed out, the
host unknown; the rows stay pending and the issue pauses after the retries), or a refused
login (`CredentialsRefused`: the send stops at once; the password is never repeated).
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from newsletter.exceptions import ConfigError, CredentialsRefused, TransientError, Unreachable
from newsletter.settings import SMTPSettings


class Connection(smtplib.SMTP):
    """`smtplib.SMTP` that remembers whether the message itself was handed to the socket
    (a connection lost after that and before the reply leaves the message uncertain),
    whether it broke, and how many messages it carried."""

    payload_sent = False
    broken = False
    sent_count = 0

    def send(self, s: bytes | str) -> None:  # type: ignore[override]
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.payload_sent = True

    def transaction(
        self, sender: str, recipient: str, options: list[str], message: bytes, *, plain: bool
    ) -> tuple[str, int, bytes]:
        """MAIL FROM, RCPT TO and DATA for one message: (the stage that answered last, its
        code, its text); ("sent", 250, ...) when the message was taken. A connection lost
        raises (OSError, SMTPServerDisconnected); `payload_sent` says whether it was after
        the message went. `plain`: both addresses are dot-atoms, written between <> as they
        are (smtplib's `mail`/`rcpt` parse every address with `email.utils`, half the
        client's time); with PIPELINING offered, the three commands then go in one write
        (RFC 2920: two round trips a message instead of four)."""
        self.payload_sent = False
        if not (plain and self.has_extn("pipelining")):
            return self._one_by_one(sender, recipient, options, message, plain=plain)
        extra = " " + " ".join(options) if options else ""
        self.send(f"MAIL FROM:<{sender}>{extra}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode())
        answers = []
        for stage, wanted in (("MAIL FROM", (250,)), ("RCPT TO", (250, 251)), ("DATA", (354,))):
            code, said = self.getreply()
            answers.append((stage, code, said))
            if code in (421, 454):  # the server is closing: no further answers come
                return stage, code, said
            if code not in wanted:
                break
        if answers[-1][1] == 354:
            if len(answers) == 3 and answers[0][1] == 250 and answers[1][1] in (250, 251):
                self.send(_dot_stuffed(message))
                code, said = self.getreply()
                self.sent_count += 1
                return ("sent" if code == 250 else "DATA"), code, said
            self.send(b".\r\n")  # a server that took DATA without a recipient: end it
            self.getreply()
        for _ in range(3 - len(answers)):  # the answers to the commands after the refused one
            self.getreply()
        self.rset()
        return next((a for a in answers if a[1] not in (250, 251, 354)), answers[-1])

    def _one_by_one(
        self, sender: str, recipient: str, options: list[str], message: bytes, *, plain: bool
    ) -> tuple[str, int, bytes]:
        if plain:
            extra = " " + " ".join(options) if options else ""
            code, said = self.docmd("MAIL", f"FROM:<{sender}>{extra}")
        else:
            code, said = self.mail(sender, options)
        if code != 250:
            return "MAIL FROM", code, said
        if plain:
            code, said = self.docmd("RCPT", f"TO:<{recipient}>")
        else:
            code, said = self.rcpt(recipient)
        if code not in (250, 251):
            if code not in (421, 454):
                self.rset()
            return "RCPT TO", code, said
        try:
            code, said = self.data(message)
        except smtplib.SMTPDataError as exc:  # the answer to DATA itself (not 354)
            error = exc.smtp_error
            return "DATA", exc.smtp_code, error if isinstance(error, bytes) else error.encode()
        self.sent_count += 1
        return ("sent" if code == 250 else "DATA"), code, said


def _dot_stuffed(message: bytes) -> bytes:
    """The message as DATA carries it, as `smtplib.SMTP.data` writes it: a line starting
    with "." gets another, then the end-of-data line."""
    if message.startswith(b".") or b"\n." in message:
        message = re.sub(rb"(?m)^\.", b"..", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


class ConnectionTLS(Connection, smtplib.SMTP_SSL):
    """Implicit TLS (port 465) with the same bookkeeping."""


class Pace:
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
        the connection that got it waits before it opens again (the lane's backoff)."""
        with self.lock:
            if self.interval:
                self.interval = min(self.interval * 1.25, 1.0)


class ConnectionPool:
    """At most `connections` open at once, however many batches the sender has in flight
    (`[delivery] concurrency`): each user holds one slot. A connection goes back to the
    idle list after use unless it broke or carried `messages_per_connection` messages."""

    def __init__(self, smtp: SMTPSettings, password: str) -> None:
        self.smtp = smtp
        self._password = password
        self._idle: list[Connection] = []
        self._idle_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(smtp.connections)
        self.refused_login: CredentialsRefused | None = None

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        with self._slots:
            with self._idle_lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect()
            try:
                yield conn
            except BaseException:
                close(conn)
                raise
            if conn.broken or conn.sent_count >= self.smtp.messages_per_connection:
                quit_(conn)
            else:
                with self._idle_lock:
                    self._idle.append(conn)

    def close(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            quit_(conn)

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.smtp.ca_file or None)

    def _connect(self) -> Connection:
        s = self.smtp
        where = s.describe()
        try:
            if s.security == "tls":
                conn: Connection = ConnectionTLS(
                    s.host, s.port, timeout=s.timeout_seconds, context=self._tls_context()
                )
            else:
                conn = Connection(s.host, s.port, timeout=s.timeout_seconds)
                if s.security == "starttls":
                    conn.starttls(context=self._tls_context())
            conn.ehlo_or_helo_if_needed()
            if s.username:
                conn.login(s.username, self._password)
        except smtplib.SMTPAuthenticationError as exc:
            self.refused_login = CredentialsRefused(
                f"the SMTP server {where} refused the login of [smtp] username {s.username!r} "
                f"({exc.smtp_code}): check SMTP_PASSWORD"
            )
            raise self.refused_login from None
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
            said = text(exc.smtp_error)
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
            raise Unreachable(where, f"unknown host ({exc.strerror}): check [smtp] host") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise Unreachable(where, f"{reason(exc)}: check [smtp] host and port") from None
        return conn


def text(said: bytes | str) -> str:
    return said.decode("utf-8", "replace") if isinstance(said, bytes) else said


def reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def quit_(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        close(conn)


def close(conn: smtplib.SMTP) -> None:
    try:
        conn.close()
    except OSError:
        pass
