"""The doctor's findings as typed records, and their JSON form (for `--json` and the cached
daily result in `meta`). Standard library only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum


class Level(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One line of the report: which check, about which DNS name, what was found there
    (quoted as published, or None when nothing was) and what to publish instead."""

    check: str  # "spf", "dkim", "dmarc", "from", "unsubscribe", "volume", "dns"
    level: Level
    domain: str
    message: str
    found: str | None = None
    publish: str | None = None


def finding(
    check: str,
    level: Level,
    domain: str,
    message: str,
    found: str | None = None,
    publish: str | None = None,
) -> Finding:
    """A `Finding` by position: the checks build many, always in this order."""
    return Finding(
        check=check, level=level, domain=domain, message=message, found=found, publish=publish
    )


@dataclass(frozen=True, kw_only=True)
class VolumeRow:
    """One row of the bulk-sender rules table, with whether this newsletter meets it."""

    rule: str
    applies: str  # who asks for it and from which volume
    met: str  # "yes", "no", "unknown"


@dataclass(frozen=True, kw_only=True)
class Report:
    """A whole run: the findings in order, when it ran, and the volume table's figures."""

    checked_at: datetime
    domain: str
    provider: str
    findings: tuple[Finding, ...]
    list_size: int = 0
    complaint_rate: float = 0.0
    volume: tuple[VolumeRow, ...] = field(default=())
    # A look-up timed out or got SERVFAIL: the gate asks again sooner than the next day.
    dns_trouble: bool = False

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == Level.ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == Level.WARNING)

    @property
    def has_errors(self) -> bool:
        return bool(self.errors)

    def to_json(self) -> str:
        data = asdict(self)
        data["checked_at"] = self.checked_at.isoformat()
        return json.dumps(data, indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Report:
        data = json.loads(text)
        return cls(
            checked_at=datetime.fromisoformat(data["checked_at"]),
            domain=data["domain"],
            provider=data["provider"],
            findings=tuple(Finding(**{**f, "level": Level(f["level"])}) for f in data["findings"]),
            list_size=data["list_size"],
            complaint_rate=data["complaint_rate"],
            volume=tuple(VolumeRow(**row) for row in data["volume"]),
            dns_trouble=bool(data.get("dns_trouble", False)),
        )
