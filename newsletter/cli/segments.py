"""`newsletter subscribers tag/untag` (`cli/__init__.py` adds them to the `subscribers`
group) and `newsletter segment count`: tags and segments.
Parses and prints only; the rules are newsletter.tags, newsletter.segments and the store's."""

from __future__ import annotations

import click

from newsletter.cli.app import App, pass_app
from newsletter.cli.reports import echo, people


@click.command("tag")
@click.argument("tag")
@click.argument("emails", nargs=-1, required=True)
@pass_app
def tag(app: App, tag: str, emails: tuple[str, ...]) -> None:
    """Give TAG to the subscribers EMAILS (all of them, or none if one is unknown)."""
    from newsletter.segments import tag_subscribers

    echo(people.tagged(tag_subscribers(app.store, emails, tag), len(emails)))


@click.command("untag")
@click.argument("tag")
@click.argument("emails", nargs=-1, required=True)
@pass_app
def untag(app: App, tag: str, emails: tuple[str, ...]) -> None:
    """Take TAG from the subscribers EMAILS."""
    from newsletter.segments import untag_subscribers

    echo(people.untagged(untag_subscribers(app.store, emails, tag)))


@click.group()
def segment() -> None:
    """Segments: who an issue goes to (`tag:films and not tag:paused`, `joined<30d`,
    `opened<90d`); `[issue] segment` in newsletter.toml sets it for every issue."""


@segment.command("count")
@click.argument("expression", required=False)
@pass_app
def segment_count(app: App, expression: str | None) -> None:
    """How many active, unpaused subscribers EXPRESSION matches now (default: the
    `[issue] segment` setting, where an empty one means everyone)."""
    from newsletter.segments import count

    expr = app.settings.segment if expression is None else expression
    matched = count(app.store, expr)
    echo(people.segment_count(matched, expr))
    if not matched:
        raise click.ClickException(people.segment_empty(expr))
