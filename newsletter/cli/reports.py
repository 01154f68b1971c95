"""Everything the commands print, as lines: the commands call the library and echo what is
formatted here, so a message is worded in one place. Times are the newsletter's local time.
Imports nothing heavy at the top (`--help` stays light): the records are read, not built."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from newsletter.records import DeliveryState

if TYPE_CHECKING:
    from newsletter import delivery, publish
    from newsletter.alerts import HeldArticle
    from newsletter.editors import Editor
    from newsletter.folder import NewFolder
    from newsletter.issue_state import IssueDetail, IssueState, StatusReport
    from newsletter.proofs import SandboxReport
    from newsletter.records import IssueSummary, QueuedArticle, Subscriber
    from newsletter.screenshot import Shot
    from newsletter.settings import Settings
    from newsletter.subscribers import ImportResult


def echo(lines: str | Iterable[str], *, err: bool = False) -> None:
    """Print one line or each of several, on stdout (or stderr with `err`)."""
    for line in [lines] if isinstance(lines, str) else lines:
        click.echo(line, err=err)


def local(moment: datetime | None, settings: Settings) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(settings.timezone).strftime("%a %Y-%m-%d %H:%M %Z")


def _indented(text: str | None, indent: str) -> Iterator[str]:
    for line in (text or "").splitlines():
        yield f"{indent}{line}"


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
            yield from _indented(entry.error, "       ")
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
        yield from _indented(row.last_error, "  ")


# -- subscribers ----------------------------------------------------------------------------
def import_problems(file: Path, result: ImportResult) -> Iterator[str]:
    for problem in [*result.problems, *result.skipped]:
        yield f"{file}:{problem}"


def import_summary(result: ImportResult) -> str:
    return (
        f"imported {result.imported}, updated {result.updated}, "
        f"rejected {len(result.problems)}, skipped {len(result.skipped)}"
    )


def subscriber_lines(rows: Iterable[Subscriber]) -> Iterator[str]:
    for row in rows:
        yield f"{row.email}\t{row.name}\t{row.status}"


def removed_subscriber(email: str) -> str:
    return f"removed {email}"


def exported(count: int, out: Path) -> str:
    return f"wrote {count} subscribers to {out}"


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


# -- preview --------------------------------------------------------------------------------
def paths(written: Iterable[Path]) -> Iterator[str]:
    for path in written:
        yield str(path)


def sideways(shot: Shot) -> str:
    return (
        f"warning: {shot.view.name}: the layout is {shot.scroll_width}px wide and scrolls sideways"
    )


# -- sending --------------------------------------------------------------------------------
def settle_hints(state: IssueState) -> Iterator[str]:
    """What the editor can do about an issue that finished with rows left to settle."""
    if not state.finished:
        return
    if state.uncertain:
        yield (
            f"  left to settle: {state.uncertain} uncertain (they may or may "
            f"not have it): 'newsletter resolve {state.issue_id} --resend' sends them again, "
            f"'newsletter resolve {state.issue_id} --mark-sent' counts them as delivered"
        )
    if state.failed:
        yield (
            f"  {state.failed} failed: the provider refused them for good "
            "(reasons below); nothing is retried"
        )


def send_report(report: delivery.SendReport) -> Iterator[str]:
    from newsletter.issue_state import IssueState

    counts = report.counts
    state = IssueState(issue_id=report.issue_id, status=report.status, counts=counts)
    yield (
        f"issue {report.issue_id}: {state.label}; "
        f"sent {counts.get(DeliveryState.SENT, 0)}, "
        f"failed {state.failed}, "
        f"uncertain {state.uncertain}, "
        f"skipped {counts.get(DeliveryState.SKIPPED, 0)}, "
        f"pending {counts.get(DeliveryState.PENDING, 0)}"
    )
    if report.next_wave is not None:
        yield (
            f"  reader time: the next wave goes at {report.next_wave:%Y-%m-%d %H:%M} UTC "
            "(the scheduler sends it; 'newsletter run' then sends what is due)"
        )
    if report.last_error and not report.ok:
        yield f"  last error: {report.last_error}"
    if state.uncertain:
        yield (
            f"  {state.uncertain} uncertain: see "
            f"'newsletter status {report.issue_id}' "
            f"and 'newsletter resolve {report.issue_id} --resend|--mark-sent'"
        )


def held(held: Iterable[HeldArticle]) -> Iterator[str]:
    """The articles a tick held, with their check's reasons (on stderr)."""
    from newsletter.alerts import held_notice

    for article in held:
        yield f"{held_notice(article.filename, article.title)}:"
        yield from _indented(article.reason, "  ")


def run_plan(plan: publish.RunPlan, settings: Settings) -> Iterator[str]:
    from newsletter.approval import awaiting_notice

    yield "dry run: nothing is sent, no issue is made, nothing is used up"
    for issue in plan.resume:
        yield unfinished(issue, settings)
    if plan.prepared is not None:
        prepared = plan.prepared
        if prepared.approved:
            slot = prepared.scheduled_for
            yield (
                f"would send approved issue {prepared.issue_id} ({prepared.subject}) to "
                f"{plan.recipients} active subscriber(s) now"
                + (f", before its slot {local(slot, settings)}" if slot else "")
            )
        else:
            yield f"would refuse (exit 1): {awaiting_notice(prepared.issue_id)}"
        return
    for error in plan.skipped:
        yield f"would skip: {error}"
    for article in plan.held:
        yield f"would hold {article.filename}: its check found errors:"
        yield from _indented(article.reason, "  ")
    if plan.subject is None:
        yield NOTHING_DUE
        return
    if plan.needs_approval:
        yield (
            f"would prepare an issue for {plan.recipients} active subscriber(s) and send "
            'nothing: [issue] approval = "required", it waits until another editor '
            "approves it ('newsletter approve ISSUE --editor EMAIL')"
        )
    else:
        yield f"would send to {plan.recipients} active subscriber(s)"
    yield f"  subject: {plan.subject}"
    yield f"  layout: {plan.layout}"
    for planned in plan.articles:
        yield f"  article: {planned.filename} ({planned.title})"
    yield from plan.warnings


