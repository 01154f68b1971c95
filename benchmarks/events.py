"""SendGrid events into a live `newsletter serve`, on SQLite and on PostgreSQL: events/s and
the latency of a POST, then a check that every count is exact.

    .venv/bin/python benchmarks/events.py [--events 1000000] [--batch 1000] [--concurrency 4]
                                          [--subscribers 100000] [--backend sqlite postgresql]

For each backend: a fresh database with `--subscribers` active subscribers and one issue
planned for all of them, its deliveries marked sent except 1 % left uncertain (a crashed
batch); `newsletter serve` in a subprocess trusting a generated ECDSA key; then `--events`
events signed as SendGrid signs them, posted `--batch` per POST by `--concurrency` clients
on keep-alive connections, and the last `--probe` POSTs (at most half of them) one at a
time. The events look like an issue's: processed, delivered, two
opens and a click per recipient, about 0.3 % bounces, spam reports and unsubscribes. One
POST in 50 is also posted a second time at once, by another client, as SendGrid redelivers
a POST it thinks timed out. Printed: events/s (first POST sent to last answer), POST latency
p50/p99, and whether opens, clicks, confirmations, suppressions and the recorded event ids
are exactly what was sent, each once.

PostgreSQL: NEWSLETTER_TEST_POSTGRES_URL if set, else a throwaway server started with
scripts/postgres (stopped at the end). The machine has 2 cores shared by the clients (JSON
and signing), the server and the database.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import itertools
import json
import os
import queue
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

# The throwaway PostgreSQL and a fresh database in it, as the workers benchmark makes them.
from benchmarks.workers_postgres import fresh_database, postgres  # noqa: E402
from newsletter.records import SUPPRESSED, DeliveryState, RenderedIssue  # noqa: E402
from newsletter.settings import write_default_config  # noqa: E402
from newsletter.store import Store  # noqa: E402
from newsletter.store.schema import subscribers, webhook_events  # noqa: E402
from newsletter.web.events import SIGNATURE_HEADER, TIMESTAMP_HEADER  # noqa: E402

NEWSLETTER = Path(sys.executable).with_name("newsletter")
KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC_KEY = base64.b64encode(
    KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
REDELIVER_EVERY = 50
SENT, UNCERTAIN = DeliveryState.SENT, DeliveryState.UNCERTAIN


# --------------------------------------------------------------------------- databases


def seed(url: str, count: int) -> tuple[int, set[int]]:
    """`count` subscribers, one issue to them all; 1 % of its rows left uncertain."""
    store = Store(url)
    try:
        store.subscribers.add(
            {"email": f"reader{n}@example.com", "name": "", "token": secrets.token_hex(16)}
            for n in range(count)
        )
        issue_id = store.issues.create_issue(
            RenderedIssue(
                slug="benchmark",
                subject="Benchmark",
                preheader="",
                html="<p>x</p>",
                text="x",
                archive_html="<p>x</p>",
                placeholder_nonce="0" * 16,
                view_url="",
            ),
            [],
        )
        # Sent through the delivery log's own calls, then 1 % put back to uncertain.
        while batch := store.deliveries.claim(issue_id, 1000, worker="benchmark"):
            store.deliveries.mark_sent(batch, "benchmark")
        uncertain = set(range(7, count + 1, 100))
        store.deliveries.settle(issue_id, SENT, UNCERTAIN, sorted(uncertain))
        with store.engine.begin() as conn:
            ids = list(conn.scalars(select(subscribers.c.id).order_by(subscribers.c.id)))
        assert ids == list(range(1, count + 1)), "subscriber ids are not 1..count"
        return issue_id, uncertain
    finally:
        store.close()


# --------------------------------------------------------------------------- events


@dataclass
class Expected:
    opens: int = 0
    clicks: int = 0
    confirmed: set[int] = field(default_factory=set)
    suppressed: set[int] = field(default_factory=set)
    ids: int = 0


def make_batches(
    expected: Expected, issue_id: int, total: int, size: int, subscribers_n: int, uncertain: set
):
    """Yield lists of event dicts, filling `expected` (what the server must end with)."""
    prefix = secrets.token_hex(4)
    now = int(time.time())
    per_recipient = ("processed", "delivered", "open", "open", "click")
    produced = 0
    batch: list[dict] = []
    n = 0
    while produced < total:
        sid = 1 + (n // len(per_recipient)) % subscribers_n
        kind = per_recipient[n % len(per_recipient)]
        if n % 997 == 0:  # about 0.1 % each: bounces, spam reports, unsubscribes
            kind = ("bounce", "spamreport", "unsubscribe")[(n // 997) % 3]
        event = {
            "email": f"reader{sid - 1}@example.com",
            "timestamp": now,
            "event": kind,
            "sg_event_id": f"{prefix}-{n:09d}",
            "sg_message_id": f"m{sid}.filter0001.1.0",
            "issue_id": str(issue_id),
            "batch": "1",
            "subscriber_id": str(sid),
        }
        if kind == "bounce":
            event.update(type="bounce", reason="550 5.1.1 unknown user")
        if kind == "open":
            expected.opens += 1
        elif kind == "click":
            expected.clicks += 1
            event["url"] = "https://example.com/a"
        elif kind in ("processed", "delivered") and sid in uncertain:
            expected.confirmed.add(sid)
        elif kind in ("bounce", "spamreport", "unsubscribe"):
            expected.suppressed.add(sid)
        batch.append(event)
        produced += 1
        expected.ids += 1
        n += 1
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def signed(batch: list[dict]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(batch, separators=(",", ":")).encode()
    stamp = str(int(time.time()))
    signature = KEY.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        TIMESTAMP_HEADER: stamp,
    }


# --------------------------------------------------------------------------- the run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, url: str, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}
    env.update(NEWSLETTER_DATABASE_URL=url, SENDGRID_WEBHOOK_PUBLIC_KEY=PUBLIC_KEY)
    server = subprocess.Popen(
        [str(NEWSLETTER), "serve", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "serve.log", "wb"),  # noqa: SIM115
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"newsletter serve did not start: see {folder / 'serve.log'}"
                ) from None
            time.sleep(0.1)


def post_all(
    port: int, batches, concurrency: int, redeliver: bool
) -> tuple[float, list[float], int, int]:
    """Post every batch; (seconds, latency of each POST, POSTs made, distinct events)."""
    jobs: queue.Queue = queue.Queue(maxsize=concurrency * 2)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    posts = 0

    def client() -> None:
        nonlocal posts
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while (job := jobs.get()) is not None:
            body, headers = job
            started = time.perf_counter()
            conn.request("POST", "/webhooks/sendgrid", body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            took = time.perf_counter() - started
            with lock:
                latencies.append(took)
                posts += 1
                if response.status != 200:
                    failures.append(f"{response.status} {answer[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    events = 0
    for number, batch in enumerate(batches):
        events += len(batch)
        job = signed(batch)
        jobs.put(job)
        if redeliver and number % REDELIVER_EVERY == 0:
            jobs.put(job)  # the same POST again, picked up by another client at once
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} POSTs failed, first: {failures[0]}")
    return elapsed, latencies, posts, events


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def check(url: str, issue_id: int, expected: Expected, uncertain: set[int]) -> list[str]:
    engine = create_engine(url)
    problems = []
    with engine.connect() as conn:
        opens, clicks = conn.execute(
            text("SELECT opens, clicks FROM issues WHERE id = :i"), {"i": issue_id}
        ).one()
        ids = conn.scalar(select(func.count()).select_from(webhook_events))
        suppressed = conn.scalar(
            select(func.count())
            .select_from(subscribers)
            .where(subscribers.c.status.in_(SUPPRESSED))
        )
    engine.dispose()
    store = Store(url)
    try:
        still = {r.subscriber_id for r in store.deliveries.in_state(issue_id, UNCERTAIN)}
    finally:
        store.close()
    sent_now = uncertain - still
    for name, got, want in [
        ("opens", opens, expected.opens),
        ("clicks", clicks, expected.clicks),
        ("event ids recorded", ids, expected.ids),
        ("uncertain rows confirmed", len(sent_now), len(expected.confirmed)),
        ("subscribers suppressed", suppressed, len(expected.suppressed)),
    ]:
        if got != want:
            problems.append(f"{name}: {got}, expected {want}")
    if sent_now != expected.confirmed:
        problems.append("confirmed rows are not exactly those named by the events")
    return problems


def _cpu(pid: int, reaped: bool = False) -> float:
    """CPU seconds of a process (and of its children it has waited for)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def cluster_cpu(pg_folder: Path | None) -> float | None:
    """CPU seconds used so far by a throwaway PostgreSQL: its postmaster, the backends that
    ended (reaped by it) and those still running."""
    if pg_folder is None:
        return None
    try:
        postmaster = int((pg_folder / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    total = _cpu(postmaster, reaped=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                total += _cpu(int(entry.name))
    return total


def run(
    backend: str, url: str, folder: Path, args: argparse.Namespace, pg_folder: Path | None = None
) -> bool:
    t0 = time.perf_counter()
    issue_id, uncertain = seed(url, args.subscribers)
    print(
        f"[{backend}] seeded {args.subscribers:,} subscribers, {len(uncertain):,} uncertain rows "
        f"in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    port = free_port()
    server = start_server(folder, url, port)
    expected = Expected()
    batches = make_batches(expected, issue_id, args.events, args.batch, args.subscribers, uncertain)
    # The last POSTs go one at a time; a small run keeps at least half its POSTs for the
    # loaded phase (asking islice for a negative count was the old failure below 20 POSTs).
    total_posts = (args.events + args.batch - 1) // args.batch
    probe = min(args.probe, total_posts // 2)
    loaded = total_posts - probe
    load = os.getloadavg()[0]
    serve_cpu, db_cpu = _cpu(server.pid), cluster_cpu(pg_folder)
    try:
        elapsed, latencies, posts, events = post_all(
            port, itertools.islice(batches, loaded), args.concurrency, redeliver=True
        )
        serve_cpu = _cpu(server.pid) - serve_cpu
        db_cpu = None if db_cpu is None else (cluster_cpu(pg_folder) or 0.0) - db_cpu
        # Then the last few POSTs one at a time: the latency of a POST on its own.
        _, alone, _, alone_events = post_all(port, batches, 1, redeliver=False)
    finally:
        server.terminate()
        server.wait(timeout=30)
    problems = check(url, issue_id, expected, uncertain)
    print(
        f"[{backend}] {events:,} events in {posts:,} POSTs of {args.batch} "
        f"({posts - loaded} of them redelivered at once), {args.concurrency} clients: "
        f"{elapsed:.1f} s, {events / elapsed:,.0f} events/s; POST latency p50 "
        f"{percentile(latencies, 50) * 1000:.0f} ms, p99 {percentile(latencies, 99) * 1000:.0f} ms"
        f", max {max(latencies) * 1000:.0f} ms",
        flush=True,
    )
    # What it cost, whatever else the shared machine was doing (its 1-minute load average
    # when the POSTs started is printed too).
    cost = f"newsletter serve {serve_cpu:.1f} s"
    total = serve_cpu
    if db_cpu is not None:
        cost += f" + PostgreSQL {db_cpu:.1f} s"
        total += db_cpu
    per_second = f"{events / total:,.0f}" if total > 0 else "too short to tell"
    print(
        f"[{backend}] CPU: {cost} = {total / (events / 1000) * 1000:.1f} ms per 1,000 events, "
        f"{per_second} events per CPU-second; load average was {load:.1f} "
        f"on {os.cpu_count()} cores",
        flush=True,
    )
    if alone:
        print(
            f"[{backend}] then {len(alone)} POSTs ({alone_events:,} events) one at a time: "
            f"latency p50 "
            f"{percentile(alone, 50) * 1000:.0f} ms, p99 {percentile(alone, 99) * 1000:.0f} ms, "
            f"max {max(alone) * 1000:.0f} ms",
            flush=True,
        )
    print(
        f"[{backend}] counts: {'exact' if not problems else 'WRONG: ' + '; '.join(problems)} "
        f"(opens {expected.opens:,}, clicks {expected.clicks:,}, confirmed "
        f"{len(expected.confirmed):,}, suppressed {len(expected.suppressed):,})",
        flush=True,
    )
    return not problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument(
        "--probe", type=int, default=20, help="last POSTs sent one at a time (latency alone)"
    )
    parser.add_argument(
        "--backend", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    args = parser.parse_args()
    for name in ("events", "batch", "concurrency", "subscribers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.probe < 0:
        parser.error("--probe must be 0 or more")
    ok = True
    with tempfile.TemporaryDirectory(prefix="nl-events-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # a throwaway PostgreSQL runs as the postgres user
        for backend in args.backend:
            folder = tmp / backend
            write_default_config(folder)
            if backend == "sqlite":
                ok &= run(backend, f"sqlite:///{folder / 'newsletter.db'}", folder, args)
                continue
            admin_url, pg_folder = postgres(tmp)
            try:
                url = fresh_database(admin_url, "newsletter_events_bench")
                ok &= run(backend, url, folder, args, pg_folder)
            finally:
                if pg_folder is not None:
                    subprocess.run(
                        ["bash", str(REPO / "scripts" / "postgres"), "stop", str(pg_folder)],
                        capture_output=True,
                    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
