"""The editors' queue and the publication cadence: which articles go out at which tick, and
building an issue from them. Sending itself is `delivery`'s job."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from newsletter.articles import ARTICLE_SUFFIXES, Article, read_article
from newsletter.conformance import ERROR, ContractProblem, validate_file
from newsletter.delivery import SendContext, SendingLease, SendReport, send_issue
from newsletter.exceptions import ArticleError, CheckFailed, ContractBroken, NewsletterError
from newsletter.layouts import LAYOUTS, article_slug, choose_layout
from newsletter.records import ArticleStatus, DeliveryState, utcnow
from newsletter.render import render_article_pages, render_fitting
from newsletter.settings import Settings
from newsletter.store import Store

log = logging.getLogger(__name__)

# Makes the progress callback of one issue from its id and how many deliveries are left.
ProgressFactory = Callable[[int, int], Callable[[int], None]]


def cadence_trigger(settings: Settings) -> CronTrigger:
    """The editors' cadence (e.g. Tuesdays and Fridays at 09:00 Europe/Paris) as a trigger."""
    sched = settings.schedule
    return CronTrigger(
        day_of_week=",".join(sched.days),
        hour=sched.at.hour,
        minute=sched.at.minute,
        timezone=settings.timezone,
    )


def next_ticks(settings: Settings, after: datetime, count: int) -> list[datetime]:
    trigger = cadence_trigger(settings)
    ticks: list[datetime] = []
    previous = None
    now = after
    for _ in range(count):
        tick = trigger.get_next_fire_time(previous, now)
        if tick is None:
            break
        ticks.append(tick)
        previous, now = tick, tick + timedelta(seconds=1)
    return ticks


