"""Everything the commands print, as lines, one module per kind of thing reported:
`articles` (the queue, feeds, a new folder's sample), `people` (subscribers, editors, tags,
segments, bounces), `sending` (`run`, its dry run, resume, a stop, the caps, the worker) and
`issues` (issues already made: status, the list, pause/cancel, resolve, proofs, preview,
approval). The commands call the library and echo what is formatted there, so a message is
worded in one place. Times are the newsletter's local time (`local`).

This module holds what they share and imports none of them (they import it). Nothing heavy
at the top (`--help` stays light): the records are read, not built."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from newsletter.settings import Settings


def echo(lines: str | Iterable[str], *, err: bool = False) -> None:
    """Print one line or each of several, on stdout (or stderr with `err`)."""
    for line in [lines] if isinstance(lines, str) else lines:
        click.echo(line, err=err)


def local(moment: datetime | None, settings: Settings) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(settings.timezone).strftime("%a %Y-%m-%d %H:%M %Z")


def indented(text: str | None, indent: str) -> Iterator[str]:
    """Each line of `text` (a check's reasons, an error) under the line that names it."""
    for line in (text or "").splitlines():
        yield f"{indent}{line}"
