"""How long a polling round takes on a large feed: a WordPress-style RSS of N entries served
on 127.0.0.1, polled into a new SQLite folder (the first fetch: the backlog taken, the rest
remembered), again unchanged (a 304), and again after one new post (every id looked up).

    .venv/bin/python benchmarks/feeds_poll.py [--entries 10000]

Prints figures only; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsletter.feeds import poll_feeds  # noqa: E402
from newsletter.feeds.parse import parse_feed  # noqa: E402
from newsletter.settings import load_settings, write_default_config  # noqa: E402
from newsletter.store import Store  # noqa: E402
from tests.feed_samples import wordpress_with  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=10_000)
    args = parser.parse_args()
    body = {"feed": wordpress_with(args.entries)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            tag = f'"{len(body["feed"])}"'
            if self.headers.get("If-None-Match") == tag:
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("ETag", tag)
            self.send_header("Content-Length", str(len(body["feed"])))
            self.end_headers()
            self.wfile.write(body["feed"])

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/feed/"
    print(f"feed of {args.entries:,} entries, {len(body['feed']) / 1e6:.1f} MB")
    started = time.perf_counter()
    parse_feed(url, body["feed"])
    print(f"parse only (feedparser): {time.perf_counter() - started:.2f} s")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_default_config(root)
        config = root / "newsletter.toml"
        config.write_text(config.read_text() + f'\n[[feeds]]\nurl = "{url}"\n')
        settings = load_settings(config)
        store = Store(settings.database_url)
        for label in ("first poll", "unchanged (304)", "one new post"):
            if label == "one new post":
                body["feed"] = wordpress_with(args.entries + 1)
            started = time.perf_counter()
            report = poll_feeds(store, settings)
            took = time.perf_counter() - started
            print(
                f"{label}: {took:.2f} s (queued {report.queued}, held {report.held}, "
                f"skipped {report.skipped:,})"
            )
        store.close()
    server.shutdown()


if __name__ == "__main__":
    main()
