"""`newsletter feeds poll` (one round over every [[feeds]] feed now) and `newsletter feeds
list`. Parsing and printing only: the work is `newsletter.feeds`'."""

from __future__ import annotations

import sys

import click

from newsletter.cli.app import App, pass_app


@click.group()
def feeds() -> None:
    """The feeds whose entries are queued as articles ([[feeds]] in newsletter.toml)."""


@feeds.command("poll")
@pass_app
def feeds_poll(app: App) -> None:
    """Fetch every feed now and queue its new entries; say what was queued, held (with the
    article contract's errors) and skipped. Exit 1 when a feed failed (the others still
    count)."""
    from newsletter.feeds import poll_feeds

    if not app.settings.feeds:
        click.echo('no feed: add [[feeds]] url = "..." to newsletter.toml')
        return
    report = poll_feeds(app.store, app.settings)
    for outcome in report.feeds:
        if outcome.error:
            click.echo(f"failed {outcome.url}: {outcome.error}", err=True)
            continue
        state = "not modified" if outcome.not_modified else (
            f"queued {len(outcome.queued)}, held {len(outcome.held)}, skipped {outcome.skipped}"
        )  # fmt: skip
        click.echo(f"{outcome.url}: {state}")
        for name in outcome.queued:
            click.echo(f"  queued {name}")
        for what, why in outcome.held:
            click.echo(f"  held {what}:")
            for line in why.splitlines():
                click.echo(f"    {line}")
    failed = len(report.failed)
    click.echo(
        f"queued {report.queued}, held {report.held}, skipped {report.skipped}"
        + (f"; {failed} feed{'s' if failed > 1 else ''} failed (retried later)" if failed else "")
    )
    if failed:
        sys.exit(1)


@feeds.command("list")
@pass_app
def feeds_list(app: App) -> None:
    """Each feed with its last fetch, its next one and its last error."""
    states = app.store.feeds.states()
    zone = app.settings.timezone
    for feed in app.settings.feeds:
        state = states.get(feed.url)
        if state is None:
            click.echo(f"{feed.url}: never fetched (every {feed.every})")
            continue
        fetched = (
            state.fetched_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
            if state.fetched_at
            else "-"
        )
        due = state.next_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if state.next_at else "-"
        line = f"{feed.url}: fetched {fetched}, next {due}"
        if state.last_error:
            line += f"; failing ({state.failures}): {state.last_error}"
        click.echo(line)
