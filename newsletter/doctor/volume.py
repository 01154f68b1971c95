"""The bulk-sender rules of Gmail and Yahoo (February 2024) and Outlook (May 2025), with this
newsletter's list size and its complaint rate measured from the stored complaints."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from newsletter.doctor.findings import Finding, Level, VolumeRow

CHECK = "volume"
BULK = 5000  # messages a day to Gmail (or Yahoo, or Outlook) addresses
WINDOW = timedelta(days=30)
COMPLAINT_LIMIT = 0.003  # "never reach 0.3 %"
COMPLAINT_TARGET = 0.001  # "keep it under 0.1 %"


def complaint_rate(complaints: int, sent: int) -> float:
    return complaints / sent if sent else 0.0


def _met(findings: Sequence[Finding], *checks: str) -> str:
    mine = [f for f in findings if f.check in checks]
    if not mine:
        return "unknown"
    return "no" if any(f.level == Level.ERROR for f in mine) else "yes"


def rules(findings: Sequence[Finding], rate: float) -> tuple[VolumeRow, ...]:
    both = "yes" if _met(findings, "spf") == "yes" and _met(findings, "dkim") == "yes" else "no"
    either = "yes" if "yes" in (_met(findings, "spf"), _met(findings, "dkim")) else "no"
    return (
        VolumeRow(rule="SPF or DKIM passes", applies="every sender (Gmail, Yahoo)", met=either),
        VolumeRow(rule="a From domain you own, with MX or A", applies="every sender", met=_met(findings, "from")),
        VolumeRow(rule="spam complaint rate under 0.3 % (aim under 0.1 %)", applies="every sender (Gmail Postmaster Tools)", met="yes" if rate < COMPLAINT_LIMIT else "no"),
        VolumeRow(rule="both SPF and DKIM pass", applies=f"≥ {BULK:,} a day (Gmail, Yahoo, Outlook)", met=both),
        VolumeRow(rule="a DMARC record (p=none at least), aligned with SPF or DKIM", applies=f"≥ {BULK:,} a day (Gmail, Yahoo, Outlook)", met=_met(findings, "dmarc")),
        VolumeRow(rule="one-click unsubscribe (RFC 8058), honoured within 2 days", applies=f"≥ {BULK:,} a day (Gmail, Yahoo)", met=_met(findings, "unsubscribe")),
    )  # fmt: skip


def volume_findings(
    list_size: int, complaints: int, sent: int, rows: Sequence[VolumeRow], now: datetime
) -> list[Finding]:
    del now
    rate = complaint_rate(complaints, sent)
    measured = f"{rate:.2%} ({complaints} complaints over {sent} delivered in {WINDOW.days} days)"
    findings = []
    bulk = list_size >= BULK
    unmet = [row.rule for row in rows if row.met == "no" and (bulk or "every" in row.applies)]
    size = f"{list_size:,} active subscribers"
    if bulk:
        size += f": a send reaches the {BULK:,}-a-day bulk-sender threshold"
    findings.append(
        Finding(
            check=CHECK,
            level=Level.ERROR if unmet and bulk else Level.WARNING if unmet else Level.OK,
            domain="",
            message=size
            + (
                f"; rules not met: {'; '.join(unmet)}"
                if unmet
                else "; every rule that applies is met"
            ),
        )
    )
    level = (
        Level.ERROR
        if rate >= COMPLAINT_LIMIT
        else Level.WARNING
        if rate >= COMPLAINT_TARGET
        else Level.OK
    )
    findings.append(
        Finding(check=CHECK, level=level, domain="", message=f"complaint rate {measured}")
    )
    return findings
