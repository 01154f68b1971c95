"""What the commands print about people: the subscribers (`subscribers ...`, their tags,
`segment count`, what `bounces` did to them) and the editors (`editors ...`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.cli.reports import local

if TYPE_CHECKING:
    from newsletter.bounces.apply import BouncesReport
    from newsletter.editors import Editor
    from newsletter.records import Subscriber
    from newsletter.segments import Tagged
    from newsletter.settings import Settings
    from newsletter.subscribers import ImportResult


# -- subscribers ----------------------------------------------------------------------------
def import_problems(file: Path, result: ImportResult) -> Iterator[str]:
    for problem in [*result.problems, *result.skipped]:
        yield f"{file}:{problem}"


def import_summary(result: ImportResult) -> str:
    return (
        f"imported {result.imported}, updated {result.updated}, "
        f"rejected {len(result.problems)}, skipped {len(result.skipped)}"
    )


def welcomed(count: int) -> str:
    return f"welcomed {count}"


def subscriber_lines(rows: Iterable[Subscriber]) -> Iterator[str]:
    for row in rows:
        yield f"{row.email}\t{row.name}\t{row.status}"


def removed_subscriber(email: str) -> str:
    return f"removed {email}"


def exported(count: int, out: Path) -> str:
    return f"wrote {count} subscribers to {out}"


# -- tags and segments ----------------------------------------------------------------------
def tagged(done: Tagged, asked: int) -> str:
    """`subscribers tag`: `asked` addresses named, `done.changed` of them newly tagged."""
    return f"tagged {done.changed} subscriber(s) {done.tag} ({asked - done.changed} had it already)"


def untagged(done: Tagged) -> str:
    return f"untagged {done.changed} subscriber(s) {done.tag}"


def segment_count(matched: int, expr: str) -> str:
    shown = repr(expr) if expr.strip() else "everyone (no segment)"
    return f"{matched} subscriber(s) match {shown}"


def segment_empty(expr: str) -> str:
    """Why `segment count` exits 1: the segment would send an issue to nobody."""
    return (
        f"segment {expr!r} matches no active subscriber: an issue sent to it would go to "
        "nobody (`newsletter subscribers list`, `newsletter subscribers tag`)"
    )


# -- bounces --------------------------------------------------------------------------------
def bounces(report: BouncesReport) -> Iterator[str]:
    """One reading of the bounce mailbox: what was read, of which kind, who changed status,
    and each message not understood or naming nobody."""
    yield f"read {report.read} messages from {report.source}" + (
        f" ({report.already_handled} handled before)" if report.already_handled else ""
    )
    yield (
        f"permanent: {report.permanent}, temporary: {report.temporary}, "
        f"complaints: {report.complaints}, not understood: {len(report.not_understood)}"
    )
    if report.bounced:
        yield f"now bounced: {', '.join(report.bounced)}"
    if report.complained:
        yield f"now complained (unsubscribed): {', '.join(report.complained)}"
    for item in report.not_understood:
        yield f"not understood: {item.key}: {item.reason}"
    for item in report.unmatched:
        yield f"no subscriber: {item.key}: {item.reason}"


# -- editors --------------------------------------------------------------------------------
def editor_added(editor: Editor) -> str:
    return f"added editor {editor.email}"


def password_changed(editor: Editor) -> str:
    return f"changed the password of {editor.email}; their sessions have ended"


def editor_lines(found: list[Editor], settings: Settings) -> Iterator[str]:
    if not found:
        yield "no editors yet: add one with 'newsletter editors add EMAIL'"
    for editor in found:
        yield (
            f"{editor.email}\tsince {local(editor.created_at, settings)}"
            + (f"\t{editor.timezone}" if editor.timezone else "")
        )


def editor_removed(email: str) -> str:
    return f"removed editor {email}"
