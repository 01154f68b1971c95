"""Send one issue to 20,000 subscribers over SMTP and compare with plain smtplib.

    .venv/bin/python benchmarks/smtp_send.py [--subscribers 20000] [--connections 4]
        [--sink smtp-sink|aiosmtpd] [--dkim]

What runs: a real SQLite database with N subscribers (signed tokens made at insert time), the
real `newsletter run --once` in a child process with `provider = "smtp"`, sending to a local
sink that takes every message and discards it, counting. The sink is Postfix's own
`smtp-sink` (C, one event loop, PIPELINING advertised; made to measure SMTP clients) when
/usr/sbin/smtp-sink is there, else our aiosmtpd server in sink mode, which tops out near
1,000 messages/s on 2 cores and so flatters the ratio (`--sink aiosmtpd` to see it). With
`--dkim` every message is DKIM-signed (a 2048-bit key made for the run): the same command and
the same ceiling, each message signed before its clock starts.

Then, in the same run and against the same sink, two ceilings, each sending messages built
beforehand (each reader's own copy, from the same template the provider uses) over the same
number of persistent connections, one thread each: smtplib alone as anyone calls it (`mail`,
`rcpt`, `data`: four round trips a message and `email.utils` parsing every address), and our
client's own transaction alone (`smtp_connections.Connection`: MAIL/RCPT/DATA in one write when
the server offers PIPELINING, dot-atom addresses as they are). The first ratio is the issue's
(ours is above 1 since our client does less than plain smtplib); the second says how much the
rest of the pipeline (database claims and records, per-reader assembly and signing, VERP,
pacing) costs. CPU seconds are printed beside wall time: on a shared machine (see the load)
messages per CPU second is the steadier figure. Peak memory is the command's own. Target: at
least 0.8 of the ceiling, and more than the MTAs' own published
figures (Postfix about 800/s, KumoMTA about 1,000/s).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._newsletter import (  # noqa: E402
    add_readers,
    article_path,
    command_environment,
    cpu_of,
    own_cpu,
)
from newsletter import publish  # noqa: E402
from newsletter.links import stored_issue  # noqa: E402
from newsletter.providers import OutgoingBatch  # noqa: E402
from newsletter.providers.dkim import DKIMSigner  # noqa: E402
from newsletter.providers.outbox import issue_template  # noqa: E402
from newsletter.providers.smtp import verp_address  # noqa: E402
from newsletter.providers.smtp_connections import Connection  # noqa: E402
from newsletter.settings import load_settings, write_default_config  # noqa: E402
from newsletter.store import Store  # noqa: E402
from newsletter.testing.smtp_server import SMTPServerProcess  # noqa: E402

BOUNCES = "bounces@example.com"
PREBUILT = 1000  # distinct messages built for the ceiling, each sent N / PREBUILT times
SMTP_SINK = "/usr/sbin/smtp-sink"


def cpu_seconds(pid: int) -> float:
    """user + system CPU of a running process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PostfixSink:
    """Postfix's `smtp-sink`: accepts and discards, counting messages (`-c`)."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        argv = [SMTP_SINK, "-c", f"127.0.0.1:{self.port}", "256"]
        if os.geteuid() == 0:
            argv[1:1] = ["-u", "nobody"]
        # The counters go to a file: a pipe nobody reads during the run fills and stops it.
        self.counters = tempfile.TemporaryFile()
        self.process = subprocess.Popen(argv, stdout=self.counters)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit(f"{SMTP_SINK} did not start") from None
                time.sleep(0.05)
        self.peak_connections = 0  # smtp-sink does not report it

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> int:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.counters.seek(0)
        counts = re.findall(rb"mesg=(\d+)", self.counters.read())
        self.counters.close()
        # Each probe connection above counts as a session, not a message.
        return int(counts[-1]) if counts else 0


def make_sink(kind: str):
    if kind == "smtp-sink":
        return PostfixSink()
    server = SMTPServerProcess(sink=True)
    server.pid = server.process.pid  # type: ignore[attr-defined]
    return server


def setup(folder: Path, count: int, port: int, connections: int, dkim: bool):
    write_default_config(folder)
    config = folder / "newsletter.toml"
    text = config.read_text()
    changes = [
        (r'^provider = "outbox"', 'provider = "smtp"'),
        (r'^host = ""', 'host = "127.0.0.1"'),
        (r"^port = 587", f"port = {port}"),
        (r'^security = "starttls"', 'security = "none"'),
        (r"^connections = 4", f"connections = {connections}"),
        (r'^bounce_address = ""', f'bounce_address = "{BOUNCES}"'),
    ]
    if dkim:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (folder / "dkim.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        changes += [
            (r'^selector = ""', 'selector = "news"'),
            (r'^private_key_file = ""', 'private_key_file = "dkim.pem"'),
        ]
    for pattern, value in changes:
        text, n = re.subn(pattern, value, text, count=1, flags=re.M)
        assert n == 1, pattern
    config.write_text(text)
    settings = load_settings(config, env={})
    store = Store(settings.database_url)
    insert_seconds = add_readers(store, count)
    publish.queue_add(store, settings, article_path())
    store.close()
    return settings, insert_seconds


def prebuilt(settings, store, issue_id: int, signer) -> list[tuple[str, str, bytes]]:
    """(envelope sender, recipient, message) for the first PREBUILT readers, built (and
    signed, with --dkim) as the provider builds them, before any clock starts."""
    rendered = stored_issue(settings, store.issues.get_issue(issue_id))
    template = issue_template(settings, rendered, issue_id)
    recipients = tuple(next(store.subscribers.active_batches(PREBUILT)))
    batch = OutgoingBatch.of(settings, issue_id, 0, rendered, recipients)
    ids = template.message_ids(len(recipients))
    out = []
    for r, url, mid in zip(recipients, batch.unsubscribe_urls, ids, strict=True):
        data = b"".join(template.for_recipient(rendered, r, url, mid))
        if signer is not None:
            data = signer.sign(data) + data
        out.append((verp_address(BOUNCES, issue_id, r.token), r.email, data))
    return out


def ceiling(port: int, messages: list, total: int, connections: int, *, ours: bool) -> float:
    """`total` messages over `connections` persistent connections, built beforehand;
    seconds. smtplib alone as anyone would call it (`mail`, `rcpt`, `data`), or, `ours`,
    our client's own transaction (`smtp_connections.Connection`: PIPELINING when offered,
    no address parsing) without the rest of the pipeline."""
    share = [list(range(i, total, connections)) for i in range(connections)]
    ready = threading.Barrier(connections + 1)

    def lane(indexes: list[int]) -> None:
        conn = Connection("127.0.0.1", port) if ours else smtplib.SMTP("127.0.0.1", port)
        conn.ehlo()
        ready.wait()
        for i in indexes:
            sender, rcpt, data = messages[i % len(messages)]
            if isinstance(conn, Connection):
                stage, code, _ = conn.transaction(sender, rcpt, ["BODY=8BITMIME"], data, plain=True)
                assert stage == "sent", (stage, code)
                continue
            conn.mail(sender, ["BODY=8BITMIME"])
            conn.rcpt(rcpt)
            code, _ = conn.data(data)
            assert code == 250
        conn.quit()

    threads = [threading.Thread(target=lane, args=(s,)) for s in share]
    for t in threads:
        t.start()
    ready.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - started


@dataclass(frozen=True)
class Command:
    seconds: float
    cpu_seconds: float  # user + system, the command's own
    peak_mb: float  # its own peak resident memory
    summary: str


def run_command(folder: Path) -> Command:
    """`newsletter run --once` in a child process, its CPU and peak memory its own (wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter.cli", "run", "--once"],
            cwd=folder,
            env=command_environment(folder, {}),
            stdout=out,
            stderr=err,
        )
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here: its own rusage
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        printed, errors = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"run failed:\n{printed}\n{errors}")
    return Command(seconds, cpu_of(usage), usage.ru_maxrss / 1024, printed.strip())


