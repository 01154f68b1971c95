"""`newsletter queue ...`: the articles waiting to go out, in order (`publish`'s queue)."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.app import App, one_of, pass_app
from newsletter.cli.reports import articles, echo


@click.group()
def queue() -> None:
    """The articles waiting to go out, in order."""


@queue.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--not-before", help="Earliest send time, e.g. '2026-12-01 09:00'.")
@click.option("--tz", help="Time zone of --not-before (default: the newsletter's).")
@click.option(
    "--editor",
    envvar="NEWSLETTER_EDITOR",
    help="Your editor address (or NEWSLETTER_EDITOR), recorded as who queued it: with "
    '[issue] approval = "required", another editor approves its issue.',
)
@pass_app
def queue_add(
    app: App, file: Path, not_before: str | None, tz: str | None, editor: str | None
) -> None:
    """Copy FILE into issues/ and queue it last. Problems with the article contract are
    listed by file and line; errors among them keep the file out of the queue."""
    from newsletter import approval, publish
    from newsletter.conformance import validate_file

    editor_id, email = approval.editor_named(app.store, editor) if editor else (None, None)
    article, target = publish.queue_add(
        app.store, app.settings, file, not_before, tz, queued_by=editor_id
    )
    echo(map(str, validate_file(file, app.settings.contract)), err=True)
    echo(articles.queued(target.name, article.title))
    if app.settings.approval.required:
        echo([articles.queued_by(email)], err=True)


@queue.command("list")
@pass_app
def queue_list(app: App) -> None:
    """Show the queue in sending order with the expected send date of each article."""
    from newsletter import publish

    view = publish.queue_view(app.store, app.settings)
    upcoming = publish.next_issue(app.store, app.settings, view) if view.entries else None
    # The listing and its notes go to one stream, so they never interleave in a shared pipe.
    echo(articles.queue_listing(view, upcoming, publish.missed_tick(app.store), app.settings))


@queue.command("layout")
@click.argument("layout", type=click.Choice(("automatic", "full", "digest")))
@pass_app
def queue_layout(app: App, layout: str) -> None:
    """Choose the layout of the next issue the scheduler or 'run' makes: full, digest, or
    automatic (a digest for several articles, else [issue] layout). That issue uses the choice
    up; the workspace's queue page sets the same choice."""
    from newsletter import publish

    echo(articles.next_layout(publish.choose_next_layout(app.store, layout)))


@queue.command("release")
@click.argument("article")
@pass_app
def queue_release(app: App, article: str) -> None:
    """Put ARTICLE, held because its check failed, back in its place in the queue (once fixed).
    The next tick checks it again."""
    from newsletter import publish

    echo(articles.released(publish.release_article(app.store, article)))


@queue.command("move")
@click.argument("article")
@one_of("direction", {"--up": "One place earlier.", "--down": "One place later."})
@pass_app
def queue_move(app: App, article: str, direction: str) -> None:
    """Move ARTICLE (its file name in issues/) one place up or down the queue."""
    from newsletter import publish

    did_move = publish.move_article(app.store, article, up=direction == "up")
    echo(articles.moved(Path(article).name, direction, did_move))


@queue.command("remove")
@click.argument("article")
@pass_app
def queue_remove(app: App, article: str) -> None:
    """Take ARTICLE (its file name in issues/) off the queue; the file is kept."""
    from newsletter import publish

    echo(articles.removed_article(publish.remove_article(app.store, article)))
