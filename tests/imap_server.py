"""A real IMAP server for the tests: Debian's Dovecot as a private instance (its own config,
base_dir and log under a temporary folder) on 127.0.0.1 at a free port, one user whose
mailbox is a Maildir the test fills.

    with ImapServer(user="bounces", password="s3cret") as imap:
        mailbox.Maildir(imap.maildir).add(raw_message)
        f"imap://bounces@127.0.0.1:{imap.port}/INBOX"

Plain IMAP on the loopback only (what `bounces.mailboxes` allows without TLS). Dovecot starts
only as root (CI runs the tests as root); without it, or without dovecot, the tests that need
it are skipped, except under CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
WAIT = 60.0


def dovecot_or_skip() -> None:
    problem = None
    if not Path(DOVECOT).exists():
        problem = "dovecot is not installed (apt-get install dovecot-imapd; scripts/test does)"
    elif os.geteuid() != 0:
        problem = "Dovecot starts only as root (CI runs the tests as root)"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)


class ImapServer:
    def __init__(self, *, user: str, password: str) -> None:
        dovecot_or_skip()
        # Not under pytest's tmp_path: its parents are 0700 root, and Dovecot's processes
        # run as other users.
        self.root = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
        self.root.chmod(0o755)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        owner = pwd.getpwnam("nobody")
        home = self.root / "home" / user
        self.maildir = home / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True)
        for path in (home, *home.rglob("*")):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        (self.root / "passwd").write_text(f"{user}:{{PLAIN}}{password}::::::\n")
        self.config = self.root / "dovecot.conf"
        self.config.write_text(
            "\n".join(
                [
                    f"base_dir = {self.root}/run",
                    f"state_dir = {self.root}/state",
                    f"log_path = {self.root}/dovecot.log",
                    "protocols = imap",
                    "listen = 127.0.0.1",
                    "ssl = no",
                    "disable_plaintext_auth = no",
                    "auth_mechanisms = plain login",
                    f"first_valid_uid = {min(owner.pw_uid, 1)}",
                    "mail_privileged_group =",
                    f"mail_location = maildir:{self.root}/home/%u/Maildir",
                    "passdb {",
                    "  driver = passwd-file",
                    f"  args = {self.root}/passwd",
                    "}",
                    "userdb {",
                    "  driver = static",
                    f"  args = uid={owner.pw_uid} gid={owner.pw_gid} home={self.root}/home/%u",
                    "}",
                    "service imap-login {",
                    "  inet_listener imap {",
                    "    address = 127.0.0.1",
                    f"    port = {self.port}",
                    "  }",
                    "  inet_listener imaps {",
                    "    port = 0",
                    "  }",
                    "}",
                    "service anvil {",
                    "  chroot =",
                    "}",
                    "service imap-login {",
                    "  chroot =",
                    "}",
                    "",
                ]
            )
        )
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ImapServer:
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + WAIT
        while True:
            if self.process.poll() is not None:
                err = self.process.stderr.read() if self.process.stderr else ""
                raise RuntimeError(f"dovecot exited: {err}{self._log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    if conn.recv(100).startswith(b"* OK"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"dovecot never answered: {self._log()}")
            time.sleep(0.1)
        return self

    def _log(self) -> str:
        log = self.root / "dovecot.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
