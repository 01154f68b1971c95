"""`newsletter feeds poll` (one round over every [[feeds]] feed now) and `newsletter feeds
list`. Parsing and printing only: the work is `newsletter.feeds`'."""

from __future__ import annotations

import sys

import click

from newsletter.cli.app import App, pass_app
from newsletter.cli.reports import articles, echo


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
        echo(articles.NO_FEED)
        return
    report = poll_feeds(app.store, app.settings)
    for outcome in report.feeds:  # in order, a failure on stderr between the others
        if outcome.error:
            echo(articles.feed_failed(outcome), err=True)
        else:
            echo(articles.feed_outcome(outcome))
    echo(articles.poll_summary(report))
    if report.failed:
        sys.exit(1)


@feeds.command("list")
@pass_app
def feeds_list(app: App) -> None:
    """Each feed with its last fetch, its next one and its last error."""
    from newsletter.feeds import feed_statuses

    echo(articles.feed_lines(feed_statuses(app.store, app.settings), app.settings))
