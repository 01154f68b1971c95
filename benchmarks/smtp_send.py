"""Send one issue to 20,000 subscribers over SMTP and compare with plain smtplib.

    .venv/bin/python benchmarks/smtp_send.py [--subscribers 20000] [--connections 4]

What runs: a real SQLite database with N subscribers (signed tokens made at insert time), the
real `newsletter run --once` in a child process with `provider = "smtp"`, sending to the local
aiosmtpd server (another child process) in sink mode: it takes every message and discards it,
counting. Then, in the same run and against the same sink, the ceiling: smtplib alone sending
messages built beforehand (each reader's own copy, from the same template the provider uses)
over the same number of persistent connections, one thread each, MAIL/RCPT/DATA per message as
the provider does. The ratio says how much of that ceiling the whole pipeline (database claims
and records, per-reader assembly, VERP, pacing, reconnects) keeps. Peak memory is the
command's own. Target: at least 0.8 of the ceiling, and more than the MTAs' own published
figures (Postfix about 800/s, KumoMTA about 1,000/s).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import smtplib
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._newsletter import add_readers, article_path, run_once  # noqa: E402
from newsletter import publish  # noqa: E402
from newsletter.links import stored_issue  # noqa: E402
from newsletter.providers import OutgoingBatch  # noqa: E402
from newsletter.providers.outbox import issue_template  # noqa: E402
from newsletter.providers.smtp import verp_address  # noqa: E402
from newsletter.settings import load_settings, write_default_config  # noqa: E402
from newsletter.store import Store  # noqa: E402
from newsletter.testing.smtp_server import SMTPServerProcess  # noqa: E402

BOUNCES = "bounces@example.com"
PREBUILT = 1000  # distinct messages built for the ceiling, each sent N / PREBUILT times


def setup(folder: Path, count: int, port: int, connections: int):
    write_default_config(folder)
    config = folder / "newsletter.toml"
    text = config.read_text()
    for pattern, value in [
        (r'^provider = "outbox"', 'provider = "smtp"'),
        (r'^host = ""', 'host = "127.0.0.1"'),
        (r"^port = 587", f"port = {port}"),
        (r'^security = "starttls"', 'security = "none"'),
        (r"^connections = 4", f"connections = {connections}"),
        (r'^bounce_address = ""', f'bounce_address = "{BOUNCES}"'),
    ]:
        text, n = re.subn(pattern, value, text, count=1, flags=re.M)
        assert n == 1, pattern
    config.write_text(text)
    settings = load_settings(config, env={})
    store = Store(settings.database_url)
    insert_seconds = add_readers(store, count)
    publish.queue_add(store, settings, article_path())
    store.close()
    return settings, insert_seconds


def prebuilt(settings, store, issue_id: int) -> list[tuple[str, str, bytes]]:
    """(envelope sender, recipient, message) for the first PREBUILT readers, built as the
    provider builds them, before any clock starts."""
    rendered = stored_issue(settings, store.issues.get_issue(issue_id))
    template = issue_template(settings, rendered, issue_id)
    recipients = tuple(next(store.subscribers.active_batches(PREBUILT)))
    batch = OutgoingBatch.of(settings, issue_id, 0, rendered, recipients)
    ids = template.message_ids(len(recipients))
    out = []
    for r, url, mid in zip(recipients, batch.unsubscribe_urls, ids, strict=True):
        data = b"".join(template.for_recipient(rendered, r, url, mid))
        out.append((verp_address(BOUNCES, issue_id, r.token), r.email, data))
    return out


def ceiling(port: int, messages: list, total: int, connections: int) -> float:
    """smtplib alone: `total` messages over `connections` persistent connections; seconds."""
    share = [list(range(i, total, connections)) for i in range(connections)]
    ready = threading.Barrier(connections + 1)

    def lane(indexes: list[int]) -> None:
        conn = smtplib.SMTP("127.0.0.1", port)
        conn.ehlo()
        ready.wait()
        for i in indexes:
            sender, rcpt, data = messages[i % len(messages)]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    n, connections = args.subscribers, args.connections
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores)")
    with tempfile.TemporaryDirectory(prefix="nl-smtp-") as tmp:
        folder = Path(tmp)
        server = SMTPServerProcess(sink=True)
        settings, insert_s = setup(folder, n, server.port, connections)
        print(f"setup: {n:,} subscribers with signed tokens in {insert_s:.1f}s (not timed)")
        command = run_once(folder, {})
        taken = server.stop()
        peak = server.peak_connections
        ours = n / command.seconds
        memory = f"{command.peak_kb / 1024:.0f} MB" if command.peak_kb > 0 else "(not measured)"
        print(
            f"newsletter run --once (provider smtp, {connections} connections): {n:,} in "
            f"{command.seconds:.2f}s = {ours:,.0f} messages/s (the whole command: start, "
            f"render, plan, send, record); peak memory {memory}; sink took {taken:,}, "
            f"at most {peak} connections at once"
        )
        print("  " + "\n  ".join(command.summary.splitlines()))
        store = Store(settings.database_url)
        issue_id = store.issues.list_issues()[0].id
        counts = store.deliveries.counts(issue_id)
        messages = prebuilt(settings, store, issue_id)
        store.close()
        size = sum(len(m[2]) for m in messages) / len(messages)
        server = SMTPServerProcess(sink=True)
        seconds = ceiling(server.port, messages, n, connections)
        ceiling_taken = server.stop()
        top = n / seconds
        print(
            f"ceiling (smtplib alone, {PREBUILT:,} messages of {size / 1024:.1f} KB built "
            f"beforehand, {connections} persistent connections): {n:,} in {seconds:.2f}s = "
            f"{top:,.0f} messages/s; sink took {ceiling_taken:,}"
        )
        print(f"ratio: newsletter / ceiling = {ours / top:.2f}")
        exactly_once = counts.get("sent") == n == taken
        print(
            f"exactly once: delivery log {json.dumps(counts)}, sink counted {taken:,} -> "
            f"{'OK' if exactly_once else 'MISMATCH'}"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