def parse_local_time(value: str | datetime | date, tz: ZoneInfo) -> datetime:
    """'2026-12-01 09:00' in the editor's zone -> aware datetime (stored as UTC)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise NewsletterError(
                f"{value!r} is not a date and time; use e.g. '2026-12-01 09:00'"
            ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


# -- the queue ------------------------------------------------------------------------------
def sync_queue(store: Store, settings: Settings) -> list[str]:
    """Queue article files an editor dropped into issues/ by hand, oldest first."""
    folder = settings.issues_dir
    if not folder.is_dir():
        return []
    known = store.queue.known_files()
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
        article_id = store.queue.add_article(path.name, path.stem, not_before)
        store.queue.set_article_error(article_id, str(exc))
        return article_id
    if not_before is None and article.not_before is not None:
        not_before = parse_local_time(article.not_before, settings.timezone)
    return store.queue.add_article(path.name, article.title, not_before)


def queue_add(
    store: Store,
    settings: Settings,
    source: Path,
    not_before: str | None = None,
    tz: str | None = None,
) -> tuple[Article, Path]:
    """Check the article reads cleanly and keeps the article contract, copy it into issues/
    and put it at the end of the queue. Contract warnings do not stop it (see
    `contract_problems`); contract errors do, all of them listed by file and line."""
    # Refuse a broken article now, not at send time.
    article = read_article(source, headings=settings.contract.headings)
    problems = contract_problems(settings, source)
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
    store.queue.add_article(target.name, article.title, when)
    return article, target


def queue_move(store: Store, filename: str, up: bool) -> bool:
    """Move a queued article one place earlier (up) or later; False when it is already at
    that end. The CLI's `queue move` and the editors' workspace both call this."""
    return store.workspace.swap_with_neighbour(Path(filename).name, up)


def set_not_before(
    store: Store, settings: Settings, filename: str, value: str | None, tz: ZoneInfo | None = None
) -> datetime | None:
    """Set (a local time in `tz`, default the newsletter's zone) or clear (None or "") the
    earliest send time of a queued article."""
    when = parse_local_time(value, tz or settings.timezone) if value and value.strip() else None
    store.workspace.set_not_before(Path(filename).name, when)
    return when


AUTOMATIC = "automatic"


def chosen_layout(store: Store) -> str | None:
    """The layout the editors chose for the next issue in the workspace; None: automatic
    (a digest for several articles, else `[issue] layout`)."""
    value = store.queue.next_layout()
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
        store.queue.set_next_layout(None)
        return None
    if value not in LAYOUTS:
        raise NewsletterError(
            f"unknown layout {value!r}: choose {AUTOMATIC}, {' or '.join(LAYOUTS)}"
        )
    store.queue.set_next_layout(value)
    return value


def contract_problems(settings: Settings, path: Path) -> list[ContractProblem]:
    """How the article at `path` breaks the article contract, by file and line."""
    return validate_file(path, settings.contract)


@dataclass(frozen=True)
class QueueEntry:
    filename: str
    title: str
    status: str  # "queued", "waiting" (not before a time), "error" or "held"
    not_before: datetime | None
    expected: datetime | None
    error: str | None


@dataclass
class QueueView:
    entries: list[QueueEntry]
    ticks: list[datetime]
    dry_ticks: list[datetime] = field(default_factory=list)


def queue_view(
    store: Store, settings: Settings, now: datetime | None = None, lookahead: int = 4
) -> QueueView:
    """The queue in sending order, each with the tick it is expected to go out at, and the
    coming ticks that would find nothing to send."""
    now = now or utcnow()
    sync_queue(store, settings)
    rows = store.queue.queued(held=True)
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
    return QueueView(entries, ticks[:lookahead], dry)


@dataclass(frozen=True)
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
    return NextIssue(
        tick, filenames, chosen, choose_layout(settings.layout, max(len(filenames), 1), chosen)
    )


# -- picking and building an issue ----------------------------------------------------------
@dataclass(frozen=True)
class Picked:
    article_id: int
    article: Article


def pick(
    store: Store, settings: Settings, now: datetime, *, held: bool = False
) -> tuple[list[Picked], list[str]]:
    """The next queued articles allowed out at `now` (FIFO, respecting not-before), up to the
    issue size. Unreadable ones are skipped with their error; the others still go. With
    `held` (`run --force`), held articles are taken too, in their places."""
    sync_queue(store, settings)
    picked: list[Picked] = []
    errors: list[str] = []
    for row in store.queue.queued(held=held):
        if len(picked) >= settings.schedule.articles_per_issue:
            break
        if row.not_before is not None and row.not_before > now:
            continue
        try:
            article = read_article(
                settings.issues_dir / row.filename, headings=settings.contract.headings
            )
        except ArticleError as exc:
            store.queue.set_article_error(row.id, str(exc))
            errors.append(str(exc))
            log.error("not sending %s", exc)
            continue
        picked.append(Picked(row.id, article))
    return picked, errors


def build_issue(
    store: Store,
    settings: Settings,
    picked: list[Picked],
    scheduled_for: datetime | None = None,
    *,
    force: bool = False,
    layout: str | None = None,
    layout_choice: str | None = None,
) -> int:
    """Render the issue once (in `layout`, default: the setting, or a digest for several
    articles) with its articles' own pages, check it (the email, the article contract and
    spoiler leaks), and create it with its delivery plan. An issue whose check finds errors
    is refused unless `force`. `layout_choice`, the editors' choice read for this issue, is
    consumed when the issue is created."""
    from newsletter.check import ERROR, check_rendered, format_findings
    from newsletter.check.editorial import check_articles

    articles = [p.article for p in picked]
    base_slug = f"{(scheduled_for or utcnow()).date().isoformat()}-"
    layout = choose_layout(settings.layout, len(articles), layout)
    slugs = _unique_article_slugs(store, articles)
    rendered = render_fitting(
        articles,
        settings,
        slug=_unique_slug(store, base_slug, articles[0]),
        layout=layout,
        article_slugs=slugs,
    )
    findings = check_rendered(rendered, collapse_is_error=settings.collapse_is_error)
    editorial = check_articles(
        articles,
        subject=rendered.subject,
        preheader=rendered.preheader,
        layout=layout,
        contract=settings.contract,
        spoiler_leak=settings.spoiler_leak,
    )
    for finding in editorial:  # a leak or a contract warning is worth seeing at send time
        if finding.severity != ERROR:
            log.warning("%s %s: %s", finding.severity, finding.where, finding.message)
    findings += editorial
    errors = [f for f in findings if f.severity == ERROR]
    if errors and not force:
        raise CheckFailed(
            "the issue was not sent: its check found errors (see 'newsletter check'; "
            "'newsletter run --force' sends anyway):\n" + format_findings(errors),
            format_findings(errors),
        )
    pages = render_article_pages(articles, settings, slugs)
    return store.queue.create_issue(
        rendered,
        [p.article_id for p in picked],
        scheduled_for,
        pages=pages,
        layout_choice=layout_choice,
    )


def _unique_article_slugs(store: Store, articles: list[Article]) -> list[str]:
    """Each article's page address, from its title; never one a published page has."""
    slugs: list[str] = []
    for article in articles:
        base = article_slug(article)
        candidate, n = base, 2
        while candidate in slugs or store.queue.article_page_taken(candidate):
            candidate, n = f"{base}-{n}", n + 1
        slugs.append(candidate)
    return slugs


def _unique_slug(store: Store, prefix: str, lead: Article) -> str:
    from newsletter.render import slugify

    slug = prefix + slugify(lead.title)
    candidate, n = slug, 2
    while store.queue.issue_by_slug(candidate) is not None:
        candidate, n = f"{slug}-{n}", n + 1
    return candidate


