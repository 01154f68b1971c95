"""A local SMTP server for tests, demos and benchmarks: aiosmtpd with scripted faults.

It runs in a process of its own (`SMTPServerProcess`, or `python -m newsletter.testing.smtp_server`)
so the sender under test talks to it over a real socket. It stores each accepted message in a
Maildir (or, with `--sink`, only counts it: the ceiling a sender is measured against), and
answers as real servers do when told to by a JSON faults file:

    {"refuse": {"gone@example.com": "550 5.1.1 <gone@example.com>: no such user"},
     "defer": {"busy@example.com": "451 4.3.0 try again later"},
     "refuse_data": {"spam@example.com": "554 5.7.1 message refused"},
     "drop_after_data": ["lost@example.com"],
     "stall": ["slow@example.com"],
     "close_after_messages": 3, "close_reply": "454 4.7.0 TLS not available",
     "data_delay_seconds": 0.02}

`refuse`/`defer` answer RCPT TO; `refuse_data` answers after DATA; `drop_after_data` reads
the whole message and closes the connection without a reply (the one case where a sender
cannot know); `stall` never answers RCPT TO for those addresses (the sender's timeout);
`close_after_messages` answers `close_reply` (a `421` unless told) to the MAIL FROM after that
many messages on one connection and closes it; `data_delay_seconds` waits that long before
each answer to DATA (a slow server: a send that takes a while, to be interrupted). `--auth USER` with `SMTP_SERVER_PASSWORD` in the environment
requires AUTH (over STARTTLS when `--cert`/`--key` are given, which also offers STARTTLS);
`--no-smtputf8` answers as an older server that does not offer SMTPUTF8; `--pipelining`
offers PIPELINING (RFC 2920; aiosmtpd reads commands in turn, so it takes them grouped).
The first line printed is `PORT`, then one line `ready`; at the end, how many messages it
accepted and the most connections that were open at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mailbox
import os
import signal
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODULE = "newsletter.testing.smtp_server"


@dataclass(frozen=True, kw_only=True)
class Faults:
    """What the server does wrong, by recipient address (lower-cased)."""

    refuse: dict[str, str] = field(default_factory=dict)
    defer: dict[str, str] = field(default_factory=dict)
    refuse_data: dict[str, str] = field(default_factory=dict)
    drop_after_data: frozenset[str] = frozenset()
    stall: frozenset[str] = frozenset()
    close_after_messages: int = 0
    close_reply: str = "421 4.7.0 too many messages on one connection, closing"
    data_delay_seconds: float = 0.0

    @classmethod
    def from_json(cls, text: str) -> Faults:
        raw = json.loads(text or "{}")
        lower = {
            k: {a.lower(): v for a, v in raw.get(k, {}).items()}
            for k in ("refuse", "defer", "refuse_data")
        }
        return cls(
            **lower,
            drop_after_data=frozenset(a.lower() for a in raw.get("drop_after_data", ())),
            stall=frozenset(a.lower() for a in raw.get("stall", ())),
            close_after_messages=int(raw.get("close_after_messages", 0)),
            close_reply=raw.get("close_reply", cls.close_reply),
            data_delay_seconds=float(raw.get("data_delay_seconds", 0.0)),
        )


class _Handler:
    """aiosmtpd's handler: the answers, the Maildir and the counters."""

    def __init__(self, faults: Faults, maildir: Path | None, pipelining: bool = False) -> None:
        self.faults = faults
        self.pipelining = pipelining
        self.box = mailbox.Maildir(maildir, create=True) if maildir else None
        self.accepted = 0
        self.counts: dict[int, int] = {}  # per connection: messages so far
        self.lock = threading.Lock()
        self.queue_number = 0
        self.open_connections = 0
        self.peak_connections = 0  # the most connections open at once

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does itself without this hook
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    def opened(self) -> None:
        self.open_connections += 1
        self.peak_connections = max(self.peak_connections, self.open_connections)

    def closed(self) -> None:
        self.open_connections -= 1

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        done = self.counts.get(id(session), 0)
        if self.faults.close_after_messages and done >= self.faults.close_after_messages:
            asyncio.get_running_loop().call_soon(server.transport.close)
            return self.faults.close_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        key = address.lower()
        if key in self.faults.stall:
            await asyncio.sleep(3600)  # the client gives up first
        if key in self.faults.refuse:
            return self.faults.refuse[key]
        if key in self.faults.defer:
            return self.faults.defer[key]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.counts[id(session)] = self.counts.get(id(session), 0) + 1
        if self.faults.data_delay_seconds:
            await asyncio.sleep(self.faults.data_delay_seconds)
        for rcpt in envelope.rcpt_tos:
            key = rcpt.lower()
            if key in self.faults.drop_after_data:
                server.transport.abort()
                return "250 OK"  # never reaches the client: the connection is gone
            if key in self.faults.refuse_data:
                return self.faults.refuse_data[key]
        with self.lock:
            self.accepted += 1
            self.queue_number += 1
            queue_id = f"Q{self.queue_number:08X}"
        if self.box is not None:
            content = envelope.original_content or envelope.content
            message = mailbox.MaildirMessage(content)
            message["X-Envelope-From"] = envelope.mail_from
            message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
            self.box.add(message)
        return f"250 2.0.0 Ok: queued as {queue_id}"


