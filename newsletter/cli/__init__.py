"""The `newsletter` command: the `main` group and its commands, one module per group. A
command parses its arguments, calls one library function and prints what `reports`
formats; the logic lives in the library, which the workspace calls too. A new command goes
in its group's module (or a new one) and is registered below with one `main.add_command`."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli import (
    bounces,
    editors,
    feeds,
    issues,
    preview,
    queue,
    run,
    segments,
    services,
    setup,
    subscribers,
    workflow,
)
from newsletter.cli.app import App, LibraryErrors


@click.group(cls=LibraryErrors)
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path),
    envvar="NEWSLETTER_CONFIG",
    help="Path to newsletter.toml (default: the nearest one).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="newsletter")
@click.pass_context
def main(ctx: click.Context, config: Path | None, verbose: int) -> None:
    """Publish article-driven email newsletters."""
    import logging

    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = App(config)


# Every command, registered once (`--help` sorts them). A new one: import its module above,
# then `main.add_command(module.command)` here.
main.add_command(setup.init)
main.add_command(queue.queue)
main.add_command(subscribers.subscribers)
main.add_command(editors.editors)
main.add_command(preview.preview)
main.add_command(preview.check)
main.add_command(run.run)
main.add_command(setup.doctor)
main.add_command(issues.status)
main.add_command(issues.issues_list)
main.add_command(issues.pause)
main.add_command(issues.resume)
main.add_command(issues.cancel)
main.add_command(issues.resolve)
main.add_command(issues.send_test)
main.add_command(services.serve)
main.add_command(services.sendgrid_server)
main.add_command(services.worker)
main.add_command(services.scheduler)
main.add_command(bounces.bounces)
main.add_command(workflow.approve)
main.add_command(workflow.reject)
main.add_command(feeds.feeds)
main.add_command(segments.segment)
subscribers.subscribers.add_command(segments.tag)
subscribers.subscribers.add_command(segments.untag)
