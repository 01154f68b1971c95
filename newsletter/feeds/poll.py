"""One polling round: each `[[feeds]]` feed due (or all of them, `newsletter feeds poll`)
fetched, its new entries turned into article files in issues/ and queued, or held with the
article contract's located errors. A feed that fails is recorded with its error and retried
sooner than its interval (backoff), and never stops the others."""

from __future__ import annotations

import logging
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from newsletter.articles import read_article
from newsletter.conformance import ERROR, validate_file
from newsletter.exceptions import ArticleError, FeedError
from newsletter.feeds.convert import to_markdown
from newsletter.feeds.fetch import client, fetch
from newsletter.feeds.parse import Entry, parse_feed
from newsletter.records import utcnow
from newsletter.settings import Feed, Settings
from newsletter.store import Store
from newsletter.store.feeds import FeedEntryRow, FeedState

log = logging.getLogger(__name__)

QUEUED, HELD, SEEN = "queued", "held", "seen"
MAX_BACKOFF = timedelta(hours=6)


@dataclass(kw_only=True)
class FeedOutcome:
    """What one feed gave in a round."""

    url: str
    queued: list[str] = field(default_factory=list)  # article files queued
    held: list[tuple[str, str]] = field(default_factory=list)  # (entry, located errors)
    skipped: int = 0  # already taken, listed twice, or older than a new feed's backlog
    not_modified: bool = False
    error: str | None = None
    retry_at: datetime | None = None


@dataclass(kw_only=True)
class PollReport:
    feeds: list[FeedOutcome] = field(default_factory=list)

    @property
    def queued(self) -> int:
        return sum(len(f.queued) for f in self.feeds)

    @property
    def held(self) -> int:
        return sum(len(f.held) for f in self.feeds)

    @property
    def skipped(self) -> int:
        return sum(f.skipped for f in self.feeds)

    @property
    def failed(self) -> list[FeedOutcome]:
        return [f for f in self.feeds if f.error]


@dataclass(frozen=True, kw_only=True)
class FeedStatus:
    """One `[[feeds]]` feed and what the store remembers of it (`state` None: never fetched)."""

    feed: Feed
    state: FeedState | None


def feed_statuses(store: Store, settings: Settings) -> list[FeedStatus]:
    """Every feed of the settings, in the file's order, with its last fetch, next fetch and
    failures: what `newsletter feeds list` shows."""
    states = store.feeds.states()
    return [FeedStatus(feed=feed, state=states.get(feed.url)) for feed in settings.feeds]


def poll_feeds(
    store: Store,
    settings: Settings,
    now: datetime | None = None,
    *,
    due_only: bool = False,
    http: httpx.Client | None = None,
) -> PollReport:
    """Fetch the feeds (with `due_only`, those whose interval or retry time has come) and
    queue their new entries. One HTTP client serves the whole round."""
    now = now or utcnow()
    report = PollReport()
    states = store.feeds.states()
    own = http is None
    http = http or client()
    try:
        for feed in settings.feeds:
            state = states.get(feed.url)
            if due_only and state is not None and state.next_at and state.next_at > now:
                continue
            report.feeds.append(_poll_one(store, settings, feed, now, http))
    finally:
        if own:
            http.close()
    return report


def _poll_one(
    store: Store, settings: Settings, feed: Feed, now: datetime, http: httpx.Client
) -> FeedOutcome:
    outcome = FeedOutcome(url=feed.url)
    state = store.feeds.state(feed.url)
    try:
        fetched = fetch(
            http,
            feed.url,
            etag=state.etag if state else None,
            last_modified=state.last_modified if state else None,
            timeout=feed.timeout_seconds,
        )
        if fetched.body is None:
            outcome.not_modified = True
        else:
            entries = parse_feed(feed.url, fetched.body, fetched.content_type)
            first = state is None or state.ok_at is None
            _take(store, settings, feed, entries, first, now, outcome)
    except FeedError as exc:
        failures = (state.failures if state else 0) + 1
        outcome.error = str(exc)
        outcome.retry_at = now + min(feed.every, timedelta(minutes=2**failures), MAX_BACKOFF)
        store.feeds.record_fetch(feed.url, at=now, next_at=outcome.retry_at, error=str(exc))
        log.error("%s (try %d; again at %s)", exc, failures, outcome.retry_at)
        return outcome
    store.feeds.record_fetch(
        feed.url,
        at=now,
        next_at=now + feed.every,
        error=None,
        etag=fetched.etag,
        last_modified=fetched.last_modified,
    )
    if outcome.queued and feed.layout and store.issues.next_layout() is None:
        store.issues.set_next_layout(feed.layout)  # the issue these entries go out in
    return outcome


