"""`newsletter subscribers ...`: the list in and out as CSV (`newsletter.subscribers`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from newsletter.cli.app import App, pass_app
from newsletter.cli.reports import echo, people


@click.group()
def subscribers() -> None:
    """Import, list, export and remove subscribers."""


@subscribers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--reactivate",
    is_flag=True,
    help="Let the file make known unsubscribed, bounced, complained or unconfirmed "
    "addresses active again (never done without it).",
)
@click.option(
    "--welcome", is_flag=True, help="Send the welcome email to the active readers it adds."
)
@pass_app
def subscribers_import(app: App, file: Path, reactivate: bool, welcome: bool) -> None:
    """Import FILE.csv (columns email, name, and optionally status, created_at, tags as
    `export` writes them): the whole file in one transaction, nothing if a row is badly
    quoted."""
    from newsletter.subscribers import import_csv

    result = import_csv(app.store, file, reactivate=reactivate)
    echo(people.import_problems(file, result), err=True)
    echo(people.import_summary(result))
    if welcome:
        from newsletter.welcome import welcome_imported

        echo(people.welcomed(welcome_imported(app.settings, app.store, result.added)))


@subscribers.command("list")
@click.option("--status", help="Only this status (active, unsubscribed, bounced, ...).")
@pass_app
def subscribers_list(app: App, status: str | None) -> None:
    """List subscribers."""
    from newsletter.subscribers import list_subscribers

    echo(people.subscriber_lines(list_subscribers(app.store, status)))


@subscribers.command("remove")
@click.argument("email")
@pass_app
def subscribers_remove(app: App, email: str) -> None:
    """Delete a subscriber and their delivery history."""
    from newsletter.subscribers import remove_subscriber

    remove_subscriber(app.store, email)
    echo(people.removed_subscriber(email))


@subscribers.command("export")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout)."
)
@pass_app
def subscribers_export(app: App, out: Path | None) -> None:
    """Write every subscriber with their status, time zone and tags as CSV (`subscribers import` reads it back;
    cells a spreadsheet would run as formulas get a leading apostrophe, which import removes)."""
    from newsletter.subscribers import export_subscribers

    if out is None:
        export_subscribers(app.store, sys.stdout)
        return
    with out.open("w", encoding="utf-8", newline="") as handle:
        count = export_subscribers(app.store, handle)
    echo(people.exported(count, out), err=True)
