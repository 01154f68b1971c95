"""Median render time of every page of the editors' workspace on a large newsletter.

    .venv/bin/python benchmarks/admin_pages.py [--subscribers 1000000] [--issues 50] [--runs 15]

What runs: a real SQLite database with N subscribers (1 in 50 unsubscribed), a queue of
articles, ISSUES issues of which the newest is planned for every subscriber (sent, with
500 uncertain rows and two days of opens and clicks) and the others for the first 10,000
subscribers each (a full plan for every issue would be ISSUES x N delivery rows); then the
real `newsletter serve` in a child process, signed in over HTTP, each page fetched RUNS
times after one warm-up. Target: every page under 200 ms at the median on this machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._newsletter import EDITOR, PASSWORD, serve_signed_in  # noqa: E402
from newsletter import publish  # noqa: E402
from newsletter.editors import add_editor  # noqa: E402
from newsletter.records import DeliveryState, RenderedIssue, utcnow  # noqa: E402
from newsletter.resources import sample_articles  # noqa: E402
from newsletter.settings import load_settings, write_default_config  # noqa: E402
from newsletter.store import Store  # noqa: E402
from newsletter.subscribers import signing_secret  # noqa: E402
from newsletter.tokens import new_token  # noqa: E402

SMALL_PLAN = 10_000


def _rendered(slug: str, subject: str) -> RenderedIssue:
    return RenderedIssue(
        subject=subject,
        preheader="",
        html="<p>x</p>",
        text="x",
        archive_html="<p>x</p>",
        placeholder_nonce="0" * 16,
        view_url="",
        slug=slug,
    )


def setup(folder: Path, count: int, issues: int) -> tuple[int, float]:
    write_default_config(folder)
    settings = load_settings(folder / "newsletter.toml", env={})
    store = Store(settings.database_url)
    secret = signing_secret(store)
    started = time.perf_counter()

    def rows(start: int, stop: int):
        for i in range(start, stop):
            yield {
                "email": f"reader{i:07d}@example.com",
                "name": f"Reader {i}",
                "token": new_token(secret),
                "status": "unsubscribed" if i % 50 == 49 else "active",
            }

    first = min(SMALL_PLAN, count)
    store.subscribers.add(rows(0, first), chunk_size=20_000)
    for n in range(issues - 1):  # older issues, planned for the first subscribers
        issue_id = store.issues.create_issue(_rendered(f"old-{n}", f"Issue {n}"), [])
        store.deliveries.settle(issue_id, DeliveryState.PENDING, DeliveryState.SENT)
        store.issues.set_issue_status(issue_id, "sent")
    store.subscribers.add(rows(first, count), chunk_size=20_000)
    big = store.issues.create_issue(_rendered("newest", "The newest issue"), [])
    batch = store.deliveries.claim(big, 500, worker="crashed")
    assert batch is not None
    store.deliveries.in_flight_to_uncertain(big, worker="crashed")
    store.deliveries.settle(big, DeliveryState.PENDING, DeliveryState.SENT)
    store.issues.set_issue_status(big, "sent")
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    store.engagement.add_hours(
        [
            (big, kind, hour - timedelta(hours=h), 1000 // (h + 1))
            for h in range(48)
            for kind in ("open", "click")
        ],
    )
    for sample in sample_articles():
        for copy in range(4):
            target = folder / f"{copy}-{sample.name}"
            shutil.copyfile(sample, target)
            publish.queue_add(store, settings, target)
    add_editor(store, EDITOR, PASSWORD)
    store.close()
    return big, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--issues", type=int, default=50)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="admin-bench-") as tmp:
        folder = Path(tmp)
        big, seconds = setup(folder, args.subscribers, args.issues)
        print(
            f"setup: {args.subscribers:,} subscribers, {args.issues} issues "
            f"(newest planned for all), 12 queued articles in {seconds:.0f} s"
        )
        with serve_signed_in(folder) as (_, client):
            article_id = 1
            pages = [
                "/admin/queue",
                f"/admin/queue/{article_id}/preview",
                "/admin/issues",
                f"/admin/issues/{big}",
                f"/admin/issues/{big}/counts.json",
                "/admin/schedule",
                "/admin/subscribers",
                f"/admin/subscribers?after={args.subscribers // 2}",
                "/admin/subscribers?status=unsubscribed",
                "/admin/subscribers?q=reader05",
                "/admin/subscribers?q=reader05&after=reader0550000@example.com",
                "/admin/subscribers?q=reader 4242&field=name",
                "/admin/subscribers?q=nobody",
            ]
            print(f"{'page':<60} {'first ms':>8} {'median ms':>9} {'max ms':>8}")
            worst = 0.0
            for page in pages:
                started = time.perf_counter()  # the first request fills the caches
                status, _ = client.request("GET", page.replace(" ", "%20"))
                first = (time.perf_counter() - started) * 1000
                assert status == 200, (page, status)
                times = []
                for _ in range(args.runs):
                    started = time.perf_counter()
                    status, _ = client.request("GET", page.replace(" ", "%20"))
                    times.append((time.perf_counter() - started) * 1000)
                    assert status == 200, (page, status)
                median = statistics.median(times)
                worst = max(worst, median)
                print(f"{page:<60} {first:>8.1f} {median:>9.1f} {max(times):>8.1f}")
            print(f"slowest median: {worst:.1f} ms (target: under 200 ms)")


if __name__ == "__main__":
    main()
