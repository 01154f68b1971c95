"""What the benchmarks share: the article they send, readers added as an import would
(signed tokens made at insert time), the real `newsletter run --once` in a child process,
request bodies built before a ceiling's clock starts, and the real `newsletter serve` with an
editor signed in over HTTP (the workspace benchmarks)."""

from __future__ import annotations

import http.client
import os
import re
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
SEED = REPO.parent / "shared" / "seed" / "000_aa5f1ebe7ebc93f7.txt"
SAMPLE = REPO / "issues" / "001_the-lighthouse-keepers-daughter.txt"
EDITOR = "bench@example.com"
PASSWORD = "benchmark password"


def article_path() -> Path:
    """The seed article when ../shared is beside the repository, else the bundled sample."""
    return SEED if SEED.exists() else SAMPLE


def add_readers(store, count: int) -> float:
    """Add `count` active subscribers with signed tokens; the seconds it took."""
    from newsletter.subscribers import signing_secret
    from newsletter.tokens import new_token

    secret = signing_secret(store)
    started = time.perf_counter()
    store.subscribers.add(
        (
            {
                "email": f"reader{i:07d}@example.com",
                "name": f"Reader {i}",
                "token": new_token(secret),
            }
            for i in range(count)
        ),
        chunk_size=20_000,
    )
    return time.perf_counter() - started


@dataclass(frozen=True)
class CommandRun:
    started_at: float  # unix time
    seconds: float
    peak_kb: int  # the child's peak RSS; -1 when an earlier child was larger (not measured)
    summary: str  # what the command printed
    cpu_seconds: float = 0.0  # the child's user + system CPU time, every thread's

    @property
    def ended_at(self) -> float:
        return self.started_at + self.seconds


def command_environment(folder: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without its NEWSLETTER_ and SENDGRID_ variables, `env` on top, and
    the folder's newsletter.toml as the configuration."""
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))
    }
    return {**inherited, **(env or {}), "NEWSLETTER_CONFIG": str(folder / "newsletter.toml")}


def cpu_of(usage: resource.struct_rusage) -> float:
    """User + system CPU seconds of a `getrusage` or `wait4` answer."""
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    """This process's CPU seconds so far, every thread's."""
    return cpu_of(resource.getrusage(resource.RUSAGE_SELF))


def run_once(folder: Path, env: dict[str, str]) -> CommandRun:
    """`newsletter run --once` in its own process (so its peak memory is its own), in
    `command_environment(folder, env)`."""
    full_env = command_environment(folder, env)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before, cpu_before = usage.ru_maxrss, cpu_of(usage)
    started_at = time.time()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "newsletter.cli", "run", "--once"],
        cwd=folder,
        env=full_env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kb, cpu = usage.ru_maxrss, cpu_of(usage) - cpu_before
    if proc.returncode != 0:
        raise SystemExit(f"run failed:\n{proc.stdout}\n{proc.stderr}")
    if peak_kb <= before:  # an earlier child was larger: say so rather than report it
        peak_kb = -1
    return CommandRun(started_at, seconds, peak_kb, proc.stdout.strip(), cpu)


def prebuilt_requests(settings, store, issue_id: int, provider, count: int = 20) -> list:
    """The first `count` 1000-recipient requests of the issue, built by `provider`."""
    from newsletter.links import stored_issue
    from newsletter.providers import OutgoingBatch

    rendered = stored_issue(settings, store.issues.get_issue(issue_id))
    built = []
    for n, recipients in enumerate(store.subscribers.active_batches(1000)):
        if n == count:
            break
        batch = OutgoingBatch.of(settings, issue_id, n, rendered, tuple(recipients))
        built.append(provider.build_request(batch))
    return built


class Client:
    """HTTP/1.1 to the workspace on 127.0.0.1, keeping its cookies (the session)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, fields: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if fields is not None:
            body = urlencode(fields).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        for header in response.headers.get_all("set-cookie") or []:
            name, _, rest = header.partition("=")
            value = rest.split(";")[0]
            if value and value != '""':
                self.cookies[name] = value
        conn.close()
        return response.status, data

    def sign_in(self) -> None:
        _, page = self.request("GET", "/admin/login")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
        status, _ = self.request(
            "POST",
            "/admin/login",
            {"csrf_token": token, "email": EDITOR, "password": PASSWORD},
        )
        assert status == 303, status


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_signed_in(folder: Path) -> Iterator[tuple[subprocess.Popen, Client]]:
    """The real `newsletter serve` of `folder` in a child process, once it answers, and a
    client signed in as the EDITOR account (the folder must have it); stopped on leaving."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "newsletter.cli", "serve", "--port", str(port)],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = Client(port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.request("GET", "/admin/login")
                break
            except OSError:
                assert time.monotonic() < deadline, "newsletter serve did not start"
                time.sleep(0.2)
        client.sign_in()
        yield server, client
    finally:
        server.terminate()
        server.wait(timeout=30)
