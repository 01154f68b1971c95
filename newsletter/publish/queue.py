"""The editors' queue as they see it: article files queued (by `queue add` or dropped into
issues/), their expected ticks, the next issue and its layout. The queue's rows and their own
operations are the store's (`store.articles`); what needs the article files or the cadence
is here."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from newsletter.articles import ARTICLE_SUFFIXES, Article, read_article
from newsletter.conformance import ERROR, validate_file
from newsletter.exceptions import ArticleError, ContractBroken, NewsletterError
from newsletter.layouts import LAYOUTS, choose_layout
from newsletter.publish.calendar import next_ticks, parse_local_time
from newsletter.records import ArticleStatus, QueuedArticle, utcnow
from newsletter.settings import Settings
from newsletter.store import Store

log = logging.getLogger(__name__)


def sync_queue(store: Store, settings: Settings) -> list[str]:
    """Queue article files an editor dropped into issues/ by hand, oldest first."""
    folder = settings.issues_dir
    if not folder.is_dir():
        return []
    known = store.articles.known_files()
    new = sorted(
        (
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in ARTICLE_SUFFIXES and p.name not in known
        ),
        key=lambda p: (p.stat().st_mtime, p.name),
    )
    for path in new:
        _queue_file(store, settings, path, None)
    return [p.name for p in new]


def _queue_file(store: Store, settings: Settings, path: Path, not_before: datetime | None) -> int:
    try:
        article = read_article(path, headings=settings.contract.headings)
    except ArticleError as exc:
        article_id = store.articles.add_article(path.name, path.stem, not_before)
        store.articles.set_article_error(article_id, str(exc))
        return article_id
    if not_before is None and article.not_before is not None:
        not_before = parse_local_time(article.not_before, settings.timezone)
    return store.articles.add_article(path.name, article.title, not_before)


def queue_add(
    store: Store,
    settings: Settings,
    source: Path,
    not_before: str | None = None,
    tz: str | None = None,
    *,
    queued_by: int | None = None,
) -> tuple[Article, Path]:
    """Check the article reads cleanly and keeps the article contract, copy it into issues/
    and put it at the end of the queue (noting `queued_by`, the editor, for the approval). Contract warnings do not stop it (see
    `conformance.validate_file`); contract errors do, all of them listed by file and line."""
    # Refuse a broken article now, not at send time.
    article = read_article(source, headings=settings.contract.headings)
    problems = validate_file(source, settings.contract)
    if any(p.severity == ERROR for p in problems):
        raise ContractBroken(
            "\n".join(str(p) for p in problems)
            + f"\n{source.name} was not queued: fix the errors above and add it again"
        )
    when = None
    if not_before:
        when = parse_local_time(not_before, ZoneInfo(tz) if tz else settings.timezone)
    settings.issues_dir.mkdir(parents=True, exist_ok=True)
    target = settings.issues_dir / source.name
    if source.resolve() != target.resolve():
        if target.exists() and target.read_bytes() != source.read_bytes():
            raise NewsletterError(
                f"{target} already exists with other content; rename {source.name} first"
            )
        shutil.copyfile(source, target)
    if when is None and article.not_before is not None:
        when = parse_local_time(article.not_before, settings.timezone)
    store.articles.add_article(target.name, article.title, when, queued_by)
    return article, target


def set_not_before(
    store: Store, settings: Settings, filename: str, value: str | None, tz: ZoneInfo | None = None
) -> datetime | None:
    """Set (a local time in `tz`, default the newsletter's zone) or clear (None or "") the
    earliest send time of a queued article."""
    when = parse_local_time(value, tz or settings.timezone) if value and value.strip() else None
    store.articles.set_not_before(Path(filename).name, when)
    return when


def release_article(store: Store, name: str) -> QueuedArticle:
    """Put an article held by its failed check back in its place (`name`: its file name in
    issues/, or a path to it); the next tick checks it again."""
    return store.articles.release_article(Path(name).name)


def move_article(store: Store, name: str, *, up: bool) -> bool:
    """Move a queued article one place earlier (`up`) or later; False when it already is
    first (last)."""
    return store.articles.swap_with_neighbour(Path(name).name, up)


def remove_article(store: Store, name: str) -> QueuedArticle:
    """Take an article off the queue; its file stays in issues/."""
    return store.articles.remove_article(Path(name).name)


def held_articles(store: Store) -> list[QueuedArticle]:
    """The articles held by a failed check, in their places in the queue."""
    return [row for row in store.articles.queued(held=True) if row.status == ArticleStatus.HELD]


AUTOMATIC = "automatic"


def chosen_layout(store: Store) -> str | None:
    """The layout the editors chose for the next issue in the workspace; None: automatic
    (a digest for several articles, else `[issue] layout`)."""
    value = store.issues.next_layout()
    if value is not None and value not in LAYOUTS:
        log.warning("ignoring an unknown next-issue layout %r in the database", value)
        return None
    return value


def choose_next_layout(store: Store, value: str | None) -> str | None:
    """Choose the next issue's layout: `full`, `digest`, or `automatic` (also None or "")
    to leave it to the number of articles and the setting. The next issue created, by the
    scheduler's tick or `run`, consumes the choice; later issues are automatic again."""
    value = (value or "").strip().lower()
    if value in ("", AUTOMATIC):
        store.issues.set_next_layout(None)
        return None
    if value not in LAYOUTS:
        raise NewsletterError(
            f"unknown layout {value!r}: choose {AUTOMATIC}, {' or '.join(LAYOUTS)}"
        )
    store.issues.set_next_layout(value)
    return value


@dataclass(frozen=True, kw_only=True)
class QueueEntry:
    filename: str
    title: str
    status: str  # "queued", "waiting" (not before a time), "error" or "held"
    not_before: datetime | None
    expected: datetime | None
    error: str | None


@dataclass(kw_only=True)
class QueueView:
    entries: list[QueueEntry]
    ticks: list[datetime]
    dry_ticks: list[datetime] = field(default_factory=list)

    def dry_notice(self, local: Callable[[datetime], str]) -> str | None:
        """One sentence for every coming tick the queue cannot fill (said once, not once per
        tick), with times as `local` shows them; None when the queue lasts."""
        if not self.dry_ticks:
            return None
        first = local(self.dry_ticks[0])
        more = len(self.dry_ticks) - 1
        after = f" and the {more} tick{'s' if more > 1 else ''} after it" if more else ""
        return f"nothing to send at {first}{after}: the queue runs dry"


def queue_view(
    store: Store, settings: Settings, now: datetime | None = None, lookahead: int = 4
) -> QueueView:
    """The queue in sending order, each with the tick it is expected to go out at, and the
    coming ticks that would find nothing to send."""
    now = now or utcnow()
    sync_queue(store, settings)
    rows = store.articles.queued(held=True)
    errors: dict[int, str | None] = {}
    for row in rows:
        try:
            read_article(settings.issues_dir / row.filename, headings=settings.contract.headings)
            errors[row.id] = row.last_error if row.status == ArticleStatus.HELD else None
        except ArticleError as exc:
            errors[row.id] = str(exc)
    expected: dict[int, datetime] = {}
    horizon = max(lookahead, len(rows) + lookahead)
    ticks = next_ticks(settings, now, horizon)
    dry: list[datetime] = []
    waiting = [row for row in rows if errors[row.id] is None and row.status != ArticleStatus.HELD]
    for index, tick in enumerate(ticks):
        due = [
            row
            for row in waiting
            if row.id not in expected and (row.not_before is None or row.not_before <= tick)
        ]
        chosen = due[: settings.schedule.articles_per_issue]
        for row in chosen:
            expected[row.id] = tick
        if not chosen and index < lookahead:
            dry.append(tick)
    entries = [
        QueueEntry(
            filename=row.filename,
            title=row.title,
            status="held"
            if row.status == ArticleStatus.HELD
            else "error"
            if errors[row.id]
            else ("waiting" if row.not_before and row.not_before > now else "queued"),
            not_before=row.not_before,
            expected=expected.get(row.id),
            error=errors[row.id],
        )
        for row in rows
    ]
    return QueueView(entries=entries, ticks=ticks[:lookahead], dry_ticks=dry)


@dataclass(frozen=True, kw_only=True)
class NextIssue:
    """What the next tick will send and in which layout: `chosen` is the editors' choice
    (None: automatic), `layout` what the issue will be rendered in unless `run --layout`
    says otherwise."""

    tick: datetime | None
    filenames: tuple[str, ...]
    chosen: str | None
    layout: str


def next_issue(store: Store, settings: Settings, view: QueueView | None = None) -> NextIssue:
    """The articles expected at the first tick that has any, and the layout of that issue."""
    view = view or queue_view(store, settings)
    ticks = [e.expected for e in view.entries if e.expected is not None]
    tick = min(ticks) if ticks else None
    filenames = tuple(e.filename for e in view.entries if tick and e.expected == tick)
    chosen = chosen_layout(store)
    layout = choose_layout(settings.layout, max(len(filenames), 1), chosen)
    return NextIssue(tick=tick, filenames=filenames, chosen=chosen, layout=layout)
