"""`newsletter editors ...`: the accounts of the web workspace (`newsletter.editors`)."""

from __future__ import annotations

import sys

import click

from newsletter.cli.app import App, pass_app
from newsletter.cli.reports import echo, people


@click.group()
def editors() -> None:
    """Accounts of the editors who sign in at /admin of `newsletter serve`."""


def _read_password() -> str:
    """Asked twice on a terminal (hidden); otherwise the first line of standard input."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return sys.stdin.readline().rstrip("\r\n")


@editors.command("add")
@click.argument("email")
@click.option(
    "--tz", "timezone", default="", help="The editor's time zone (default: the newsletter's)."
)
@pass_app
def editors_add(app: App, email: str, timezone: str) -> None:
    """Create an editor account; the password is asked for (or read from standard input)."""
    from newsletter.editors import add_editor

    echo(people.editor_added(add_editor(app.store, email, _read_password(), timezone)))


@editors.command("password")
@click.argument("email")
@pass_app
def editors_password(app: App, email: str) -> None:
    """Set a new password for EMAIL; the editor's open sessions end."""
    from newsletter.editors import change_password

    echo(people.password_changed(change_password(app.store, email, _read_password())))


@editors.command("list")
@pass_app
def editors_list(app: App) -> None:
    """List the editor accounts."""
    from newsletter.editors import list_editors

    echo(people.editor_lines(list_editors(app.store), app.settings))


@editors.command("remove")
@click.argument("email")
@pass_app
def editors_remove(app: App, email: str) -> None:
    """Delete the editor account EMAIL; its sessions end at once."""
    from newsletter.editors import remove_editor

    remove_editor(app.store, email)
    echo(people.editor_removed(email))
