"""The doctor before `run`: through a real provider it runs at most once a day, its report
cached with its time in `meta` (the workspace shows the same one); errors refuse the send
unless --force. Through the outbox only the checks that need no DNS run, as warnings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from newsletter.doctor.findings import Level, Report

if TYPE_CHECKING:
    from newsletter.settings import Settings
    from newsletter.store import Store

META_KEY = "doctor.report"
MAX_AGE = timedelta(days=1)


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


def before_run(
    settings: Settings,
    store: Store,
    *,
    force: bool,
    now: datetime,
    env: Mapping[str, str] | None = None,
) -> GateResult:
    from newsletter.doctor import diagnose
    from newsletter.doctor.sending import sending_of
    from newsletter.doctor.unsubscribe import check_base_url

    sending = sending_of(settings)
    if not sending.real:
        local = tuple(
            f"warning: {f.check}: {f.message}"
            for f in check_base_url(settings.base_url, sending)
            if f.level != Level.OK
        )
        return GateResult(report=None, cached=False, lines=local, refuse=False)
    report = last_report(store)
    domain = settings.from_email.rpartition("@")[2].strip().lower()
    cached = (
        report is not None
        and report.domain == domain
        and report.provider == sending.label
        and now - report.checked_at < MAX_AGE
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
    refuse = report.has_errors and not force
    when = f"{report.checked_at:%Y-%m-%d %H:%M} UTC" + (", cached" if cached else "")
    if report.has_errors:
        lines.append(
            f"the deliverability check ({when}) found {len(report.errors)} error(s): "
            + (
                "not sending; fix them ('newsletter doctor' shows the records to publish and, "
                "once they are, checks again at once), or 'newsletter run --force' sends anyway"
                if refuse
                else "sending anyway (--force)"
            )
        )
    return GateResult(report=report, cached=cached, lines=tuple(lines), refuse=refuse)
