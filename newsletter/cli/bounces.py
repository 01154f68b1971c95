"""`newsletter bounces`: read the bounce mailbox once (`newsletter.bounces.apply`) and print
what it did."""

from __future__ import annotations

import click

from newsletter.cli.app import App, pass_app
from newsletter.cli.reports import echo, people


@click.command("bounces")
@click.argument("mailbox", required=False)
@pass_app
def bounces(app: App, mailbox: str | None) -> None:
    """Apply bounces and complaints from MAILBOX (a Maildir, an mbox file or
    imaps://user@host/FOLDER; default: [bounces] in newsletter.toml). Each message counts
    once, however often the mailbox is read."""
    from newsletter.bounces.apply import apply_mailbox, source_of

    source = source_of(app.settings, mailbox)
    echo(people.bounces(apply_mailbox(app.store, app.settings, source)))
