"""Send one issue to 1,000,000 subscribers through the whole pipeline and print the figures.

    .venv/bin/python benchmarks/send_million.py [--subscribers 1000000] [--naive-sample 50]

What runs: a real SQLite database with N subscribers (signed tokens made at insert time, as
an import would), one issue rendered and inlined once, then the real `newsletter run --once`
command in a child process sending through the official `sendgrid` library to the local
SendGrid-compatible server (another child process, validating every request, recording
nothing). Measured in the same run, for comparison:
- ceiling: pre-built request bodies of the same size posted to the same server, same client
  library and concurrency: the most any sender could do against this server here;
- naive: rendering and inlining the issue per recipient (sampled, then extrapolated).
Targets (2 cores): 1,000,000 recipients within 60 s, peak memory under 300 MB, at least half
the ceiling's rate.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._newsletter import (  # noqa: E402
    add_readers,
    article_path,
    prebuilt_requests,
    run_once,
)
from newsletter import publish  # noqa: E402
from newsletter.articles import read_article  # noqa: E402
from newsletter.links import unsubscribe_url  # noqa: E402
from newsletter.providers.sendgrid import SendGridProvider  # noqa: E402
from newsletter.render import personalize, render_issue  # noqa: E402
from newsletter.settings import load_settings, write_default_config  # noqa: E402
from newsletter.store import Store  # noqa: E402
from newsletter.testing.sendgrid_server import ServerProcess  # noqa: E402

KEY = "SG.benchmark-key"


def setup(folder: Path, count: int, server_url: str, concurrency: int | None = None):
    write_default_config(folder)
    config = folder / "newsletter.toml"
    text = config.read_text().replace('provider = "outbox"', 'provider = "sendgrid"')
    if concurrency:
        text = text.replace("concurrency = 4", f"concurrency = {concurrency}")
    config.write_text(text)
    env = {"SENDGRID_API_HOST": server_url, "SENDGRID_API_KEY": KEY}
    settings = load_settings(config, env=env)
    store = Store(settings.database_url)
    insert_seconds = add_readers(store, count)
    article = article_path()
    publish.queue_add(store, settings, article)
    return settings, store, env, insert_seconds


def ceiling(settings, store, issue_id, server_url, total: int, concurrency: int) -> float:
    """Post pre-built 1000-recipient bodies (built before the clock starts)."""
    provider = SendGridProvider(settings, KEY)
    # Encoded text, as the provider posts it (the library sends text under our Content-Type).
    bodies = [built.encoded for built in prebuilt_requests(settings, store, issue_id, provider)]
    requests = total // 1000
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(
            pool.map(
                lambda i: provider.client.client.mail.send.post(
                    request_body=bodies[i % len(bodies)]
                ),
                range(requests),
            )
        )
    return requests * 1000 / (time.perf_counter() - started)


def naive(settings, store, issue_id, sample: int) -> float:
    """Render and inline per recipient: recipients per second."""
    article = read_article(article_path())
    recipients = next(store.subscribers.active_batches(sample))
    started = time.perf_counter()
    for r in recipients:
        personalize(render_issue([article], settings), r.name, unsubscribe_url(settings, r.token))
    return len(recipients) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--naive-sample", type=int, default=50)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="requests in flight (default: the config's, 4)",
    )
    args = parser.parse_args()
    n = args.subscribers
    server = ServerProcess(KEY)
    url = server.url
    try:
        with tempfile.TemporaryDirectory(prefix="nl-bench-") as tmp:
            folder = Path(tmp)
            settings, store, env, insert_s = setup(folder, n, url, args.concurrency)
            print(
                f"setup: {n:,} subscribers inserted with signed tokens in {insert_s:.1f}s "
                "(as an import would; not part of the send)"
            )
            store.close()
            command = run_once(folder, env)
            seconds, peak_kb, summary = command.seconds, command.peak_kb, command.summary
            store = Store(settings.database_url)
            issue_id = store.issues.list_issues()[0].id
            counts = store.deliveries.counts(issue_id)
            rate = n / seconds
            print(
                f"pipeline: {n:,} recipients in {seconds:.1f}s = {rate:,.0f} recipients/s; "
                f"peak memory {peak_kb / 1024:.0f} MB"
            )
            print("  " + "\n  ".join(summary.splitlines()))
            concurrency = settings.delivery.concurrency
            ceil = ceiling(settings, store, issue_id, url, min(n, 200_000), concurrency)
            print(
                f"ceiling: pre-built bodies, same server and client, {concurrency} in flight: "
                f"{ceil:,.0f} recipients/s; ours is {rate / ceil:.0%} of it"
            )
            naive_rate = naive(settings, store, issue_id, args.naive_sample)
            print(
                f"naive: render + inline per recipient ({args.naive_sample} sampled): "
                f"{naive_rate:,.1f} recipients/s = {n / naive_rate / 3600:.1f} h for {n:,}; "
                f"ours is {rate / naive_rate:,.0f}x faster"
            )
            exactly_once = counts["sent"] == n and sum(counts.values()) == n
            print(
                f"exactly once: delivery log {json.dumps(counts)} -> "
                f"{'OK' if exactly_once else 'MISMATCH'}"
            )
            store.close()
    finally:
        print(f"server: accepted {server.stop():,} recipients in all (pipeline and ceiling)")


if __name__ == "__main__":
    main()
