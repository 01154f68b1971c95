"""The send phase of `newsletter run --once` against a light sink, next to the transport's
ceiling measured in the same run, and the whole command around it.

    .venv/bin/python benchmarks/send_sink.py [--subscribers 1000000] [--ceiling 200000]

What runs: a real SQLite database with N subscribers (signed tokens made at insert time, as
an import would), one queued article, then the real `newsletter run --once` command in a child
process (start-up, render, check, planning, sending through the official `sendgrid` library)
against the local server in sink mode (another child process: it authenticates, counts
recipients and answers 202; no contract checks). The sink records when the first request
arrived and the last was answered, so the send phase is timed where the requests land.

The ceiling, in the same run and against the same sink: request bodies built before the clock
starts, posted 4 at a time (the sender's concurrency),
- through the provider's own transport (`SendGridProvider._post`, what the sender posts with:
  pure transport, the honest ceiling),
- through the library's `mail.send.post` with the same encoded text (what the issue measured:
  it formats each body into a debug message and builds a new opener per request), and
- as dicts the library JSON-encodes.
And the delivery log alone: the same claims and records (4 threads, no request at all), which
no sender on this database can outrun. And the same command again once nothing is left to
send: the fixed cost that the 1.1x target has to fit in. And the CPU each side spent per
1,000 recipients (the command's, this process's for the ceiling, the sink's own from its
window): which of them holds each rate, and what the sender's one interpreter lock allows.
Also printed: how much the SQLite database grew with the issue (file and write-ahead log).
Targets (issue 22): send phase >= 0.8 of the ceiling, the whole command within 1.1x its send
phase at 1,000,000 recipients, peak memory <= 150 MB, the database growing by <= 1 MB per
1,000,000-recipient issue; every subscriber sent exactly once.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._newsletter import own_cpu, prebuilt_requests, run_once  # noqa: E402
from newsletter.providers.sendgrid import SendGridProvider  # noqa: E402
from newsletter.store import Store  # noqa: E402
from newsletter.testing.sendgrid_server import ServerProcess, SinkWindow  # noqa: E402

KEY = "SG.benchmark-key"


def setup(folder: Path, count: int, server_url: str):
    """The same newsletter as send_million.py's: N subscribers with signed tokens, one article
    queued, the sendgrid provider pointed at `server_url`."""
    from benchmarks.send_million import setup as setup_newsletter

    settings, store, env, insert_seconds = setup_newsletter(folder, count, server_url)
    store.close()
    return settings, env, insert_seconds


def ceilings(settings, store, issue_id: int, server: ServerProcess, total: int, threads: int):
    """Post 1000-recipient bodies built before the clock starts, `threads` at a time, through
    the provider's transport, the library's post, and as dicts. Each timed at the sink."""
    provider = SendGridProvider(settings, KEY)
    built = prebuilt_requests(settings, store, issue_id, provider)
    encoded = [b.encoded for b in built]
    dicts = [b.body for b in built]
    dict_provider = SendGridProvider(settings, KEY)
    # The library JSON-encodes dict bodies only under exactly "application/json".
    dict_provider.client.client.request_headers["Content-Type"] = "application/json"
    library_post = provider.client.client.mail.send.post
    ways = {
        "provider transport (what the sender posts with)": (provider._post, encoded),
        "library post, encoded text": (lambda body: library_post(request_body=body), encoded),
        "library post, dicts": (
            lambda body: dict_provider.client.client.mail.send.post(request_body=body),
            dicts,
        ),
    }
    requests = total // 1000
    results: dict[str, tuple[SinkWindow, float]] = {}
    for name, (post, bodies) in ways.items():
        sent = [bodies[i % len(bodies)] for i in range(requests)]
        server.window()  # start a fresh window
        cpu = own_cpu()
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(post, sent))
        results[name] = (server.window(), own_cpu() - cpu)
    return results


def cpu_budget(command, send: SinkWindow, transport: tuple[SinkWindow, float]) -> list[str]:
    """Where the CPU went, per 1000 recipients, in the send phase and in the transport's
    ceiling: what bounds each rate on this machine."""
    outside = (send.first - command.started_at) + (command.ended_at - send.last)
    # The start-up and the close run on one thread: their CPU is at most their wall time.
    sender = max(0.0, command.cpu_seconds - outside) / send.recipients * 1e6
    window, client_cpu = transport
    client = client_cpu / window.recipients * 1e6
    sink_send = send.cpu_seconds / send.recipients * 1e6
    sink_ceiling = window.cpu_seconds / window.recipients * 1e6
    cores = os.cpu_count() or 1
    return [
        "CPU per 1,000 recipients (user + system, ms):",
        f"  send phase: the sender {sender:.2f} (its whole CPU less the wall time outside "
        f"the send phase), the sink {sink_send:.2f}",
        f"  transport ceiling: the client {client:.2f}, the sink {sink_ceiling:.2f}",
        f"  so the sender's one interpreter allows at most {1e6 / sender:,.0f} recipients/s, "
        f"and the sink at most {1e6 / sink_ceiling:,.0f}/s; the ceiling is held by the "
        + ("sink" if sink_ceiling >= client else "client")
        + f"; sender + sink on {cores} cores at most "
        f"{cores * 1e6 / (sender + sink_send):,.0f}/s",
    ]


def log_alone(store, issue_id: int, threads: int) -> tuple[int, float]:
    """Claim and record every delivery of the issue again, `threads` at a time, with no request
    in between: the delivery log's own ceiling on this database."""
    from sqlalchemy import delete, update

    from newsletter.store.schema import deliveries, delivery_batches, delivery_plans

    with store.transaction() as conn:  # the issue as planned again: no batch claimed yet
        for table in (deliveries, delivery_batches):
            conn.execute(delete(table).where(table.c.issue_id == issue_id))
        conn.execute(
            update(delivery_plans)
            .where(delivery_plans.c.issue_id == issue_id)
            .values(claimed_to=0, next_batch=0)
        )
    cursor = [0]
    lock = concurrent.futures.thread.threading.Lock()

    def worker() -> int:
        done = 0
        while True:
            with lock:
                after = cursor[0]
            batch = store.deliveries.claim(issue_id, 1000, worker="log-alone", after=after)
            if batch is None:
                return done
            with lock:
                cursor[0] = max(cursor[0], batch.last_id)
            store.deliveries.mark_sent(batch, "log-alone")
            done += len(batch.recipients)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        done = sum(f.result() for f in [pool.submit(worker) for _ in range(threads)])
    return done, time.perf_counter() - started


