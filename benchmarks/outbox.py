"""Send one issue to N subscribers with the outbox provider and print messages/s.

    .venv/bin/python benchmarks/outbox.py [--subscribers 100000] [--keep]

What runs: a real SQLite database with N subscribers (signed tokens made at insert time, as
an import would) and the seed article queued; then
- pipeline: the real `newsletter run --once` command in a child process (start-up, render,
  check, claims, one .eml file per recipient, the delivery log), wall time and peak memory;
- write loop: the provider alone in another child process, `OutboxProvider.send` on batches
  of 1000 built before the clock starts (the .eml files and nothing else);
- file system floor: as many files of the pipeline's own size written by the outbox's own
  file steps (`_outbox_files`: create 0600 under a temporary name, write, one syncfs per
  1000, rename, flush the folder) from bytes made beforehand: no message is built, no
  database touched. No outbox on this disk can be faster; the pipeline is measured against it.
Target (issue 22, 2 cores; issue 13's was 5,000): at least 10,000 messages/s for 100,000
recipients. The load average is printed before and after: on a shared machine the file system's
journal, not this code, sets the pace (messages per CPU-second is the steadier figure).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._newsletter import (  # noqa: E402
    add_readers,
    article_path,
    command_environment,
    run_once,
)
from newsletter import publish  # noqa: E402
from newsletter.settings import load_settings, write_default_config  # noqa: E402
from newsletter.store import Store  # noqa: E402


def setup(folder: Path, count: int) -> float:
    """A newsletter folder (outbox provider, the default) with `count` subscribers."""
    write_default_config(folder)
    settings = load_settings(folder / "newsletter.toml", env={})
    store = Store(settings.database_url)
    seconds = add_readers(store, count)
    publish.queue_add(store, settings, article_path())
    store.close()
    return seconds


def write_loop(folder: Path, target: Path) -> None:
    """Child process: time `OutboxProvider.send` alone, print a JSON line of figures."""
    from newsletter.links import stored_issue
    from newsletter.providers import OutgoingBatch
    from newsletter.providers.outbox import OutboxProvider

    settings = load_settings(folder / "newsletter.toml", env={})
    store = Store(settings.database_url)
    issue_id = store.issues.list_issues()[0].id
    rendered = stored_issue(settings, store.issues.get_issue(issue_id))
    batches = [
        OutgoingBatch.of(settings, issue_id, n, rendered, tuple(recipients))
        for n, recipients in enumerate(store.subscribers.active_batches(1000))
    ]
    store.close()
    provider = OutboxProvider(settings, target)
    started, cpu = time.perf_counter(), time.process_time()
    sent = sum(len(provider.send(batch).message_ids) for batch in batches)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"sent": sent, "seconds": seconds, "cpu": cpu, "peak_mb": peak_mb}))


def file_floor(target: Path, count: int, size: int) -> tuple[float, float]:
    """Write `count` files of `size` bytes with the outbox's own steps, batches of 1000:
    (seconds, CPU seconds). The lightest writer of the same durable files."""
    from newsletter.providers._outbox_files import durable, open_folder, write_file

    data = [os.urandom(size)]
    started, cpu = time.perf_counter(), time.process_time()
    dir_fd = open_folder(target)
    try:
        for first in range(0, count, 1000):
            written = [
                (f".{i:08d}.tmp", f"{i:08d}.eml") for i in range(first, min(count, first + 1000))
            ]
            for temporary, _ in written:
                write_file(dir_fd, temporary, data)
            durable(dir_fd, written)
    finally:
        os.close(dir_fd)
    return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the folder and print it")
    parser.add_argument(
        "--write-loop", nargs=2, metavar=("FOLDER", "TARGET"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.write_loop:
        return write_loop(Path(args.write_loop[0]), Path(args.write_loop[1]))
    n = args.subscribers
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores)")
    folder = Path(tempfile.mkdtemp(prefix="nl-outbox-bench-"))
    try:
        insert_s = setup(folder, n)
        print(f"setup: {n:,} subscribers with signed tokens in {insert_s:.1f}s (not timed below)")

        # Each timed step starts on a flushed disk: syncfs(2) writes back every dirty page
        # of the file system, so a step would otherwise pay for what came before it.
        os.sync()
        command = run_once(folder, {})
        seconds, peak_mb, summary = command.seconds, command.peak_kb / 1024, command.summary
        sizes = sorted(p.stat().st_size for p in (folder / "outbox").rglob("*.eml"))
        files = len(sizes)
        store = Store(f"sqlite:///{folder / 'newsletter.db'}")
        counts = store.deliveries.counts(store.issues.list_issues()[0].id)
        store.close()
        print(
            f"pipeline (newsletter run --once): {n:,} messages in {seconds:.1f}s wall = "
            f"{n / seconds:,.0f} messages/s; peak memory {peak_mb:.0f} MB"
        )
        print("  " + "\n  ".join(summary.splitlines()))
        ok = files == n and counts.get("sent") == n
        print(
            f"  {files:,} .eml files; delivery log {json.dumps(counts)} -> {'OK' if ok else 'MISMATCH'}"
        )

        target = folder / "write-loop"
        os.sync()
        proc = subprocess.run(
            [sys.executable, __file__, "--write-loop", str(folder), str(target)],
            env=command_environment(folder),
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"write loop failed:\n{proc.stderr}")
        loop = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"write loop (OutboxProvider.send alone, batches of 1000): {loop['sent']:,} messages "
            f"in {loop['seconds']:.1f}s = {loop['sent'] / loop['seconds']:,.0f} messages/s; "
            f"peak memory {loop['peak_mb']:.0f} MB (batches built beforehand)"
        )
        print(
            f"  CPU time of the write loop {loop['cpu']:.1f}s = "
            f"{loop['sent'] / loop['cpu']:,.0f} messages per CPU-second; "
            f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        size = sizes[len(sizes) // 2]
        shutil.rmtree(target, ignore_errors=True)  # the same disk space for the floor
        os.sync()
        floor_s, floor_cpu = file_floor(folder / "file-floor", n, size)
        print(
            f"file system floor (the outbox's file steps alone, {n:,} files of {size:,} bytes "
            f"made beforehand): {n / floor_s:,.0f} files/s, {n / floor_cpu:,.0f} per "
            f"CPU-second; pipeline / floor = {n / seconds / (n / floor_s):.2f}, "
            f"write loop / floor = {loop['sent'] / loop['seconds'] / (n / floor_s):.2f}"
        )
    finally:
        if args.keep:
            print(f"kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return None


if __name__ == "__main__":
    main()
