"""What the commands share: the `App` (settings and store, opened on first use), the group
that turns a `NewsletterError` into one line, the `--layout` option, flags of which one must
be given (`one_of`), progress bars and the exit status after sending."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from newsletter.cli.reports import echo, sending
from newsletter.exceptions import NewsletterError
from newsletter.records import IssueStatus

if TYPE_CHECKING:  # the command table loads nothing heavy: each command imports what it uses
    from newsletter import delivery
    from newsletter.settings import Settings
    from newsletter.store import Store


class LibraryErrors(click.Group):
    """Print a user's mistake as one line and exit 1: never a traceback. The program is
    called `newsletter` however it is started (`python -m newsletter.cli` too)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            raise click.ClickException(str(exc)) from None

    def main(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("prog_name", "newsletter")
        return super().main(*args, **kwargs)


class App:
    """Settings and store, opened on first use so `init` and `--help` need neither."""

    def __init__(self, config: Path | None) -> None:
        self._config = config
        self._settings: Settings | None = None
        self._store: Store | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from newsletter.settings import load_settings

            self._settings = load_settings(self._config)
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            from newsletter.store import Store

            self._store = Store(self.settings.database_url)
        return self._store


pass_app = click.make_pass_decorator(App)


def one_of(dest: str, flags: dict[str, str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Flags of which one must be given (`{"--up": help, "--down": help}`): the command gets
    the chosen flag's name without its dashes in `dest`; with none, the one-line error
    "say --up or --down"."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get(dest) is None:
                raise NewsletterError("say " + " or ".join(flags))
            return command(*args, **kwargs)

        for flag, text in reversed(flags.items()):
            checked = click.option(flag, dest, flag_value=flag.lstrip("-"), help=text)(checked)
        return checked

    return decorate


# The layout of one issue; without it, several articles make a digest and one follows
# [issue] layout in newsletter.toml.
LAYOUT_OPTION = click.option(
    "--layout",
    type=click.Choice(("full", "digest")),  # newsletter.layouts.LAYOUTS, not imported here
    default=None,
    help="full: the article in the email, its ending after a divider; digest: cards linking "
    "to each article's page (default: digest for several articles, else [issue] layout).",
)


class Bars:
    """tqdm progress bars for the issues a command sends; closed when the command ends."""

    def __init__(self) -> None:
        self.bars: list = []

    def __call__(self, issue_id: int, total: int):
        from tqdm import tqdm

        bar = tqdm(
            total=total, desc=f"issue {issue_id}", unit="rcpt", file=sys.stderr, disable=None
        )
        self.bars.append(bar)
        return bar.update

    def close(self) -> None:
        for bar in self.bars:
            bar.close()


def exit_after_sending(stop: delivery.StopRequest, sent: list[delivery.SendReport]) -> None:
    """130 after a stop request (with what is left and how to go on); 1 when an issue is
    paused or a send delivered nothing it tried; 75 (EX_TEMPFAIL: try again later) when a
    cap of [sending] held the rest back, saying when it can go on; else the command goes on."""
    if stop.is_set():
        echo(sending.stopped(stop.signal_name, sent))
        sys.exit(130)
    paced = [r for r in sent if r.paced_until is not None]
    for r in paced:
        echo(sending.paced(r))
    if paced:
        sys.exit(75)
    if any(r.status == IssueStatus.PAUSED or r.tried_in_vain for r in sent):
        sys.exit(1)