def _tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def main(argv: list[str] | None = None) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    class CountingSMTP(SMTP):
        """Counts connections open at once (what a sender's `connections` must respect)."""

        def connection_made(self, transport: Any) -> None:
            handler.opened()
            super().connection_made(transport)

        def connection_lost(self, error: Exception | None) -> None:
            handler.closed()
            super().connection_lost(error)

    class CountingController(Controller):
        def factory(self) -> SMTP:
            return CountingSMTP(self.handler, **self.SMTP_kwargs)

    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--maildir", type=Path, help="store accepted messages here")
    parser.add_argument("--sink", action="store_true", help="count only (benchmarks)")
    parser.add_argument("--faults", type=Path, help="a JSON faults file (see the module doc)")
    parser.add_argument(
        "--auth", metavar="USER", help="require AUTH as USER ($SMTP_SERVER_PASSWORD)"
    )
    parser.add_argument(
        "--no-smtputf8", action="store_true", help="do not offer SMTPUTF8 (an older server)"
    )
    parser.add_argument("--pipelining", action="store_true", help="offer PIPELINING")
    parser.add_argument("--cert", help="PEM certificate: offer STARTTLS")
    parser.add_argument("--key", help="PEM private key of --cert")
    args = parser.parse_args(argv)

    faults = Faults.from_json(args.faults.read_text() if args.faults else "")
    handler = _Handler(faults, None if args.sink else args.maildir, args.pipelining)
    password = os.environ.get("SMTP_SERVER_PASSWORD", "")

    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == args.auth
            and data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False)

    tls = _tls_context(args.cert, args.key)
    options: dict[str, Any] = {
        "enable_SMTPUTF8": not args.no_smtputf8,
        "data_size_limit": 40 * 1024 * 1024,
    }
    if args.auth:
        options.update(
            authenticator=authenticate, auth_required=True, auth_require_tls=tls is not None
        )
    if tls is not None:
        options.update(tls_context=tls, require_starttls=True)
    controller = CountingController(
        handler,
        hostname=args.host,
        port=args.port,
        server_hostname="localhost",
        ready_timeout=10,
        **options,
    )
    if args.port == 0:
        import socket

        with socket.socket() as probe:
            probe.bind((args.host, 0))
            controller.port = probe.getsockname()[1]
    controller.start()
    print(controller.port, flush=True)
    print("ready", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    print(
        f"stopped: {handler.accepted} messages, {handler.peak_connections} connections at once",
        flush=True,
    )


class SMTPServerProcess:
    """The server in a child process; `stop()` returns how many messages it accepted."""

    def __init__(
        self,
        *,
        maildir: Path | None = None,
        sink: bool = False,
        faults: dict[str, Any] | None = None,
        faults_path: Path | None = None,
        auth: tuple[str, str] | None = None,
        cert: tuple[Path, Path] | None = None,
        smtputf8: bool = True,
        pipelining: bool = False,
    ) -> None:
        argv = [sys.executable, "-m", MODULE]
        if pipelining:
            argv.append("--pipelining")
        if not smtputf8:
            argv.append("--no-smtputf8")
        if maildir is not None:
            argv += ["--maildir", str(maildir)]
        if sink:
            argv.append("--sink")
        if faults is not None:
            assert faults_path is not None, "faults need a path to be written to"
            faults_path.write_text(json.dumps(faults))
            argv += ["--faults", str(faults_path)]
        env = dict(os.environ)
        if auth is not None:
            argv += ["--auth", auth[0]]
            env["SMTP_SERVER_PASSWORD"] = auth[1]
        if cert is not None:
            argv += ["--cert", str(cert[0]), "--key", str(cert[1])]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.process.stdout.readline()  # ready

    peak_connections = 0  # after `stop()`: the most connections that were open at once

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=30)
        words = out.strip().splitlines()[-1].split()
        self.peak_connections = int(words[3])
        return int(words[1])

    def __enter__(self) -> SMTPServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.stop()


if __name__ == "__main__":
    main()
