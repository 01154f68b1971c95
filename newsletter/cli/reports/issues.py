"""What the commands print about issues already made: `status` (one issue's counts, waves
and rows to settle), `issues`, `pause`/`cancel`, `resolve`, `send-test`, `approve`/`reject`,
and what `preview` wrote."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.cli.reports import local

if TYPE_CHECKING:
    from newsletter.approval import Decision
    from newsletter.issue_state import IssueDetail, IssueState, StatusReport
    from newsletter.proofs import SandboxReport
    from newsletter.records import IssueSummary
    from newsletter.screenshot import Shot
    from newsletter.settings import Settings


# -- status and issues ----------------------------------------------------------------------
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


def issue_lines(issues: Iterable[IssueSummary], settings: Settings) -> Iterator[str]:
    for issue in issues:
        yield (
            f"{issue.id:>4}  {issue.status:<9} {local(issue.created_at, settings)}  {issue.subject}"
        )


# -- what an editor does to an issue --------------------------------------------------------
def status_changed(issue_id: int, status: str) -> str:
    """What pause and cancel say once done: the status they set."""
    return f"issue {issue_id}: {status}"


def resolved(issue_id: int, moved: int, resend: bool) -> str:
    return (
        f"issue {issue_id}: {moved} uncertain deliveries "
        f"{'queued to send again' if resend else 'counted as sent'}"
    )


def approved(decision: Decision, settings: Settings) -> str:
    issue = decision.issue
    when = local(issue.scheduled_for, settings) if issue.scheduled_for else "the next run"
    return f"approved issue {issue.id} ({issue.subject}): it goes out at {when}"


def rejected(decision: Decision, reason: str) -> Iterator[str]:
    yield f"rejected issue {decision.issue.id} ({decision.issue.subject})"
    for name in decision.held:
        yield f"  held {name}: {reason}"


# -- proofs and previews --------------------------------------------------------------------
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


def paths(written: Iterable[Path]) -> Iterator[str]:
    for path in written:
        yield str(path)


def sideways(shot: Shot) -> str:
    return (
        f"warning: {shot.view.name}: the layout is {shot.scroll_width}px wide and scrolls sideways"
    )