@dataclass
class TickResult:
    issue_id: int | None
    articles: list[str]
    errors: list[str]
    report: SendReport | None
    resumed: list[SendReport] = field(default_factory=list)
    tick: datetime | None = None
    held: bool = False
    held_articles: list[HeldArticle] = field(default_factory=list)


@dataclass(frozen=True)
class HeldArticle:
    """An article a tick held because the issue's check found errors in it."""

    article_id: int
    filename: str
    title: str
    reason: str


def _culprits(
    settings: Settings, picked: list[Picked], failure: CheckFailed
) -> list[tuple[Picked, str]]:
    """Which picked articles made the issue's check fail, each with its reasons: those
    that fail on their own, else (only together, e.g. too large) the last one added."""
    from newsletter.check import ERROR, check_rendered, format_findings
    from newsletter.check.editorial import check_articles

    if len(picked) == 1:
        return [(picked[0], failure.report)]
    found = []
    for p in picked:
        rendered = render_fitting([p.article], settings, slug="held-check")
        findings = check_rendered(rendered, collapse_is_error=settings.collapse_is_error)
        # A spoiler leak (when an error) or a broken contract is the article's own.
        findings += check_articles(
            [p.article],
            subject=rendered.subject,
            preheader=rendered.preheader,
            layout=choose_layout(settings.layout, 1),
            contract=settings.contract,
            spoiler_leak=settings.spoiler_leak,
        )
        errors = [f for f in findings if f.severity == ERROR]
        if errors:
            found.append((p, format_findings(errors)))
    if not found:
        others = ", ".join(q.article.path.name for q in picked[:-1])
        found.append((picked[-1], f"together with {others}:\n{failure.report}"))
    return found


def _hold(ctx: SendContext, picked: Picked, reason: str) -> HeldArticle | None:
    """Hold the article and tell the editor once: a log line, and an email to
    `[editor] email` when set. The tick goes on with the next article."""
    if not ctx.store.queue.hold_article(picked.article_id, reason):
        return None
    held = HeldArticle(picked.article_id, picked.article.path.name, picked.article.title, reason)
    log.warning(
        "held %s: the issue's check found errors; the queue goes on without it. Fix it, "
        "then 'newsletter queue release %s' (or 'newsletter run --force' sends it as it is)",
        held.filename,
        held.filename,
    )
    if ctx.settings.editor_email:
        _email_editor(ctx, held)
    return held


def _email_editor(ctx: SendContext, held: HeldArticle) -> None:
    from html import escape

    from newsletter.providers import Message

    text = (
        f"{held.filename} ({held.title}) was held: the check of the issue it was to go out in "
        f"found errors, so the queue goes on without it.\n\n{held.reason}\n\n"
        f"Fix the article, then run 'newsletter queue release {held.filename}' (or "
        f"'newsletter queue add' it again); 'newsletter run --force' sends it as it is.\n"
    )
    message = Message(
        to_email=ctx.settings.editor_email,
        to_name="",
        subject=f"{ctx.settings.name}: held {held.filename}",
        text=text,
        html=f"<pre>{escape(text)}</pre>",
        category="editor",
        key=f"held-{held.article_id}-{utcnow():%Y%m%dT%H%M%S}",
    )
    try:
        ctx.provider.send_message(message)
    except NewsletterError as exc:  # telling the editor must never stop the tick
        log.error("could not email the editor about %s: %s", held.filename, exc)


LAST_TICK, HELD_TICK = "last_served_tick", "held_tick"
# When a scheduler first served this newsletter: a tick before it was never the scheduler's
# to serve, so it cannot have been "missed while the scheduler was down".
SCHEDULER_STARTED = "scheduler_started"


def latest_tick(settings: Settings, now: datetime) -> datetime | None:
    """The most recent cadence time at or before `now`."""
    ticks = next_ticks(settings, now - timedelta(days=8), 8 * 7 + 2)
    past = [t for t in ticks if t <= now]
    return past[-1] if past else None


def held_tick(store: Store) -> datetime | None:
    """A tick missed by more than the grace period, waiting for the editor."""
    value = store.leases.get_meta(HELD_TICK)
    return datetime.fromisoformat(value) if value else None


def _served(store: Store, tick: datetime) -> bool:
    value = store.leases.get_meta(LAST_TICK)
    return value is not None and datetime.fromisoformat(value) >= tick


