"""What the commands print about articles on their way into an issue: `queue ...`, the held
articles `status` lists, `feeds poll` and `feeds list` (entries queued or held), and the
sample a new folder (`init`) queued."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from newsletter.cli.reports import indented, local

if TYPE_CHECKING:
    from newsletter import publish
    from newsletter.feeds import FeedOutcome, FeedStatus, PollReport
    from newsletter.folder import NewFolder
    from newsletter.records import QueuedArticle
    from newsletter.settings import Settings


# -- init -----------------------------------------------------------------------------------
def new_folder(made: NewFolder) -> Iterator[str]:
    yield f"created {made.config}"
    for name in made.queued:
        yield queued(name)
    if made.subscribers is not None:
        yield f"imported {made.subscribers} sample subscribers"


# -- queue ----------------------------------------------------------------------------------
def queued(filename: str, title: str | None = None) -> str:
    return f"queued {filename}: {title}" if title is not None else f"queued {filename}"


def queued_by(email: str | None) -> str:
    """Who `queue add` recorded as queuing the article, and what that means for approval."""
    if email:
        return f"recorded as queued by {email}: another editor approves its issue"
    return (
        "recorded as queued by no editor (say --editor EMAIL or set NEWSLETTER_EDITOR): "
        "any editor may approve its issue"
    )


def queue_listing(
    view: publish.QueueView,
    upcoming: publish.NextIssue | None,
    missed_tick: datetime | None,
    settings: Settings,
) -> Iterator[str]:
    """The queue in sending order, each article's expected tick, then the next issue's
    layout, a tick missed while the scheduler was down and a queue about to run dry."""
    from newsletter.alerts import held_notice

    if not view.entries:
        yield "the queue is empty"
    for n, entry in enumerate(view.entries, start=1):
        status = entry.status
        if entry.status == "waiting":
            status = f"not before {local(entry.not_before, settings)}"
        yield f"{n:>3}. {entry.filename}  [{status}]  {entry.title}"
        if entry.status == "held":
            yield f"     {held_notice(entry.filename)}:"
            yield from indented(entry.error, "       ")
            continue
        yield f"     expected: {local(entry.expected, settings)}"
        if entry.error:
            yield f"     error: {entry.error}"
    if upcoming is not None:
        how = "chosen with 'queue layout'" if upcoming.chosen else "automatic"
        yield f"next issue: {upcoming.layout} layout ({how})"
    if missed_tick:
        yield (
            f"missed: the issue due at {local(missed_tick, settings)} was missed while the "
            "scheduler was down; run 'newsletter run' to send it now"
        )
    dry = view.dry_notice(lambda tick: local(tick, settings))
    if dry:
        yield f"warning: {dry}"


def next_layout(chosen: str | None) -> str:
    return (
        f"the next issue goes out as {chosen}" if chosen else "the next issue's layout is automatic"
    )


def released(row: QueuedArticle) -> str:
    return f"released {row.filename}: back in the queue; the next tick checks it again"


def moved(filename: str, direction: str, did_move: bool) -> str:
    if did_move:
        return f"moved {filename} {direction}"
    return f"{filename} is already {'first' if direction == 'up' else 'last'}"


def removed_article(row: QueuedArticle) -> str:
    return f"removed {row.filename} from the queue"


def held_articles(held: Iterable[QueuedArticle]) -> Iterator[str]:
    """The queue's held articles as `status` lists them, each with its check's reasons."""
    from newsletter.alerts import held_notice

    for row in held:
        yield f"{held_notice(row.filename, row.title)}:"
        yield from indented(row.last_error, "  ")


# -- feeds ----------------------------------------------------------------------------------
NO_FEED = 'no feed: add [[feeds]] url = "..." to newsletter.toml'


def feed_failed(outcome: FeedOutcome) -> str:
    """A feed that could not be fetched or read this round (on stderr)."""
    return f"failed {outcome.url}: {outcome.error}"


def feed_outcome(outcome: FeedOutcome) -> Iterator[str]:
    """What one feed gave this round: the entries queued, and those held with their errors."""
    state = "not modified" if outcome.not_modified else (
        f"queued {len(outcome.queued)}, held {len(outcome.held)}, skipped {outcome.skipped}"
    )  # fmt: skip
    yield f"{outcome.url}: {state}"
    for name in outcome.queued:
        yield f"  queued {name}"
    for what, why in outcome.held:
        yield f"  held {what}:"
        yield from indented(why, "    ")


def poll_summary(report: PollReport) -> str:
    failed = len(report.failed)
    return f"queued {report.queued}, held {report.held}, skipped {report.skipped}" + (
        f"; {failed} feed{'s' if failed > 1 else ''} failed (retried later)" if failed else ""
    )


def feed_lines(statuses: Iterable[FeedStatus], settings: Settings) -> Iterator[str]:
    """Each feed with its last fetch, its next one and its last error."""
    zone = settings.timezone

    def when(moment: datetime | None) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if moment else "-"

    for status in statuses:
        feed, state = status.feed, status.state
        if state is None:
            yield f"{feed.url}: never fetched (every {feed.every})"
            continue
        line = f"{feed.url}: fetched {when(state.fetched_at)}, next {when(state.next_at)}"
        if state.last_error:
            line += f"; failing ({state.failures}): {state.last_error}"
        yield line
