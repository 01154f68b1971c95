"""`newsletter run`: what a due tick does, now (`publish.publish_tick`, or `plan_run` for
`--dry-run`), behind the doctor's gate; SIGINT or SIGTERM stop it between batches (130)."""

from __future__ import annotations

import sys

import click

from newsletter.cli.app import LAYOUT_OPTION, App, Bars, exit_after_sending, pass_app
from newsletter.cli.reports import echo, sending
from newsletter.exceptions import NewsletterError


@click.command()
@click.option("--once", is_flag=True, help="Accepted for scripts; 'run' always does one tick.")
@click.option("--force", is_flag=True, help="Send even if the issue's check finds errors.")
@click.option(
    "--dry-run", is_flag=True, help="Show what would go to whom; send and use up nothing."
)
@LAYOUT_OPTION
@pass_app
def run(app: App, once: bool, force: bool, dry_run: bool, layout: str | None) -> None:
    """Do what a due tick does, now: finish any interrupted issue, then pick the queued
    articles, build the issue and send it to every active subscriber. An article whose check
    fails is held and the next one goes out instead (--force sends it anyway). The check's
    warnings are printed before sending. With no active subscriber nothing is sent and the
    articles stay queued."""
    from newsletter import delivery, publish
    from newsletter.doctor.gate import before_run
    from newsletter.providers import make_provider
    from newsletter.records import utcnow

    if dry_run:
        plan = publish.plan_run(app.store, app.settings, force=force, layout=layout)
        echo(sending.run_plan(plan, app.settings))
        if plan.refused:
            why = publish.no_audience(app.store, app.settings)
            raise NewsletterError(why or publish.NO_ACTIVE_SUBSCRIBER)
        return
    provider = make_provider(app.settings)  # a bad key or setting is named first
    gate = before_run(app.settings, app.store, force=force, now=utcnow())
    echo(gate.lines, err=True)
    if gate.refuse:
        sys.exit(1)
    bars = Bars()
    with delivery.stop_on_signals() as stop:
        try:
            hooks = delivery.SendHooks(stop=stop, progress=bars)
            ctx = publish.TickContext.of(app.store, app.settings, provider, hooks=hooks)
            result = publish.publish_tick(
                ctx,
                force=force,
                layout=layout,
                warn=lambda line: echo(line, err=True),
            )
        finally:
            bars.close()
    echo(map(sending.skipped, result.errors), err=True)
    echo(sending.held(result.held_articles), err=True)
    for report in result.resumed:
        echo(sending.resumed(report))
    if result.report is None:
        if not stop.is_set():
            echo(sending.NOTHING_DUE)
        exit_after_sending(stop, result.resumed)
        if result.held_articles:
            sys.exit(1)
        return
    echo(sending.sent_articles(result.articles))
    echo(sending.send_report(result.report))
    exit_after_sending(stop, [*result.resumed, result.report])
