"""How much memory `newsletter serve` holds while 100 clients each push a 15 MiB body at the
SendGrid webhook at once, without a valid signature (anyone can do this).

    .venv/bin/python benchmarks/webhook_memory.py [--clients 100] [--mib 15]

`newsletter serve` runs in a subprocess (SQLite, a generated webhook key); its resident set
(VmRSS from /proc) is sampled every 5 ms. Four rounds of `--clients` concurrent POSTs:
  stale      a timestamp ten minutes old, Content-Length 15 MiB: refused from the headers
  declared   fresh timestamp, well-formed but wrong signature, Content-Length 15 MiB: 413
             from the headers
  chunked    the same without Content-Length (chunked): read up to the cap, then 413
  under-cap  the same with a 3.9 MiB body under the cap, sent whole: each body is read and
             its signature refused (403) - the most a stranger can make the server hold
Printed per round: answers, seconds, RSS before / peak / after. The bound comes from the
body slots (newsletter.web.events.BODY_SLOTS x BODY_LIMIT), not from the client count.
"""

from __future__ import annotations

import argparse
import base64
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from newsletter.settings import write_default_config  # noqa: E402
from newsletter.web.events import (  # noqa: E402
    BODY_LIMIT,
    BODY_SLOTS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
)

NEWSLETTER = Path(sys.executable).with_name("newsletter")
MIB = 1024 * 1024
CHUNK = b"x" * (256 * 1024)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0.0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.005)


def one_post(port: int, head: bytes, body_bytes: int, chunked: bool, answers: Counter) -> None:
    """Send the head, then the body for as long as the server reads; count its answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    status = "no answer"
    try:
        sock.sendall(head)
        sent = 0
        while sent < body_bytes:
            readable, writable, _ = select.select([sock], [sock], [], 30)
            if readable:
                break  # the server answered before the whole body went
            if not writable:
                break
            piece = CHUNK[: min(len(CHUNK), body_bytes - sent)]
            data = (f"{len(piece):x}\r\n".encode() + piece + b"\r\n") if chunked else piece
            try:
                sock.sendall(data)
            except OSError:
                break
            sent += len(piece)
        else:
            if chunked:
                try:
                    sock.sendall(b"0\r\n\r\n")
                except OSError:
                    pass
        try:
            reply = sock.recv(4096)
            if reply.startswith(b"HTTP/1.1 "):
                status = reply.split()[1].decode()
        except OSError:
            status = "reset"
    finally:
        sock.close()
        answers[status] += 1


def round_of(name: str, port: int, pid: int, clients: int, size: int, head: bytes, chunked: bool):
    answers: Counter = Counter()
    before = rss_mib(pid)
    sampler = Sampler(pid)
    sampler.start()
    started = time.perf_counter()
    threads = [
        threading.Thread(target=one_post, args=(port, head, size, chunked, answers))
        for _ in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    time.sleep(0.5)
    sampler.running = False
    sampler.join()
    after = rss_mib(pid)
    print(
        f"{name:10} {clients} x {size / MIB:.1f} MiB: answers {dict(answers)} in {took:.1f} s; "
        f"RSS before {before:.0f} MiB, peak {max(sampler.peak, after):.0f} MiB, "
        f"after {after:.0f} MiB",
        flush=True,
    )


def head(stamp: str, signature: str, length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST /webhooks/sendgrid HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
        f"\r\n{SIGNATURE_HEADER}: {signature}\r\n{TIMESTAMP_HEADER}: {stamp}\r\n{framing}\r\n\r\n"
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--mib", type=float, default=15)
    args = parser.parse_args()
    size = int(args.mib * MIB)
    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    # A real signature, of another body: well-formed, and wrong for what is sent.
    wrong = base64.b64encode(key.sign(b"0[]", ec.ECDSA(hashes.SHA256()))).decode()
    with tempfile.TemporaryDirectory(prefix="nl-webhook-mem-") as tmp:
        folder = Path(tmp)
        write_default_config(folder)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))
        }
        env["SENDGRID_WEBHOOK_PUBLIC_KEY"] = public
        server = subprocess.Popen(
            [str(NEWSLETTER), "serve", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("newsletter serve did not start") from None
                    time.sleep(0.1)
            print(
                f"newsletter serve pid {server.pid}; cap {BODY_LIMIT / MIB:.0f} MiB x "
                f"{BODY_SLOTS} body slots; RSS at start {rss_mib(server.pid):.0f} MiB",
                flush=True,
            )
            stale = str(int(time.time()) - 600)
            now = str(int(time.time()))
            under = BODY_LIMIT - 100 * 1024
            rounds = [
                ("stale", size, head(stale, wrong, size), False),
                ("declared", size, head(now, wrong, size), False),
                ("chunked", size, head(now, wrong, None), True),
                ("under-cap", under, head(now, wrong, under), False),
            ]
            for name, length, request_head, chunked in rounds:
                round_of(name, port, server.pid, args.clients, length, request_head, chunked)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
