"""Peak memory of `serve` and sign-up latency while the workspace imports a large CSV.

    .venv/bin/python benchmarks/import_upload.py [--rows 200000]

What runs: the real `newsletter serve` in a child process, an editor signed in over HTTP,
a ROWS-row CSV uploaded to /admin/subscribers/import while another thread posts public
sign-ups to /subscribe; the server's resident memory is sampled from /proc every 50 ms.
Prints the upload's time, the server's peak RSS and the sign-ups' latencies.
"""

from __future__ import annotations

import argparse
import http.client
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._newsletter import EDITOR, PASSWORD, serve_signed_in  # noqa: E402
from newsletter.editors import add_editor  # noqa: E402
from newsletter.settings import load_settings, write_default_config  # noqa: E402
from newsletter.store import Store  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        folder = Path(tmp)
        write_default_config(folder)
        store = Store(load_settings(folder / "newsletter.toml", env={}).database_url)
        add_editor(store, EDITOR, PASSWORD)
        store.close()
        body = b"email,name\n" + b"".join(
            f"reader{i:07d}@example.com,Reader {i}\n".encode() for i in range(args.rows)
        )
        with serve_signed_in(folder) as (server, client):
            _, page = client.request("GET", "/admin/subscribers")
            token = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
            idle = rss_mb(server.pid)
            done = threading.Event()
            peak = [idle]
            latencies: list[float] = []

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], rss_mb(server.pid))
                    time.sleep(0.05)

            def sign_ups() -> None:
                n = 0
                while not done.is_set():
                    n += 1
                    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=120)
                    started = time.perf_counter()
                    conn.request(
                        "POST",
                        "/subscribe",
                        body=urlencode({"email": f"signup{n}@example.org"}).encode(),
                        headers={"Content-Type": "application/x-www-form-urlencoded"},
                    )
                    conn.getresponse().read()
                    latencies.append((time.perf_counter() - started) * 1000)
                    conn.close()
                    time.sleep(0.2)

            threads = [threading.Thread(target=sample), threading.Thread(target=sign_ups)]
            for thread in threads:
                thread.start()
            boundary = "benchboundary"
            multipart = (
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
                    f"{token}\r\n--{boundary}\r\n"
                    'Content-Disposition: form-data; name="file"; filename="big.csv"\r\n'
                    "Content-Type: text/csv\r\n\r\n"
                ).encode()
                + body
                + f"\r\n--{boundary}--\r\n".encode()
            )
            conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=3600)
            headers = {
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items()),
            }
            started = time.perf_counter()
            conn.request("POST", "/admin/subscribers/import", body=multipart, headers=headers)
            status = conn.getresponse().status
            seconds = time.perf_counter() - started
            done.set()
            for thread in threads:
                thread.join()
            print(
                f"upload: {args.rows:,} rows, {len(body) / 1e6:.1f} MB, HTTP {status}, "
                f"{seconds:.1f} s"
            )
            print(f"serve RSS: idle {idle:.0f} MB, peak {peak[0]:.0f} MB")
            if latencies:
                print(
                    f"sign-ups during the import: {len(latencies)}, median "
                    f"{statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms"
                )


if __name__ == "__main__":
    main()