NOTHING_DUE = "nothing to send: no queued article is due"


def unfinished(issue: publish.Unfinished, settings: Settings) -> str:
    """An issue already sending, in a dry run: what `run` would do with it now, or what
    it waits for (then `run` sends none of it)."""
    left = f"{issue.left} recipient(s) left"
    if issue.next_wave is not None:
        return (
            f"issue {issue.issue_id} waits for its next reader-time wave at "
            f"{local(issue.next_wave, settings)}: none due now, {left} (the scheduler "
            "sends each wave)"
        )
    if issue.paced_until is not None:
        return (
            f"issue {issue.issue_id} waits for the {issue.held_by}'s next window at "
            f"{local(issue.paced_until, settings)}: nothing may go before it, {left}"
        )
    return f"would finish interrupted issue {issue.issue_id}: {left}"


def stopped(signal_name: str | None, sent: Iterable[delivery.SendReport]) -> Iterator[str]:
    """After SIGINT or SIGTERM: each issue the stop left unfinished, and how to go on."""
    for report in sent:
        left = report.counts.get(DeliveryState.PENDING, 0)
        if left or report.stopped:
            yield (
                f"stopped by {signal_name}: issue {report.issue_id}: "
                f"{report.delivered} sent now, {left} left; `newsletter resume "
                f"{report.issue_id}` (or `newsletter run`) sends the rest"
            )


def skipped(error: str) -> str:
    return f"skipped: {error}"


def resumed(report: delivery.SendReport) -> Iterator[str]:
    if report.next_wave is None:
        yield "resumed an interrupted issue:"
    else:
        yield "reader time: sent the waves that are due:"
    yield from send_report(report)


def sent_articles(articles: Iterable[str]) -> str:
    return f"articles: {', '.join(articles)}"


# -- issues ---------------------------------------------------------------------------------
def status(report: StatusReport, settings: Settings) -> Iterator[str]:
    if report.latest_of == 0:
        yield "no issue yet: 'newsletter run' sends the first one"
    elif report.latest_of:
        yield (
            f"the latest issue ({report.latest_of} in all; 'newsletter status N' shows "
            "issue N, 'newsletter issues' lists them)"
        )
    if report.detail is not None:
        yield from issue_detail(report.detail, settings)


def issue_detail(detail: IssueDetail, settings: Settings) -> Iterator[str]:
    issue, state = detail.issue, detail.state
    yield f"issue {issue.id}: {issue.subject}"
    yield f"status: {state.label}   created {local(issue.created_at, settings)}"
    yield "  " + "  ".join(f"{name} {n}" for name, n in state.counts.items())
    yield (
        f"  human opens {issue.opens}  machine opens {issue.machine_opens}  clicks {issue.clicks}"
    )
    if issue.last_error:
        yield f"  last error: {issue.last_error}"
    yield from settle_hints(state)
    if detail.waves:
        yield f"reader time ({len(detail.waves)} waves):"
        for wave in detail.waves:
            zones = ", ".join(
                z or f"{settings.timezone.key} (no zone of their own)" for z in wave.zones
            )
            yield (
                f"  {local(wave.at, settings)}  sent {wave.sent}, left {wave.left}"
                + (f", other {wave.other}" if wave.other else "")
                + f"  {zones}"
            )
    if detail.uncertain:
        yield f"uncertain ({len(detail.uncertain)}): resolve with --resend or --mark-sent"
        for row in detail.uncertain:
            yield f"  {row.email}  batch {row.batch}"
    if detail.failed:
        yield f"failed ({len(detail.failed)}):"
        for row in detail.failed:
            yield f"  {row.email}  {row.error or ''}"


def issue_lines(issues: Iterable[IssueSummary], settings: Settings) -> Iterator[str]:
    for issue in issues:
        yield (
            f"{issue.id:>4}  {issue.status:<9} {local(issue.created_at, settings)}  {issue.subject}"
        )


def status_changed(issue_id: int, status: str) -> str:
    """What pause and cancel say once done: the status they set."""
    return f"issue {issue_id}: {status}"


def resumed_elsewhere(issue_id: int) -> str:
    return f"issue {issue_id}: resumed; the active sender sends the rest"


def resolved(issue_id: int, moved: int, resend: bool) -> str:
    return (
        f"issue {issue_id}: {moved} uncertain deliveries "
        f"{'queued to send again' if resend else 'counted as sent'}"
    )


def sandbox(report: SandboxReport) -> Iterator[str]:
    yield (
        f"sandbox: {report.requests} requests, {report.recipients} recipients, "
        f"{len(report.problems)} problems"
    )
    for problem in report.problems:
        yield f"  {problem}"
    if report.stopped:
        yield "stopped at the first refusal: the other requests were not made"


def proof_sent(issue_id: int, to: str, provider: str) -> str:
    return f"sent issue {issue_id} to {to} through {provider}"


# -- services -------------------------------------------------------------------------------
def worker_started(process_id: str, safe_url: str) -> str:
    return f"worker {process_id} on {safe_url}"


def worker_done(report: delivery.WorkerReport) -> str:
    return (
        f"worker done: {report.batches} batches for issues "
        f"{', '.join(map(str, sorted(report.issues))) or '-'}"
    )


WORKER_STOPPED = "worker stopped"
WORKER_STOPPED_BETWEEN_BATCHES = "worker stopped between batches"