def loads() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--sink",
        choices=("smtp-sink", "aiosmtpd"),
        default="smtp-sink" if shutil.which(SMTP_SINK) else "aiosmtpd",
    )
    parser.add_argument("--dkim", action="store_true", help="sign every message (2048-bit)")
    args = parser.parse_args()
    n, connections = args.subscribers, args.connections
    signed = "DKIM-signed" if args.dkim else "unsigned"
    print(f"load average before: {loads()} (2 cores); sink: {args.sink}; messages {signed}")
    with tempfile.TemporaryDirectory(prefix="nl-smtp-") as tmp:
        folder = Path(tmp)
        server = make_sink(args.sink)
        settings, insert_s = setup(folder, n, server.port, connections, args.dkim)
        print(f"setup: {n:,} subscribers with signed tokens in {insert_s:.1f}s (not timed)")
        sink_before = cpu_seconds(server.pid)
        command = run_command(folder)
        sink_cpu = cpu_seconds(server.pid) - sink_before
        load_during = loads()
        taken = server.stop()
        peak = server.peak_connections
        ours = n / command.seconds
        at_once = f", at most {peak} connections at once" if peak else ""
        print(
            f"newsletter run --once (provider smtp, {connections} connections): {n:,} in "
            f"{command.seconds:.2f}s = {ours:,.0f} messages/s (the whole command: start, "
            f"render, plan, send, record); peak memory {command.peak_mb:.0f} MB; CPU "
            f"{command.cpu_seconds:.1f}s ours ({n / command.cpu_seconds:,.0f} messages per CPU "
            f"second), {sink_cpu:.1f}s the sink's; sink took {taken:,}{at_once}; load "
            f"{load_during}"
        )
        print("  " + "\n  ".join(command.summary.splitlines()))
        store = Store(settings.database_url)
        issue_id = store.issues.list_issues()[0].id
        counts = store.deliveries.counts(issue_id)
        signer = None
        if args.dkim:
            signer = DKIMSigner.load(
                selector="news",
                domain="example.com",
                key_file=str(folder / "dkim.pem"),
                key_pem="",
            )
        messages = prebuilt(settings, store, issue_id, signer)
        store.close()
        size = sum(len(m[2]) for m in messages) / len(messages)
        tops = {}
        for ours_client, label in [
            (False, "smtplib alone, mail/rcpt/data"),
            (True, "our client alone, pipelined"),
        ]:
            server = make_sink(args.sink)
            cpu_before, sink_before = own_cpu(), cpu_seconds(server.pid)
            seconds = ceiling(server.port, messages, n, connections, ours=ours_client)
            cpu = own_cpu() - cpu_before
            sink_cpu = cpu_seconds(server.pid) - sink_before
            load_during = loads()
            ceiling_taken = server.stop()
            tops[label] = top = n / seconds
            print(
                f"ceiling ({label}; {PREBUILT:,} messages of {size / 1024:.1f} KB built "
                f"beforehand, {connections} persistent connections): {n:,} in {seconds:.2f}s "
                f"= {top:,.0f} messages/s; CPU {cpu:.1f}s the client's ({n / cpu:,.0f} "
                f"messages per CPU second), {sink_cpu:.1f}s the sink's; sink took "
                f"{ceiling_taken:,}; load {load_during}"
            )
        for label, top in tops.items():
            print(f"ratio: newsletter / ceiling ({label}) = {ours / top:.2f}")
        exactly_once = counts.get("sent") == n == taken
        print(
            f"exactly once: delivery log {json.dumps(counts)}, sink counted {taken:,} -> "
            f"{'OK' if exactly_once else 'MISMATCH'}"
        )
        published = "above" if ours > 1000 else "not above"
        print(
            f"against the MTAs' published figures (Postfix ~800/s, KumoMTA ~1,000/s): "
            f"{ours:,.0f}/s is {published} them"
        )
    print(f"load average after: {loads()}")


if __name__ == "__main__":
    main()
