"""The doctor's report as text for the terminal: one line per finding (level, check, DNS
name, what is wrong), then what was found and what to publish, then the volume-rules table."""

from __future__ import annotations

from newsletter.doctor.findings import Level, Report


def format_report(report: Report) -> str:
    lines = [
        f"deliverability of {report.domain} through {report.provider} "
        f"(checked {report.checked_at:%Y-%m-%d %H:%M} UTC)"
    ]
    for f in report.findings:
        where = f" {f.domain}" if f.domain else ""
        lines.append(f"{f.level.value:<7} {f.check}{where}: {f.message}")
        if f.found is not None and f.level != Level.OK:
            lines.append(f"        found:   {f.found}")
        elif f.found is not None:
            lines.append(f"        record:  {f.found}")
        if f.publish:
            lines.append(f"        publish: {f.publish}")
    lines.append("")
    lines.append(
        f"bulk-sender rules (list: {report.list_size:,} active; "
        f"complaint rate {report.complaint_rate:.2%}):"
    )
    width = max((len(row.rule) for row in report.volume), default=0)
    for row in report.volume:
        lines.append(f"  [{row.met:^7}] {row.rule:<{width}}  {row.applies}")
    errors, warnings = len(report.errors), len(report.warnings)
    lines.append("")
    lines.append(f"{errors} error(s), {warnings} warning(s)")
    return "\n".join(lines)
