"""Serve the public pages under load and print requests/s and p50/p99 latency for the archive
index, an issue page and the feed, next to a trivial endpoint on the same server, same run.

    .venv/bin/python benchmarks/public_pages.py [--seconds 10] [--connections 50]

What runs: a newsletter folder made by the real CLI (`init`, the bundled sample articles
queued, its subscribers imported, `run --once` per article: a few published issues, outbox
provider); then the app `newsletter serve` runs, in a child process (benchmarks/_trivial_serve.py:
the same app, middleware and uvicorn options, plus one route): one uvicorn process (with
uvloop and httptools, which uvicorn's "auto" picks), access log on. One process because the
machine has 2 cores and the load generator needs one of them; more workers would only fight
it for CPU. The trivial endpoint (`/_benchmark/trivial`, mounted by that script only, never by
the shipped app) answers the issue page's bytes from memory through
the same app, middleware and server: the ceiling of this stack on this machine, and the
proof that the load generator is not what limits.

Load: wrk (Debian: `apt-get install -y wrk`), 2 threads, N connections, keep-alive; after a
short warm-up of each URL, R rounds each of which runs every URL for a fixed time in the order
trivial, archive, issue, feed (interleaved, so that the other load of a shared machine falls on
all of them alike). Printed per URL: the median round (requests/s, p50, p99) and the worst p99.
Target (issue 13, 2 cores): at least 1,000 requests/s with p99 under 100 ms for each page.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._trivial_serve import TRIVIAL_PATH as BENCHMARK_TRIVIAL_PATH  # noqa: E402
from newsletter.resources import sample_folder, sample_subscribers  # noqa: E402
from newsletter.store import Store  # noqa: E402

TARGET_RPS = 1_000
TARGET_P99_MS = 100.0
# wrk's summary as one JSON line (its Lua `done` hook), so nothing is parsed from prose.
REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.6f, "p50_us": %d, "p99_us": %d, "errors": %d, "non2xx": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def cli(folder: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "newsletter.cli", *args],
        cwd=folder,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        sys.exit(f"newsletter {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}


def setup(folder: Path) -> list[str]:
    """A few published issues, made as an editor would; their slugs, newest first."""
    cli(folder, "init")
    sample = sample_folder()
    articles = sorted(p for p in sample.iterdir() if p.suffix in (".txt", ".md"))
    for article in articles:
        cli(folder, "queue", "add", str(article))
    cli(folder, "subscribers", "import", str(sample_subscribers()))
    for _ in articles:
        cli(folder, "run", "--once")
    store = Store(f"sqlite:///{folder / 'newsletter.db'}")
    try:
        return [issue.slug for issue in store.issues.list_issues()]
    finally:
        store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def start_server(folder: Path, port: int, trivial: Path) -> subprocess.Popen:
    env = clean_env()
    env["NEWSLETTER_BASE_URL"] = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "_trivial_serve.py"), str(port), str(trivial)],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            sys.exit("newsletter serve exited before answering")
        try:
            if get(port, BENCHMARK_TRIVIAL_PATH).status == 200:
                return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.terminate()
            sys.exit("newsletter serve did not answer within 60 s")
        time.sleep(0.1)


def check_pages(port: int, paths: dict[str, str]) -> None:
    """Before timing anything: every page answers 200 with validators, and revalidates."""
    for name, path in paths.items():
        page = get(port, path)
        if page.status != 200:
            sys.exit(f"{name} ({path}) answered {page.status}")
        if name == "trivial":
            continue
        etag = page.getheader("ETag")
        if not etag or not page.getheader("Last-Modified"):
            sys.exit(f"{name} ({path}) has no ETag or Last-Modified")
        if get(port, path, {"If-None-Match": etag}).status != 304:
            sys.exit(f"{name} ({path}) does not answer 304 to its own ETag")


def wrk(url: str, seconds: int, connections: int, threads: int, script: Path) -> dict:
    done = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        sys.exit(f"wrk failed on {url}:\n{done.stdout}{done.stderr}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="per URL and round (default 5)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="per URL, not counted")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")

    folder = Path(tempfile.mkdtemp(prefix="public-pages-"))
    server = None
    try:
        print(f"setting up a newsletter in {folder} ...", flush=True)
        slugs = setup(folder)
        store = Store(f"sqlite:///{folder / 'newsletter.db'}")
        try:
            issue = store.issues.issue_by_slug(slugs[-1])
            assert issue is not None
            trivial = folder / "trivial.html"
            trivial.write_text(issue.archive_html, encoding="utf-8")
        finally:
            store.close()
        paths = {
            "trivial": BENCHMARK_TRIVIAL_PATH,
            "archive index": "/archive",
            "issue page": f"/archive/{issue.slug}",
            "feed": "/feed.xml",
        }
        port = free_port()
        server = start_server(folder, port, trivial)
        check_pages(port, paths)
        script = folder / "report.lua"
        script.write_text(REPORT_LUA, encoding="utf-8")

        print(
            f"{len(slugs)} published issues; newsletter serve: 1 uvicorn process (uvloop, "
            f"httptools, access log on); wrk -t{args.threads} -c{args.connections}, "
            f"{args.rounds} rounds of {args.seconds} s per URL after {args.warmup} s of warm-up; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
            "cores shared by server and client\n",
            flush=True,
        )
        urls = {name: f"http://127.0.0.1:{port}{path}" for name, path in paths.items()}
        if args.warmup > 0:
            for url in urls.values():
                wrk(url, args.warmup, args.connections, args.threads, script)
        rounds: dict[str, list[dict]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, url in urls.items():
                rounds[name].append(wrk(url, args.seconds, args.connections, args.threads, script))

        def rate(result: dict) -> float:
            return result["requests"] / result["seconds"]

        ceiling = statistics.median(rate(r) for r in rounds["trivial"])
        print(
            f"\n{'page':<14} {'bytes':>6} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'worst p99':>9} {'of trivial':>10} {'errors':>7}"
        )
        failed = []
        for name, results in rounds.items():
            rps = statistics.median(rate(r) for r in results)
            p50 = statistics.median(r["p50_us"] for r in results) / 1000
            p99 = statistics.median(r["p99_us"] for r in results) / 1000
            worst = max(r["p99_us"] for r in results) / 1000
            size = int(get(port, paths[name]).getheader("Content-Length") or 0)
            errors = sum(r["errors"] + r["non2xx"] for r in results)
            print(
                f"{name:<14} {size:>6} {rps:>11,.0f} {p50:>8.2f} {p99:>8.2f} {worst:>9.2f} "
                f"{rps / ceiling:>10.2f} {errors:>7}"
            )
            if name != "trivial" and (rps < TARGET_RPS or p99 >= TARGET_P99_MS or errors):
                failed.append(name)
        verdict = "met" if not failed else f"NOT met for {', '.join(failed)}"
        print(
            f"\ntarget: >= {TARGET_RPS:,} requests/s and p99 < {TARGET_P99_MS:g} ms for each "
            f"page (median round), no errors: {verdict}"
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
