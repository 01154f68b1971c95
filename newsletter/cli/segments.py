"""`newsletter subscribers tag/untag` (`cli/__init__.py` adds them to the `subscribers`
group) and `newsletter segment count`: tags and segments.
Parses and prints only; the rules are newsletter.tags, newsletter.segments and the store's."""

from __future__ import annotations

import click

from newsletter.cli.app import App, pass_app


@click.command("tag")
@click.argument("tag")
@click.argument("emails", nargs=-1, required=True)
@pass_app
def tag(app: App, tag: str, emails: tuple[str, ...]) -> None:
    """Give TAG to the subscribers EMAILS (all of them, or none if one is unknown)."""
    from newsletter.segments import tag_subscribers

    done = tag_subscribers(app.store, emails, tag)
    had = len(emails) - done.changed
    click.echo(f"tagged {done.changed} subscriber(s) {done.tag} ({had} had it already)")


@click.command("untag")
@click.argument("tag")
@click.argument("emails", nargs=-1, required=True)
@pass_app
def untag(app: App, tag: str, emails: tuple[str, ...]) -> None:
    """Take TAG from the subscribers EMAILS."""
    from newsletter.segments import untag_subscribers

    done = untag_subscribers(app.store, emails, tag)
    click.echo(f"untagged {done.changed} subscriber(s) {done.tag}")


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
    shown = repr(expr) if expr.strip() else "everyone (no segment)"
    click.echo(f"{matched} subscriber(s) match {shown}")
    if not matched:
        raise click.ClickException(
            f"segment {expr!r} matches no active subscriber: an issue sent to it would go to "
            "nobody (`newsletter subscribers list`, `newsletter subscribers tag`)"
        )
