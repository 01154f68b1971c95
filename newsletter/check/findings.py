"""What a check reports: findings with a severity, and how they are printed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One problem: `where` is e.g. "html:42", "text:7", "subject" or "" for the whole email."""

    severity: str
    code: str
    message: str
    where: str = ""


def has_errors(findings: Iterable[Finding]) -> bool:
    """True when anything must be fixed before sending."""
    return any(f.severity == ERROR for f in findings)


def format_findings(findings: Sequence[Finding]) -> str:
    """One `severity where: message` line per finding, errors first, then a count."""
    ordered = sorted(findings, key=lambda f: f.severity != ERROR)
    lines = [
        f"{f.severity} {f.where}: {f.message}" if f.where else f"{f.severity}: {f.message}"
        for f in ordered
    ]
    errors = sum(f.severity == ERROR for f in findings)
    warnings = len(findings) - errors
    lines.append(f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}")
    return "\n".join(lines)
