"""One issue to 1,000,000 subscribers on PostgreSQL, sent by 1, 2 and 4 `newsletter worker`
processes sharing it, and an exactly-once check after each run.

    .venv/bin/python benchmarks/workers_postgres.py [--subscribers 1000000] [--workers 1 2 4]

PostgreSQL: NEWSLETTER_TEST_POSTGRES_URL if set, else a throwaway server started with
scripts/postgres (stopped at the end). For each worker count: a fresh issue is built and its
deliveries planned, a fresh local SendGrid-compatible server (another process, validating every
request, recording nothing) is started, N workers run `newsletter worker --once` until nothing
is left to claim, and the figures are printed: wall time, recipients per second, how the
batches were shared, and whether the delivery log and the server agree that every subscriber
got the issue exactly once. The machine has 2 cores, shared by the workers, the server and
PostgreSQL: expect scaling to flatten past 2 workers.

With --sink the server is the light sink instead (it authenticates, counts recipients and
answers 202; no contract checks, so it is not the bottleneck), the send phase is timed where
the requests land, and the provider's transport ceiling is measured against the same sink
afterwards (`send_sink.ceilings`): the issue 22 figures, on PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, text  # noqa: E402

from newsletter import publish  # noqa: E402
from newsletter.settings import load_settings, write_default_config  # noqa: E402
from newsletter.store import Store  # noqa: E402
from newsletter.subscribers import signing_secret  # noqa: E402
from newsletter.testing.sendgrid_server import ServerProcess  # noqa: E402
from newsletter.tokens import new_token  # noqa: E402

KEY = "SG.benchmark-key"
SAMPLE = REPO / "issues" / "001_the-lighthouse-keepers-daughter.txt"


def postgres(tmp: Path) -> tuple[str, Path | None]:
    url = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL")
    if url:
        return url, None
    folder = tmp / "pg"
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "postgres"), "start", str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1], folder


def fresh_database(admin_url: str, name: str) -> str:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        # FORCE: a benchmark interrupted earlier may have left connections to it.
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def database_size(store: Store) -> int:
    """PostgreSQL's size of this database (every table and index, dead rows included)."""
    with store.engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())


def sink_figures(
    server: ServerProcess, config: Path, store: Store, issue_id: int
) -> tuple[int, list[str]]:
    """The recipients the sink took from the workers and the send phase as it saw it, then
    the provider's transport ceiling against the same sink (bodies built beforehand, as many
    at a time as one worker sends)."""
    from benchmarks.send_sink import ceilings

    send = server.window()
    env = {"SENDGRID_API_HOST": server.url, "SENDGRID_API_KEY": KEY}
    settings = load_settings(config, env=env)
    threads = settings.delivery.concurrency
    total = min(send.recipients, 200_000)
    transport, _ = next(iter(ceilings(settings, store, issue_id, server, total, threads).values()))
    return send.recipients, [
        f"send phase (at the sink): {send.recipients:,} recipients in {send.seconds:.2f}s = "
        f"{send.rate:,.0f}/s; the sink's CPU {send.cpu_seconds / send.recipients * 1e6:.2f} ms "
        "per 1,000",
        f"provider transport ceiling ({threads} at a time, same sink): {transport.rate:,.0f}/s; "
        f"send phase / this = {send.rate / transport.rate:.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--sink", action="store_true", help="the light sink, and the transport's ceiling"
    )
    args = parser.parse_args()
    n = args.subscribers
    with tempfile.TemporaryDirectory(prefix="nl-workers-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # the server runs as the postgres user and must reach its folder
        admin_url, pg_folder = postgres(tmp)
        try:
            database_url = fresh_database(admin_url, "newsletter_bench")
            folder = tmp / "newsletter"
            write_default_config(folder)
            config = folder / "newsletter.toml"
            config.write_text(
                config.read_text()
                .replace('provider = "outbox"', 'provider = "sendgrid"')
                .replace(
                    'database_url = "sqlite:///newsletter.db"', f'database_url = "{database_url}"'
                )
            )
            settings = load_settings(config, env={})
            store = Store(settings.database_url)
            started = time.perf_counter()
            secret = signing_secret(store)
            store.subscribers.add(
                (
                    {
                        "email": f"reader{i:07d}@example.com",
                        "name": f"Reader {i}",
                        "token": new_token(secret),
                    }
                    for i in range(n)
                ),
                chunk_size=20_000,
            )
            print(f"setup: {n:,} subscribers in PostgreSQL in {time.perf_counter() - started:.1f}s")
            for workers in args.workers:
                publish.queue_add(store, settings, SAMPLE)
                started = time.perf_counter()
                size_before = database_size(store)
                picked, _ = publish.pick(store, settings, datetime.now(UTC))
                issue_id = publish.build_issue(store, settings, picked)
                plan = time.perf_counter() - started
                server = ServerProcess(KEY, sink=args.sink)
                server_url = server.url
                if args.sink:
                    server.window()  # nothing before the workers counts
                env = {
                    **os.environ,
                    "NEWSLETTER_CONFIG": str(config),
                    "SENDGRID_API_KEY": KEY,
                    "SENDGRID_API_HOST": server_url,
                }
                started = time.perf_counter()
                logs = [tmp / f"worker-{workers}-{k}.log" for k in range(workers)]
                procs = [
                    subprocess.Popen(
                        [sys.executable, "-m", "newsletter.cli", "worker", "--once"],
                        cwd=folder,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=log.open("w"),
                    )
                    for log in logs
                ]
                peaks = []
                for proc, log in zip(procs, logs, strict=True):
                    _, status, usage = os.wait4(proc.pid, 0)  # this worker's own peak memory
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    peaks.append(usage.ru_maxrss / 1024)
                    if proc.returncode != 0:
                        raise SystemExit(f"a worker failed:\n{log.read_text()}")
                seconds = time.perf_counter() - started
                ceiling_lines: list[str] = []
                if args.sink:  # what the sink took from the workers, before the ceiling's posts
                    accepted, ceiling_lines = sink_figures(server, config, store, issue_id)
                    server.stop()
                else:
                    accepted = server.stop()
                counts = store.deliveries.counts(issue_id)
                # Counted in SQL: a million rows loaded here would also inflate the peak
                # memory the next workers report (a forked child starts with our pages).
                shares = store.deliveries.sent_by_worker(issue_id)
                ok = counts["sent"] == n == accepted and counts["pending"] == 0
                print(
                    f"{workers} worker(s): {n:,} recipients in {seconds:.1f}s = "
                    f"{n / seconds:,.0f}/s (issue built and planned in {plan:.1f}s); "
                    f"shares {sorted(shares.values(), reverse=True)}; peak memory per worker "
                    f"{max(peaks):.0f} MB; exactly once: "
                    f"{'OK' if ok else 'MISMATCH'} (log sent {counts['sent']:,}, "
                    f"server accepted {accepted:,}); the database grew by "
                    f"{(database_size(store) - size_before) / 1e6:.2f} MB"
                )
                for line in ceiling_lines:
                    print("  " + line)
            store.close()
        finally:
            if pg_folder is not None:
                subprocess.run(
                    ["bash", str(REPO / "scripts" / "postgres"), "stop", str(pg_folder)],
                    capture_output=True,
                )


if __name__ == "__main__":
    main()
