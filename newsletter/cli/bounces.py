"""`newsletter bounces`: read the bounce mailbox once (`newsletter.bounces.apply`) and print
what it did."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from newsletter.cli.app import App, pass_app

if TYPE_CHECKING:
    from newsletter.bounces.apply import BouncesReport


@click.command("bounces")
@click.argument("mailbox", required=False)
@pass_app
def bounces(app: App, mailbox: str | None) -> None:
    """Apply bounces and complaints from MAILBOX (a Maildir, an mbox file or
    imaps://user@host/FOLDER; default: [bounces] in newsletter.toml). Each message counts
    once, however often the mailbox is read."""
    from newsletter.bounces.apply import apply_mailbox, source_of

    source = source_of(app.settings, mailbox)
    print_report(apply_mailbox(app.store, app.settings, source))


def print_report(report: BouncesReport) -> None:
    click.echo(
        f"read {report.read} messages from {report.source}"
        + (f" ({report.already_handled} handled before)" if report.already_handled else "")
    )
    click.echo(
        f"permanent: {report.permanent}, temporary: {report.temporary}, "
        f"complaints: {report.complaints}, not understood: {len(report.not_understood)}"
    )
    if report.bounced:
        click.echo(f"now bounced: {', '.join(report.bounced)}")
    if report.complained:
        click.echo(f"now complained (unsubscribed): {', '.join(report.complained)}")
    for item in report.not_understood:
        click.echo(f"not understood: {item.key}: {item.reason}")
    for item in report.unmatched:
        click.echo(f"no subscriber: {item.key}: {item.reason}")
