"""A real Postfix for the tests: Debian's postfix as a private instance (its own
config_directory, queue_directory and data_directory under a temporary folder), listening on
127.0.0.1 at a free port, delivering the domains the test names to Maildirs (virtual(8)),
relaying nowhere else.

    with PostfixServer(mailboxes={"ann@readers.example.com": "readers/ann/"},
                       domains=("readers.example.com", "news.example.com")) as postfix:
        postfix.port, postfix.maildir("readers/ann/")

An address of those domains not in `mailboxes` is accepted at RCPT TO and bounced by the
delivery agent, so Postfix writes its own delivery status notification to the sender.
Postfix's daemons need root to start (CI runs the tests as root; scripts/test installs it);
without it, or without postfix, the tests that need it are skipped, except under CI (CI=true),
where that is a failure.
"""

from __future__ import annotations

import grp
import mailbox
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
MASTER_CF = Path("/etc/postfix/master.cf")
WAIT = 120.0  # seconds a delivery may take before the test gives up (not a measurement)


def postfix_or_skip() -> None:
    problem = None
    if not Path(POSTFIX).exists() or not MASTER_CF.exists():
        problem = "postfix is not installed (apt-get install postfix; scripts/test does)"
    elif os.geteuid() != 0:
        problem = "Postfix's daemons start only as root (CI runs the tests as root)"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostfixServer:
    def __init__(self, *, mailboxes: dict[str, str], domains: tuple[str, ...]) -> None:
        postfix_or_skip()
        # Not under pytest's tmp_path: its parents are 0700 root, and Postfix's daemons run
        # as the postfix user.
        self.root = Path(tempfile.mkdtemp(prefix="newsletter-postfix-"))
        self.root.chmod(0o755)
        self.port = _free_port()
        self.conf, self.queue, self.data, self.mail = (
            self.root / name for name in ("conf", "queue", "data", "mail")
        )
        self.log = self.root / "postfix.log"
        owner = pwd.getpwnam("postfix")
        group = grp.getgrnam("postfix")
        for folder in (self.conf, self.queue, self.data, self.mail):
            folder.mkdir()
        for folder in (self.data, self.mail):
            os.chown(folder, owner.pw_uid, group.gr_gid)
        (self.conf / "vmailbox").write_text(
            "".join(f"{address} {path}\n" for address, path in mailboxes.items())
        )
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "mail.news.example.com",
            "mydomain": "news.example.com",
            "myorigin": "news.example.com",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": "",
            # Nothing leaves this machine: any other domain is refused by the error agent.
            "default_transport": "error:5.7.1 this test instance relays nowhere",
            "relay_transport": "error:5.7.1 this test instance relays nowhere",
            "local_transport": "error:5.7.1 no local delivery",
            "alias_maps": "",
            "alias_database": "",
            "virtual_mailbox_domains": " ".join(domains),
            "virtual_mailbox_base": self.mail,
            "virtual_mailbox_maps": f"texthash:{self.conf / 'vmailbox'}",
            "virtual_uid_maps": f"static:{owner.pw_uid}",
            "virtual_gid_maps": f"static:{group.gr_gid}",
            "virtual_minimum_uid": "1",
            # Unknown users of those domains are taken, then bounced by virtual(8): a DSN.
            "smtpd_reject_unlisted_recipient": "no",
            "recipient_delimiter": "+",
            "maillog_file": self.log,
            "maillog_file_prefixes": self.root,
            "smtputf8_enable": "yes",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "biff": "no",
        }
        (self.conf / "main.cf").write_text(
            "".join(f"{key} = {value}\n" for key, value in settings.items())
        )
        # The packaged master.cf without chroot (the private queue has no chroot jail), its
        # smtpd on our port.
        master = re.sub(
            r"^(\S+\s+(?:unix|fifo|inet|unix-dgram)\s+\S+\s+\S+\s+)y",
            r"\1n",
            MASTER_CF.read_text(),
            flags=re.M,
        )
        master = re.sub(r"^smtp(\s+)inet", f"127.0.0.1:{self.port}\\1inet", master, flags=re.M)
        (self.conf / "master.cf").write_text(master)

    def _postfix(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [POSTFIX, "-c", str(self.conf), *args], capture_output=True, text=True, timeout=60
        )

    def __enter__(self) -> PostfixServer:
        started = self._postfix("start")
        if started.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            self.close()
            raise RuntimeError(f"postfix did not start: {started.stderr}{log[-2000:]}")
        deadline = time.monotonic() + WAIT
        import socket

        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("postfix never listened") from None
                time.sleep(0.1)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._postfix("stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def maildir(self, path: str) -> Path:
        return self.mail / path

    def messages(self, path: str) -> list[bytes]:
        folder = self.maildir(path)
        if not (folder / "new").is_dir():
            return []
        return [bytes(m) for m in mailbox.Maildir(folder, create=False)]

    def queue_empty(self) -> bool:
        """Nothing left in Postfix's queue (every message delivered or bounced)."""
        out = subprocess.run(
            ["postqueue", "-c", str(self.conf), "-j"], capture_output=True, text=True, timeout=60
        )
        return out.returncode == 0 and not out.stdout.strip()

    def wait_until(self, done, what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not done():
            if time.monotonic() > deadline:
                log = self.log.read_text() if self.log.exists() else ""
                raise AssertionError(f"postfix: {what} did not happen; log:\n{log[-3000:]}")
            time.sleep(0.2)
