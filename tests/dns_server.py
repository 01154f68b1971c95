"""A real authoritative DNS server for the tests: Debian's nsd on 127.0.0.1 at a free port,
serving zone files the test writes (no mock resolver).

    server = DnsServer(tmp_path)
    server.zone("good.zonetest", ['@ TXT "v=spf1 include:sendgrid.net -all"'])
    server.broken_zone("broken.zonetest")   # configured, but its file does not load: SERVFAIL
    with server:                          # nsd -d, until it answers
        env = {"NEWSLETTER_DNS_SERVER": server.address}

If nsd is not installed (scripts/test installs it), the tests that need it are skipped, except
under CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest

NSD = shutil.which("nsd") or "/usr/sbin/nsd"
START_TIMEOUT = 20.0


def nsd_or_skip() -> None:
    if not Path(NSD).exists():
        message = "nsd is not installed (apt-get install nsd; scripts/test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


class DnsServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.zones: list[str] = []
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def zone(self, origin: str, records: list[str]) -> None:
        """A zone with an SOA, an NS and `records` (lines in zone-file syntax, names relative
        to the origin)."""
        lines = [
            f"$ORIGIN {origin}.",
            "$TTL 300",
            f"@ IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 300",
            f"@ IN NS ns.{origin}.",
            "ns IN A 127.0.0.1",
            *records,
        ]
        (self.folder / f"{origin}.zone").write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.zones.append(origin)

    def broken_zone(self, origin: str) -> None:
        """A zone nsd is configured to serve but cannot load: it answers SERVFAIL for it."""
        (self.folder / f"{origin}.zone").write_text("this is not a zone file {\n")
        self.zones.append(origin)

    def start(self) -> None:
        nsd_or_skip()
        conf = [
            "server:",
            f"  ip-address: 127.0.0.1@{self.port}",
            f'  pidfile: "{self.folder}/nsd.pid"',
            '  database: ""',
            f'  zonelistfile: "{self.folder}/zone.list"',
            f'  xfrdfile: "{self.folder}/xfrd.state"',
            f'  zonesdir: "{self.folder}"',
            f'  logfile: "{self.folder}/nsd.log"',
            '  username: ""',
            '  chroot: ""',
            "  server-count: 1",
            "  verbosity: 1",
            "remote-control:",
            "  control-enable: no",
        ]
        for origin in self.zones:
            conf += ["zone:", f"  name: {origin}", f"  zonefile: {origin}.zone"]
        path = self.folder / "nsd.conf"
        path.write_text("\n".join(conf) + "\n", encoding="utf-8")
        self.process = subprocess.Popen(
            [NSD, "-d", "-c", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait()

    def _wait(self) -> None:
        """Until the server answers a query for its first zone's SOA."""
        query = dns.message.make_query(f"{self.zones[0]}.", "SOA")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                log = (self.folder / "nsd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"nsd exited with {self.process.returncode}: {log}")
            try:
                reply = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.5)
            except (dns.exception.Timeout, OSError):
                time.sleep(0.05)
                continue
            if reply.answer:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nsd did not answer on {self.address} within {START_TIMEOUT:g} s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def __enter__(self) -> DnsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SilentServer:
    """A UDP (and TCP) socket on 127.0.0.1 that never answers: every query times out."""

    def __init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.port = self.udp.getsockname()[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.udp.close()
