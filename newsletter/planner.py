"""The editorial calendar: the next ticks of the cadence and what each would take, as the
workspace's calendar page shows it. Built from the same facts the tick acts on: an issue
already prepared for a slot (awaiting approval or approved) keeps it with its articles; the
other ticks take the queued articles in queue order, each not before its not-before date, up
to the issue size; and the feeds that will be fetched before each tick, whose new entries
could join it. Nothing is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from newsletter.publish import next_ticks, queue_view
from newsletter.records import utcnow
from newsletter.settings import Settings
from newsletter.store import Store

TICKS = 8


@dataclass(frozen=True, kw_only=True)
class PlannedArticle:
    article_id: int | None  # None: carried by a prepared issue (no longer in the queue)
    filename: str
    title: str
    not_before: datetime | None


@dataclass(kw_only=True)
class PlannedTick:
    at: datetime
    articles: list[PlannedArticle] = field(default_factory=list)
    issue_id: int | None = None  # the issue prepared for this slot
    approval: str = ""  # "" (not needed or not prepared yet), awaiting_approval, approved
    feeds: list[str] = field(default_factory=list)  # fetched before it: entries may join


def plan_ticks(
    store: Store, settings: Settings, now: datetime | None = None, count: int = TICKS
) -> list[PlannedTick]:
    """The next `count` ticks with the articles each would take."""
    now = now or utcnow()
    ticks = [PlannedTick(at=t) for t in next_ticks(settings, now, count)]
    if not ticks:
        return []
    for issue in store.issues.prepared_issues():
        slot = next(
            (t for t in ticks if issue.scheduled_for and t.at >= issue.scheduled_for), ticks[0]
        )
        if slot.issue_id is not None:
            continue
        slot.issue_id, slot.approval = issue.id, str(issue.status)
        slot.articles = [
            PlannedArticle(article_id=None, filename=a.filename, title=a.title, not_before=None)
            for a in store.articles.issue_articles(issue.id)
        ]
    ids = {row.filename: row.id for row in store.articles.queued()}
    waiting = [
        e
        for e in queue_view(store, settings, now, lookahead=1).entries
        if e.status in ("queued", "waiting")
    ]
    taken: set[str] = set()
    for tick in ticks:
        if tick.issue_id is not None:
            continue
        due = [
            e
            for e in waiting
            if e.filename not in taken and (e.not_before is None or e.not_before <= tick.at)
        ][: settings.schedule.articles_per_issue]
        taken.update(e.filename for e in due)
        tick.articles = [
            PlannedArticle(
                article_id=ids.get(e.filename),
                filename=e.filename,
                title=e.title,
                not_before=e.not_before,
            )
            for e in due
        ]
    _feeds(store, settings, now, ticks)
    return ticks


def _feeds(store: Store, settings: Settings, now: datetime, ticks: list[PlannedTick]) -> None:
    """Each feed's fetches (from its next one, every interval) between two ticks."""
    states = store.feeds.states()
    for feed in settings.feeds:
        state = states.get(feed.url)
        first = max(state.next_at or now, now) if state else now
        previous = now
        for tick in ticks:
            if first <= tick.at:
                # the first fetch after `previous`: first + k * every, k >= 0
                steps = max(0, -(-(previous - first) // feed.every)) if previous > first else 0
                if first + steps * feed.every <= tick.at:
                    tick.feeds.append(feed.url)
            previous = tick.at
