"""The long-running processes: `serve` (the web side), `scheduler` (the cadence), `worker`
(helps send) and `sendgrid-server` (the local test server, for demos and tests)."""

from __future__ import annotations

import sys

import click

from newsletter.cli.app import App, pass_app
from newsletter.cli.reports import echo, sending


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="A line per request on stderr (a reverse proxy in front may log them already).",
)
@pass_app
def serve(app: App, host: str, port: int, access_log: bool) -> None:
    """Run the web side: sign-up, unsubscribe, archive, SendGrid events, and the editors'
    workspace at /admin (accounts: 'newsletter editors add')."""
    from newsletter.web.app import serve as serve_web

    serve_web(app.settings, host, port, access_log=access_log)


@click.command()
@pass_app
def scheduler(app: App) -> None:
    """Run the publication cadence until stopped (Ctrl-C stops cleanly)."""
    from newsletter.scheduler import run_scheduler

    run_scheduler(app.store, app.settings, echo=click.echo)


@click.command()
@click.option("--once", is_flag=True, help="Stop when no issue has anything left to claim.")
@pass_app
def worker(app: App, once: bool) -> None:
    """Help send the issues in progress, alongside other workers on the same database."""
    from newsletter import delivery
    from newsletter.doctor.gate import unattended
    from newsletter.exceptions import WorkerStopping
    from newsletter.providers import make_provider
    from newsletter.records import utcnow

    provider = make_provider(app.settings)
    # Nobody reads a worker's terminal: on deliverability errors the gate pauses the issues in
    # progress with the reason and the worker stops (the scheduler's check, at start).
    gate = unattended(app.settings, app.store, now=utcnow())
    echo(gate.lines, err=True)
    if gate.refuse:
        sys.exit(1)
    echo(sending.worker_started(delivery.PROCESS_ID, app.store.safe_url))
    try:
        # SIGINT and SIGTERM: finish the batch in flight, then stop.
        with delivery.stop_on_signals() as stop:
            ctx = delivery.SendContext.of(app.store, app.settings, provider)
            report = delivery.run_worker(ctx, stop=stop, once=once, echo=click.echo)
    except KeyboardInterrupt:
        echo(sending.WORKER_STOPPED)
        return
    except WorkerStopping:
        echo(sending.WORKER_STOPPED_BETWEEN_BATCHES)
        return
    echo(sending.worker_done(report))


@click.command("sendgrid-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True, type=int)
@click.option(
    "--api-key",
    envvar="SENDGRID_API_KEY",
    default="SG.local-test-key",
    help="The key it accepts (default: SENDGRID_API_KEY).",
)
@click.option("--no-record", is_flag=True, help="Count messages only (for benchmarks).")
@click.option(
    "--sink", is_flag=True, help="Answer 202 and count recipients, no contract checks (ceiling)."
)
def sendgrid_server(host: str, port: int, api_key: str, no_record: bool, sink: bool) -> None:
    """Run the local SendGrid-compatible server (for demos and tests) until Ctrl-C."""
    from newsletter.testing.sendgrid_server import main as server_main  # tests only: lazily

    args = ["--host", host, "--port", str(port), "--api-key", api_key]
    server_main(args + (["--no-record"] if no_record else []) + (["--sink"] if sink else []))
