"""Getting a newsletter ready: `init` (the folder) and `doctor` (will its mail land?)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from newsletter.cli.app import App, pass_app
from newsletter.cli.reports import articles, echo


@click.command()
@click.argument("folder", type=click.Path(path_type=Path), default=".")
@click.option("--sample", is_flag=True, help="Queue the bundled sample articles and subscribers.")
def init(folder: Path, sample: bool) -> None:
    """Create newsletter.toml, issues/, outbox/ and the database in FOLDER."""
    from newsletter.folder import create_folder

    echo(articles.new_folder(create_folder(folder, sample=sample)))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="The findings as JSON, for scripts.")
@pass_app
def doctor(app: App, as_json: bool) -> None:
    """Will it land? Check the sender's DNS (SPF, DKIM, DMARC, the From domain), the
    unsubscribe link and the bulk-sender rules, with the record to publish for each problem
    (NEWSLETTER_DNS_SERVER=host:port asks that DNS server). Exit 1 on any error."""
    from newsletter.doctor import diagnose
    from newsletter.doctor.gate import remember
    from newsletter.doctor.report import format_report

    report = diagnose(app.settings, app.store)
    remember(app.store, report)
    echo(report.to_json() if as_json else format_report(report))
    if report.has_errors:
        sys.exit(1)
