"""The commands on issues already made: `status`, `issues`, `pause`/`cancel` (one
`status_command`), `resume` (goes on sending now), `resolve` and `send-test`
(`newsletter.issue_state`, `delivery`, `proofs`)."""

from __future__ import annotations

import sys

import click

from newsletter.cli.app import App, Bars, exit_after_sending, one_of, pass_app
from newsletter.cli.reports import articles, echo, issues, sending
from newsletter.exceptions import NewsletterError
from newsletter.records import IssueStatus


@click.command()
@click.argument("issue_id", type=int, required=False)
@pass_app
def status(app: App, issue_id: int | None) -> None:
    """Counts by delivery state, engagement and the last error of ISSUE (default: the latest
    issue), and the articles held in the queue."""
    from newsletter import publish
    from newsletter.issue_state import status_report

    echo(issues.status(status_report(app.store, issue_id), app.settings))
    echo(articles.held_articles(publish.held_articles(app.store)))


@click.command("issues")
@pass_app
def issues_list(app: App) -> None:
    """List issues, newest first."""
    from newsletter.issue_state import list_issues

    echo(issues.issue_lines(list_issues(app.store), app.settings))


def status_command(name: str, status: IssueStatus, help: str) -> click.Command:
    """A command that moves ISSUE to `status` (`delivery.change_issue_status` says from
    which statuses it may), taking effect between batches."""

    @click.command(name, help=help)
    @click.argument("issue_id", type=int)
    @pass_app
    def change(app: App, issue_id: int) -> None:
        from newsletter import delivery

        delivery.change_issue_status(app.store, issue_id, status)
        echo(issues.status_changed(issue_id, status))

    return change


pause = status_command("pause", IssueStatus.PAUSED, "Stop sending ISSUE after the batch in flight.")
cancel = status_command("cancel", IssueStatus.CANCELLED, "Send nothing more of ISSUE.")


@click.command()
@click.argument("issue_id", type=int)
@pass_app
def resume(app: App, issue_id: int) -> None:
    """Let a paused (or interrupted) ISSUE go on and send the rest now; when another sender
    holds the sending lease (a scheduler), that one sends it."""
    from newsletter import delivery
    from newsletter.providers import make_provider

    bars = Bars()
    with delivery.stop_on_signals() as stop:
        try:
            ctx = delivery.SendContext.of(
                app.store,
                app.settings,
                make_provider(app.settings),
                hooks=delivery.SendHooks(stop=stop, progress=bars),
            )
            lease = delivery.SendingLease.of(app.store, app.settings)
            report = delivery.resume_issue(ctx, issue_id, lease=lease)
        finally:
            bars.close()
    if report is None:
        echo(sending.resumed_elsewhere(issue_id))
        return
    echo(sending.send_report(report))
    exit_after_sending(stop, [report])


@click.command()
@click.argument("issue_id", type=int)
@one_of(
    "action",
    {"--resend": "Send the uncertain ones again.", "--mark-sent": "Count them as delivered."},
)
@pass_app
def resolve(app: App, issue_id: int, action: str) -> None:
    """Settle the uncertain deliveries of ISSUE."""
    from newsletter import delivery

    resend = action == "resend"
    moved = delivery.resolve_uncertain(app.store, issue_id, resend=resend)
    echo(issues.resolved(issue_id, moved, resend))


@click.command("send-test")
@click.argument("issue_id", type=int)
@click.option("--to", "to", help="Send one copy to this address.")
@click.option(
    "--sandbox",
    is_flag=True,
    help="Validate every request of the issue in SendGrid's sandbox; nothing is delivered.",
)
@pass_app
def send_test(app: App, issue_id: int, to: str | None, sandbox: bool) -> None:
    """Send ISSUE once to the editor, or validate it whole with --sandbox."""
    from newsletter import proofs
    from newsletter.providers import make_provider

    provider = make_provider(app.settings)
    if sandbox:
        if provider.name != "sendgrid":
            raise NewsletterError('--sandbox needs provider = "sendgrid"')
        bars = Bars()
        try:
            report = proofs.sandbox_validate(
                app.store, app.settings, provider, issue_id, progress_factory=bars
            )
        finally:
            bars.close()
        echo(issues.sandbox(report))
        if report.problems:
            sys.exit(1)
        return
    if not to:
        raise NewsletterError("say --to ADDRESS (or --sandbox)")
    proofs.send_test(app.store, app.settings, provider, issue_id, to)
    echo(issues.proof_sent(issue_id, to, provider.name))