def publish_tick(
    ctx: SendContext,
    now: datetime | None = None,
    *,
    scheduled_for: datetime | None = None,
    progress_factory: ProgressFactory | None = None,
    lease: SendingLease | None = None,
    force: bool = False,
    layout: str | None = None,
) -> TickResult:
    """What one due tick does, under the sending lease: finish any issue a crash
    interrupted, then pick the next articles, build one issue and send it. A tick already
    served (same `scheduled_for`) builds nothing new, so a repeated wake-up never sends an
    issue twice. The issue's layout is `layout` (`run --layout`), else the one the editors
    chose for the next issue in the workspace, else automatic; creating the issue consumes
    the editors' choice either way."""
    store, settings = ctx.store, ctx.settings
    now = now or utcnow()
    own_lease = lease is None
    lease = lease or SendingLease(store, settings.schedule.lease)
    if own_lease:
        lease.__enter__()
    try:
        ctx = dataclasses.replace(ctx, heartbeat=ctx.heartbeat or lease.renew)
        resumed = [
            _send(ctx, issue_id, progress_factory) for issue_id in store.queue.unfinished_issues()
        ]
        if scheduled_for is not None and _served(store, scheduled_for):
            return TickResult(None, [], [], None, resumed, scheduled_for)
        picked, errors = pick(store, settings, now, held=force)
        held: list[HeldArticle] = []
        issue_id = None
        chosen = chosen_layout(store) if picked else None
        while picked:
            try:
                issue_id = build_issue(
                    store,
                    settings,
                    picked,
                    scheduled_for,
                    force=force,
                    layout=layout or chosen,
                    layout_choice=chosen,
                )
                break
            except CheckFailed as failure:  # hold the culprits, go on with the next ones
                newly = [_hold(ctx, p, why) for p, why in _culprits(settings, picked, failure)]
                if not any(newly):
                    raise
                held.extend(h for h in newly if h is not None)
                picked, more = pick(store, settings, now)
                errors.extend(more)
        if scheduled_for is not None:
            store.leases.set_meta(LAST_TICK, scheduled_for.isoformat())
        else:
            store.leases.set_meta(
                HELD_TICK, None
            )  # the editor sent by hand: nothing is held any more
        if issue_id is None:
            return TickResult(None, [], errors, None, resumed, scheduled_for, held_articles=held)
        report = _send(ctx, issue_id, progress_factory)
        return TickResult(
            issue_id,
            [p.article.title for p in picked],
            errors,
            report,
            resumed,
            scheduled_for,
            held_articles=held,
        )
    finally:
        if own_lease:
            lease.release()


def scheduled_work(
    ctx: SendContext,
    lease: SendingLease,
    now: datetime | None = None,
    *,
    progress_factory: ProgressFactory | None = None,
) -> TickResult | None:
    """What the scheduler does at each wake-up while it holds the lease: serve the latest
    cadence tick once. Missed by at most the grace period (the scheduler was down), it still
    goes out; missed by more, it is held for the editor instead of surprising anyone days
    later. Interrupted issues are finished either way."""
    store, settings = ctx.store, ctx.settings
    now = now or utcnow()
    started = store.leases.get_meta(SCHEDULER_STARTED)
    if started is None:
        store.leases.set_meta(SCHEDULER_STARTED, now.isoformat())
        started = now.isoformat()
    tick = latest_tick(settings, now)
    if tick is not None and not _served(store, tick) and now - tick > settings.schedule.grace:
        store.leases.set_meta(LAST_TICK, tick.isoformat())
        if tick > datetime.fromisoformat(started):
            store.leases.set_meta(HELD_TICK, tick.isoformat())
            log.warning(
                "the issue due at %s was missed by more than %s (the scheduler was not "
                "running): holding it; run 'newsletter run' to send it now",
                tick,
                settings.schedule.grace,
            )
        # else: due before any scheduler served this newsletter; nothing was missed.
        tick = None
    if tick is None or _served(store, tick):
        ctx = dataclasses.replace(ctx, heartbeat=ctx.heartbeat or lease.renew)
        resumed = [
            _send(ctx, issue_id, progress_factory) for issue_id in store.queue.unfinished_issues()
        ]
        return TickResult(None, [], [], None, resumed) if resumed else None
    return publish_tick(
        ctx, now, scheduled_for=tick, progress_factory=progress_factory, lease=lease
    )


def _send(ctx: SendContext, issue_id: int, progress_factory: ProgressFactory | None) -> SendReport:
    """Send one issue, with its own progress bar when the caller shows them."""
    if progress_factory is not None:
        counts = ctx.store.deliveries.counts(issue_id)
        remaining = counts[DeliveryState.PENDING] + counts[DeliveryState.IN_FLIGHT]
        ctx = dataclasses.replace(ctx, progress=progress_factory(issue_id, remaining))
    return send_issue(ctx, issue_id)
