"""Running the server outside the test's interpreter: `main` is the command line (also behind
`newsletter sendgrid-server`), `ServerProcess` starts it as a child process for benchmarks,
so it has a core of its own instead of sharing the sender's."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from newsletter.testing.sendgrid_server.server import SendGridServer

MODULE = "newsletter.testing.sendgrid_server"


class ServerProcess:
    """The server in a process of its own. `stop()` returns the recipients it accepted."""

    def __init__(self, api_key: str, *, record: bool = False, sink: bool = False) -> None:
        args = [sys.executable, "-m", MODULE, "--port", "0", "--api-key", api_key, "--quiet"]
        args += [] if record else ["--no-record"]
        args += ["--sink"] if sink else []
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        self.process.stdout.readline()  # the webhook public key line

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)  # prints "stopped: N requests / M recipients"
        out, _ = self.process.communicate(timeout=60)
        last = out.strip().splitlines()[-1]
        return int(last.split("/")[1].split()[0])


def main(argv: list[str] | None = None) -> None:
    """Run the server in the foreground until Ctrl-C (demos, manual runs, benchmarks)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="Local SendGrid-compatible v3 Mail Send server.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025, help="0 picks a free port")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("SENDGRID_API_KEY", "SG.test-key"),
        help="key clients must send (default: $SENDGRID_API_KEY or SG.test-key)",
    )
    parser.add_argument(
        "--no-record", action="store_true", help="keep counters only (large benchmarks)"
    )
    parser.add_argument(
        "--sink",
        action="store_true",
        help="answer 202 and count recipients, no contract checks (a sender's ceiling)",
    )
    parser.add_argument("--max-body-bytes", type=int, default=30 * 1024 * 1024)
    parser.add_argument("--event-webhook-url", default=None)
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    server = SendGridServer(
        args.api_key,
        args.host,
        args.port,
        record=not args.no_record,
        sink=args.sink,
        max_body_bytes=args.max_body_bytes,
        event_webhook_url=args.event_webhook_url,
        log_requests=not args.quiet,
    )
    with server:
        try:  # Ctrl-C may come as soon as the url is out: still print the summary
            print(server.url, flush=True)
            print(f"event webhook public key: {server.public_key_base64}", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    print(
        f"stopped: {server.requests_accepted} requests / {server.recipients_accepted}"
        f" recipients accepted",
        flush=True,
    )
