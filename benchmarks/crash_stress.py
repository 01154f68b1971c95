"""Kill the sender with SIGKILL at random points, many times, and check the promise each time.

    .venv/bin/python benchmarks/crash_stress.py [--trials 50] [--subscribers 400]

Each trial: a fresh folder and database, the local SendGrid-compatible server answering
slowly, `newsletter run --once` killed after a random delay, then restarted until done.
Afterwards nobody may have the issue twice, everyone must have it or be listed as uncertain,
and the uncertain ones must be exactly those in flight at the kill. CI runs three trials
(tests/test_crash.py); this script runs as many as you like.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from newsletter.settings import load_settings  # noqa: E402
from newsletter.store import Store  # noqa: E402
from newsletter.testing.sendgrid_server import SendGridServer  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from tests.faults import KEY, check_exactly_once, kill9, make_folder, start  # noqa: E402


def trial(subscribers: int, rng: random.Random) -> tuple[int, float]:
    with SendGridServer(api_key=KEY) as server, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = make_folder(folder, server.url, subscribers=subscribers, batch_size=10)
        server.faults.slow = 10**6
        server.faults.slow_seconds = 0.15
        proc = start(["run", "--once"], folder, env)
        delay = rng.uniform(0.5, 3.0)  # start-up, rendering, planning or mid-send
        time.sleep(delay)
        kill9(proc)
        store = Store(load_settings(folder / "newsletter.toml", env={}).database_url)
        unfinished = store.issues.unfinished_issues()
        caught = set()
        if unfinished:
            caught = {r.email for r in store.deliveries.in_state(unfinished[0], "in_flight")}
        server.faults.slow = 0
        result = run_cli(["run", "--once"], folder, env=env)
        assert result.returncode == 0, result.stderr
        time.sleep(0.2)
        # Killed before the issue existed, the restart built and sent it whole.
        [issue] = store.issues.list_issues()
        check_exactly_once(server, store, issue.id, subscribers, caught)
        store.close()
        return len(caught), delay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--subscribers", type=int, default=400)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    uncertain_total = 0
    with_uncertain = 0
    started = time.perf_counter()
    for n in range(1, args.trials + 1):
        caught, delay = trial(args.subscribers, rng)
        uncertain_total += caught
        with_uncertain += bool(caught)
        print(
            f"trial {n}: killed after {delay:.2f}s, {caught} uncertain, exactly once: OK",
            flush=True,
        )
    print(
        f"{args.trials} trials in {time.perf_counter() - started:.0f}s: all passed; "
        f"{with_uncertain} kills caught a batch in flight ({uncertain_total} uncertain rows "
        "in all); nobody got the issue twice"
    )


if __name__ == "__main__":
    main()
