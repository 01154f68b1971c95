"""The finished email before it is sent: `preview` writes it, `check` lints it. SOURCE is
article files or a stored issue's number (`newsletter.preview.names_an_issue`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from newsletter.cli.app import LAYOUT_OPTION, App, pass_app
from newsletter.cli.reports import echo, issues


@click.command()
@click.argument("source", nargs=-1, required=True)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default="preview",
    show_default=True,
)
@click.option(
    "--screenshot",
    is_flag=True,
    help="Also save desktop, phone and dark-mode PNGs (needs chromium).",
)
@LAYOUT_OPTION
@pass_app
def preview(
    app: App, source: tuple[str, ...], out: Path, screenshot: bool, layout: str | None
) -> None:
    """Write the finished email.html and email.txt for a sample subscriber. SOURCE is one or
    more article files, or an issue number."""
    from newsletter.preview import names_an_issue, write_preview

    store = app.store if names_an_issue(source) else None
    written = write_preview(app.settings, store, source, out, layout)
    echo(issues.paths(written))
    if screenshot:
        from newsletter.screenshot import capture

        for shot in capture(written[0], written[0].parent):
            echo(str(shot.path))
            if shot.scrolls_sideways:
                echo(issues.sideways(shot), err=True)


@click.command()
@click.argument("source", nargs=-1, required=True)
@LAYOUT_OPTION
@pass_app
def check(app: App, source: tuple[str, ...], layout: str | None) -> None:
    """Lint the finished email of SOURCE (article files or an issue number) before sending;
    the articles are also held to the article contract and checked for spoiler leaks (an
    issue's articles are read from issues/; the output names any that could not be)."""
    from newsletter.check import check_source, format_findings, has_errors
    from newsletter.preview import names_an_issue

    store = app.store if names_an_issue(source) else None
    findings = check_source(app.settings, store, source, layout)
    echo(format_findings(findings))
    if has_errors(findings):
        sys.exit(1)
