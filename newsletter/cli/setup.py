"""Getting a newsletter ready: `init` (the folder) and `doctor` (will its mail land?)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from newsletter.cli import reports
from newsletter.cli.app import App, pass_app


@click.command()
@click.argument("folder", type=click.Path(path_type=Path), default=".")
@click.option("--sample", is_flag=True, help="Queue the bundled sample articles and subscribers.")
def init(folder: Path, sample: bool) -> None:
    """Create newsletter.toml, issues/, outbox/ and the database in FOLDER."""
    from newsletter import publish
    from newsletter.settings import load_settings, write_default_config
    from newsletter.store import Store

    path = write_default_config(folder)
    settings = load_settings(path)
    store = Store(settings.database_url)
    reports.echo(reports.created(path))
    if sample:
        from newsletter.resources import sample_articles, sample_subscribers
        from newsletter.subscribers import import_csv

        for article in sample_articles():
            publish.queue_add(store, settings, article)
            reports.echo(reports.queued(article.name))
        result = import_csv(store, sample_subscribers())
        reports.echo(reports.sample_imported(result.imported))


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
    reports.echo(report.to_json() if as_json else format_report(report))
    if report.has_errors:
        sys.exit(1)