def _take(
    store: Store,
    settings: Settings,
    feed: Feed,
    entries: list[Entry],
    first: bool,
    now: datetime,
    outcome: FeedOutcome,
) -> None:
    """Queue (or hold) each entry not seen before, once; on a feed's first fetch only the
    newest `backlog` of them, the older ones remembered as seen."""
    fresh: dict[str, Entry] = {}
    for entry in entries:
        if entry.key in fresh:  # the feed lists the same id twice: taken once
            outcome.skipped += 1
            continue
        fresh[entry.key] = entry
    known = store.feeds.known(fresh)
    outcome.skipped += len(known)
    new = [e for k, e in fresh.items() if k not in known]
    # Feeds list their newest entries first; a date, when every entry has one, decides.
    if new and all(e.published for e in new):
        new.sort(key=lambda e: e.published, reverse=True)  # type: ignore[arg-type, return-value]
    if first and len(new) > feed.backlog:
        older = new[feed.backlog :]
        new = new[: feed.backlog]
        store.feeds.add_entries([_row(feed, e, SEEN, now) for e in older])
        outcome.skipped += len(older)
    for entry in reversed(new):  # the oldest first: the queue keeps the site's order
        _take_one(store, settings, feed, entry, now, outcome)


def _row(
    feed: Feed,
    entry: Entry,
    status: str,
    now: datetime,
    filename: str | None = None,
    error: str | None = None,
) -> FeedEntryRow:
    return FeedEntryRow(
        guid_hash=entry.key,
        guid=entry.guid,
        feed_url=feed.url,
        title=entry.title[:500],
        link=entry.link,
        status=status,
        filename=filename,
        error=error,
        seen_at=now,
    )


def _take_one(
    store: Store, settings: Settings, feed: Feed, entry: Entry, now: datetime, outcome: FeedOutcome
) -> None:
    """One new entry: an article file in issues/, queued, or held with its errors. The
    article is queued before the entry is remembered: a crash between the two finds the
    same file (its name comes from the entry's id) and queues it in the same place. An
    entry without a title is written and held as well (the contract's "no title", located
    in its file): the editor adds one and releases it, nothing of the entry is lost."""
    name = _filename(entry)
    text = to_markdown(entry, settings.contract)
    problems = _problems(settings, name, text)
    folder = settings.issues_dir
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{name}.part"  # not an article suffix: the queue's sync ignores it
    part.write_text(text, encoding="utf-8")
    os.replace(part, folder / name)
    if problems:
        reason = f"from the feed {feed.url}, it does not fit the article contract:\n" + "\n".join(
            problems
        )
        shown = entry.title or f"Untitled entry {entry.link or entry.guid}"
        store.articles.add_article(name, shown, None, held_reason=reason)
        store.feeds.add_entries([_row(feed, entry, HELD, now, name, "\n".join(problems))])
        outcome.held.append((shown, "\n".join(problems)))
        return
    store.articles.add_article(name, entry.title, None)
    store.feeds.add_entries([_row(feed, entry, QUEUED, now, name)])
    outcome.queued.append(name)


def _problems(settings: Settings, name: str, text: str) -> list[str]:
    """The article contract's errors for this text, located as `file:line: what`."""
    with tempfile.TemporaryDirectory(prefix="newsletter-feed-") as scratch:
        path = Path(scratch) / name
        path.write_text(text, encoding="utf-8")
        try:
            read_article(path, headings=settings.contract.headings)
        except ArticleError as exc:
            return [f"{name}:{exc.line}: {exc.message}" if exc.line else f"{name}: {exc.message}"]
        found = [p for p in validate_file(path, settings.contract) if p.severity == ERROR]
        return [str(p).replace(str(path), name) for p in found]


def _filename(entry: Entry) -> str:
    """A stable file name from the entry's title and id: the same entry, the same file."""
    value = unicodedata.normalize("NFKD", entry.title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", value).strip("-").lower()[:60].strip("-") or "entry"
    return f"feed-{slug}-{entry.key[:10]}.md"
