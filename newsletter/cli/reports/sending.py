"""What the commands print about sending: one `run` (what a tick held, skipped, resumed and
sent) and its dry run, `resume`, a send stopped by a signal or held back by a cap of
[sending], and the `worker`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from newsletter.cli.reports import indented, local
from newsletter.records import DeliveryState

if TYPE_CHECKING:
    from newsletter import delivery, publish
    from newsletter.alerts import HeldArticle
    from newsletter.settings import Settings


# -- run ------------------------------------------------------------------------------------
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
        yield from indented(article.reason, "  ")


def skipped(error: str) -> str:
    return f"skipped: {error}"


def resumed(report: delivery.SendReport) -> Iterator[str]:
    if report.next_wave is None:
        yield "resumed an interrupted issue:"
    else:
        yield "reader time: sent the waves that are due:"
    yield from send_report(report)


def resumed_elsewhere(issue_id: int) -> str:
    return f"issue {issue_id}: resumed; the active sender sends the rest"


def sent_articles(articles: Iterable[str]) -> str:
    return f"articles: {', '.join(articles)}"


NOTHING_DUE = "nothing to send: no queued article is due"


# -- run --dry-run --------------------------------------------------------------------------
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
        yield from indented(article.reason, "  ")
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


# -- after sending --------------------------------------------------------------------------
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


def paced(report: delivery.SendReport) -> str:
    """A send a cap of [sending] held back (its `last_error` says until when), and how to
    go on."""
    return (
        f"issue {report.issue_id}: {report.last_error}; `newsletter resume {report.issue_id}` "
        "from then (the scheduler and `newsletter worker` go on by themselves)"
    )


# -- worker ---------------------------------------------------------------------------------
def worker_started(process_id: str, safe_url: str) -> str:
    return f"worker {process_id} on {safe_url}"


def worker_done(report: delivery.WorkerReport) -> str:
    return (
        f"worker done: {report.batches} batches for issues "
        f"{', '.join(map(str, sorted(report.issues))) or '-'}"
    )


WORKER_STOPPED = "worker stopped"
WORKER_STOPPED_BETWEEN_BATCHES = "worker stopped between batches"
