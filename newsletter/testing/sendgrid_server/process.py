"""Running a server outside the test's interpreter: `main` is the command line (also behind
`newsletter sendgrid-server`), `ServerProcess` starts it as a child process for benchmarks,
so it has a core of its own instead of sharing the sender's.

With ``--json`` the child writes one JSON object per line on stdout (``{"url", "public_key"}``
at start, ``{"window": ...}`` on SIGUSR1, ``{"stats": ...}`` at exit): the parent reads
records, not words at positions. Without it, the same facts are printed for people.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from newsletter.testing.sendgrid_server.config import MAX_BODY_BYTES, ServerConfig
from newsletter.testing.sendgrid_server.server import SendGridServer
from newsletter.testing.sendgrid_server.sink import SinkServer
from newsletter.testing.sendgrid_server.stats import ServerStats, SinkWindow
from newsletter.testing.sendgrid_server.transport import BaseServer

MODULE = "newsletter.testing.sendgrid_server"


class ServerProcess:
    """The server in a process of its own. `stop()` returns the recipients it accepted."""

    def __init__(self, api_key: str, *, record: bool = False, sink: bool = False) -> None:
        args = [sys.executable, "-m", MODULE, "--port", "0", "--api-key", api_key, "--json"]
        args += ["--quiet"] + ([] if record else ["--no-record"]) + (["--sink"] if sink else [])
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        started = self._read()
        self.url: str = started["url"]
        self.public_key_base64: str = started["public_key"]
        self.stats: ServerStats | None = None  # known once stopped

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the SendGrid server process exited ({self.process.poll()})")
        data: dict[str, Any] = json.loads(line)
        return data

    def window(self) -> SinkWindow:
        """Sink mode: what the sink accepted since the last call, first and last request
        times included (SIGUSR1 makes it write that record and start a new window)."""
        self.process.send_signal(signal.SIGUSR1)
        return SinkWindow.from_json(self._read()["window"])

    def stop(self) -> int:
        """Stop the child (SIGINT) and return the recipients it accepted; `stats` has all."""
        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=60)
        self.stats = ServerStats.from_json(json.loads(out.strip().splitlines()[-1])["stats"])
        return self.stats.recipients_accepted


def _parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES)
    parser.add_argument("--event-webhook-url", default=None)
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per line on stdout (for programs)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run the server in the foreground until Ctrl-C (demos, manual runs, benchmarks)."""
    args = _parser().parse_args(argv)
    config = ServerConfig(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        record=not args.no_record,
        max_body_bytes=args.max_body_bytes,
        event_webhook_url=args.event_webhook_url,
        log_requests=not args.quiet,
    )
    server: BaseServer = SinkServer(config) if args.sink else SendGridServer(config)
    # Both servers sign events with a key of their own making; only the contract server posts.
    public_key = server.public_key_base64 if isinstance(server, SendGridServer) else None

    def say(record: dict[str, Any], text: str) -> None:
        print(json.dumps(record) if args.json else text, flush=True)

    def window(*_: object) -> None:
        if isinstance(server, SinkServer):
            w = server.take_window()
            say(
                {"window": w.as_json()},
                f"window: {w.requests} requests / {w.recipients} recipients"
                f" in {w.seconds:.3f} s ({w.rate:,.0f} recipients/s)",
            )

    with server:
        if hasattr(signal, "SIGUSR1"):
            signal.signal(signal.SIGUSR1, window)
        try:  # Ctrl-C may come as soon as the url is out: still print the summary
            if args.json:
                say({"url": server.url, "public_key": public_key}, "")
            else:
                print(server.url, flush=True)
                if public_key:
                    print(f"event webhook public key: {public_key}", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    stats = server.stats()
    say(
        {"stats": stats.as_json()},
        f"stopped: {stats.requests_accepted} requests / {stats.recipients_accepted}"
        " recipients accepted",
    )