def database_bytes(folder: Path) -> int:
    """The SQLite database's size on disk, its write-ahead log included."""
    return sum(p.stat().st_size for p in folder.glob("newsletter.db*") if p.is_file())


def delivery_rows(store, issue_id: int) -> str:
    from sqlalchemy import func, select

    from newsletter.store.schema import deliveries, delivery_batches

    with store.transaction(write=False) as conn:
        batches, own = (
            conn.scalar(select(func.count()).select_from(t).where(t.c.issue_id == issue_id))
            for t in (delivery_batches, deliveries)
        )
    return f"{batches:,} batch rows, {own:,} rows of their own"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument(
        "--ceiling", type=int, default=200_000, help="recipients posted for each ceiling"
    )
    args = parser.parse_args()
    n = args.subscribers
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores)")
    server = ServerProcess(KEY, sink=True)
    try:
        with tempfile.TemporaryDirectory(prefix="nl-sink-") as tmp:
            folder = Path(tmp)
            settings, env, insert_s = setup(folder, n, server.url)
            print(
                f"setup: {n:,} subscribers inserted with signed tokens in {insert_s:.1f}s "
                "(as an import would; not part of the command)"
            )
            server.window()  # nothing before the command counts
            size_before = database_bytes(folder)
            command = run_once(folder, env)
            growth = database_bytes(folder) - size_before
            began, ended, wall = command.started_at, command.ended_at, command.seconds
            peak_kb, summary = command.peak_kb, command.summary
            send = server.window()
            rate = send.rate
            print(
                f"send phase (at the sink): {send.recipients:,} recipients in "
                f"{send.requests:,} requests, {send.seconds:.2f}s = {rate:,.0f} recipients/s"
            )
            print(
                f"whole command: {wall:.2f}s = {wall / send.seconds:.3f}x the send phase "
                f"(before the first request {send.first - began:.2f}s, "
                f"after the last {ended - send.last:.2f}s); peak memory "
                + (f"{peak_kb / 1024:.0f} MB" if peak_kb > 0 else "(not measured)")
            )
            print("  " + "\n  ".join(summary.splitlines()))
            store = Store(settings.database_url)
            issue_id = store.issues.list_issues()[0].id
            counts = store.deliveries.counts(issue_id)
            print(
                f"database growth for this issue: {growth / 1e6:.2f} MB "
                f"({growth / 1e6 * 1_000_000 / n:.2f} MB per 1,000,000 recipients; "
                f"the issue's row and pages included); delivery log: "
                + delivery_rows(store, issue_id)
            )
            threads = settings.delivery.concurrency
            found = ceilings(settings, store, issue_id, server, min(n, args.ceiling), threads)
            print(f"ceilings: bodies built beforehand, {threads} at a time, same sink:")
            for name, (window, _) in found.items():
                print(
                    f"  {name}: {window.rate:,.0f} recipients/s; "
                    f"send phase / this = {rate / window.rate:.2f}"
                )
            print("\n".join(cpu_budget(command, send, next(iter(found.values())))))
            exactly_once = (
                counts["sent"] == n and sum(counts.values()) == n and send.recipients == n
            )
            print(
                f"exactly once: delivery log {json.dumps(counts)}, sink counted "
                f"{send.recipients:,} -> {'OK' if exactly_once else 'MISMATCH'}"
            )
            idle = run_once(folder, env)  # the issue is sent: nothing is left to do
            print(
                f"the same command with nothing to send: {idle.seconds:.2f}s (start-up, "
                f"settings, database, a tick that finds nothing); 1.1x of this send phase "
                f"leaves {0.1 * send.seconds:.2f}s for everything outside it"
            )
            alone, alone_s = log_alone(store, issue_id, threads)
            print(
                f"delivery log alone (claim + record, {threads} threads, no request): "
                f"{alone:,} in {alone_s:.2f}s = {alone / alone_s:,.0f} recipients/s; "
                f"send phase / this = {rate / (alone / alone_s):.2f}"
            )
            store.close()
    finally:
        server.stop()
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
