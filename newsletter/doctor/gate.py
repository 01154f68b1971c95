"""The doctor before sending: through a real provider it runs at most once a day, its report
cached with its time in `meta` (the workspace shows the same one). Errors refuse `run` unless
--force; they stop the scheduler and the workers (no --force there), pausing the issues in
progress with the reason and telling the editors. Through the outbox only the checks that need
no DNS run, as warnings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from newsletter.doctor.findings import Level, Report
from newsletter.records import IssueStatus

if TYPE_CHECKING:
    from newsletter.settings import Settings
    from newsletter.store import Store

META_KEY = "doctor.report"
# Set while the scheduler or a worker refuses to send: the time of the report that refused.
REFUSED_KEY = "doctor.refused"
MAX_AGE = timedelta(days=1)
# A report with a DNS timeout or SERVFAIL in it is asked again after this: such failures pass.
MAX_AGE_DNS_TROUBLE = timedelta(minutes=15)
# How the reason of an issue the doctor paused begins (the alerts name it).
PAUSE_REASON = "not sending: the deliverability check"


@dataclass(frozen=True, kw_only=True)
class GateResult:
    report: Report | None  # None through the outbox (no DNS look-ups)
    cached: bool
    lines: tuple[str, ...]  # what to show before sending
    refuse: bool


def last_report(store: Store) -> Report | None:
    text = store.meta.get(META_KEY)
    if not text:
        return None
    try:
        return Report.from_json(text)
    except (ValueError, KeyError, TypeError):
        return None  # written by another version: run again


def remember(store: Store, report: Report) -> None:
    store.meta.set(META_KEY, report.to_json())


def _check(
    settings: Settings, store: Store, now: datetime, env: Mapping[str, str] | None
) -> tuple[Report | None, bool, list[str]]:
    """The report for this send (the cached one while it is fresh, for the same domain and
    provider), whether it was cached, and its lines to show; None through the outbox."""
    from newsletter.doctor import diagnose
    from newsletter.doctor.sending import sending_of
    from newsletter.doctor.unsubscribe import check_base_url

    sending = sending_of(settings)
    if not sending.real:
        local = [
            f"warning: {f.check}: {f.message}"
            for f in check_base_url(settings.base_url, sending)
            if f.level != Level.OK
        ]
        return None, False, local
    report = last_report(store)
    domain = settings.from_email.rpartition("@")[2].strip().lower()
    cached = (
        report is not None
        and report.domain == domain
        and report.provider == sending.label
        and now - report.checked_at < (MAX_AGE_DNS_TROUBLE if report.dns_trouble else MAX_AGE)
    )
    if not cached or report is None:
        report = diagnose(settings, store, env, now)
        remember(store, report)
    lines = [
        f"{f.level.value}: {f.check}{' ' + f.domain if f.domain else ''}: {f.message}"
        + (f" (publish: {f.publish})" if f.publish else "")
        for f in report.findings
        if f.level != Level.OK
    ]
    return report, cached, lines


def _summary(report: Report, cached: bool) -> str:
    when = f"{report.checked_at:%Y-%m-%d %H:%M} UTC" + (", cached" if cached else "")
    return f"the deliverability check ({when}) found {len(report.errors)} error(s)"


def before_run(
    settings: Settings,
    store: Store,
    *,
    force: bool,
    now: datetime,
    env: Mapping[str, str] | None = None,
) -> GateResult:
    """`newsletter run`: the person at the terminal reads the lines and may --force."""
    report, cached, lines = _check(settings, store, now, env)
    if report is None:
        return GateResult(report=None, cached=False, lines=tuple(lines), refuse=False)
    refuse = report.has_errors and not force
    if report.has_errors:
        lines.append(
            f"{_summary(report, cached)}: "
            + (
                "not sending; fix them ('newsletter doctor' shows the records to publish and, "
                "once they are, checks again at once), or 'newsletter run --force' sends anyway"
                if refuse
                else "sending anyway (--force)"
            )
        )
    return GateResult(report=report, cached=cached, lines=tuple(lines), refuse=refuse)


def unattended(
    settings: Settings,
    store: Store,
    *,
    now: datetime,
    env: Mapping[str, str] | None = None,
) -> GateResult:
    """The scheduler and the workers: nobody reads the terminal and nobody can --force, so a
    refusal pauses every issue in progress with the reason (the editors get the paused-issue
    alert; a worker beside it finds nothing to claim) and is noted in `meta` for the alert
    that says why nothing goes out. A passing check clears that note."""
    report, cached, lines = _check(settings, store, now, env)
    if report is None or not report.has_errors:
        if store.meta.get(REFUSED_KEY):
            store.meta.set(REFUSED_KEY, None)
        return GateResult(report=report, cached=cached, lines=tuple(lines), refuse=False)
    first = report.errors[0]
    reason = (
        f"{PAUSE_REASON} ({report.checked_at:%Y-%m-%d %H:%M} UTC) found "
        f"{len(report.errors)} error(s), the first: {first.check} {first.domain}: "
        f"{first.message}. Publish the records 'newsletter doctor' (or the workspace's "
        "Deliverability page) names, check again there, then resume the issue"
    )
    for issue_id in store.issues.unfinished_issues():
        store.issues.set_issue_status(
            issue_id, IssueStatus.PAUSED, error=reason, only_from=(IssueStatus.SENDING,)
        )
    store.meta.set(REFUSED_KEY, report.checked_at.isoformat())
    lines.append(f"{_summary(report, cached)}: not sending; the editors are told")
    return GateResult(report=report, cached=cached, lines=tuple(lines), refuse=True)


def refusal(store: Store) -> Report | None:
    """The report that stopped the unattended sending, while it still does (the alerts)."""
    if not store.meta.get(REFUSED_KEY):
        return None
    report = last_report(store)
    return report if report is not None and report.has_errors else None
