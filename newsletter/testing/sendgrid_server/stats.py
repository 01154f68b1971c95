"""What a server saw, as typed records: `ServerStats` (one snapshot of every counter),
`SinkWindow` (a sink's rate between two looks) and `RequestRecord` (one answered POST).
Each also travels between processes as one JSON object (`as_json` / `from_json`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Self


class _Json:
    """A flat frozen record to and from a JSON object (the child-process protocol)."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, kw_only=True)
class ServerStats(_Json):
    """Every counter of a server, read under one lock so they agree with each other."""

    requests_accepted: int = 0  # answered 202 (or accepted, then dropped by a fault)
    recipients_accepted: int = 0  # `to` recipients in those, counted even without recording
    sandbox_requests: int = 0  # valid requests in sandbox mode (answered 200)
    requests_rejected: int = 0  # refused with 400 by validation
    cpu_seconds: float = 0.0  # thread CPU reading, validating, recording: the server's share

    def plus(self, other: ServerStats) -> ServerStats:
        return ServerStats(
            requests_accepted=self.requests_accepted + other.requests_accepted,
            recipients_accepted=self.recipients_accepted + other.recipients_accepted,
            sandbox_requests=self.sandbox_requests + other.sandbox_requests,
            requests_rejected=self.requests_rejected + other.requests_rejected,
            cpu_seconds=self.cpu_seconds + other.cpu_seconds,
        )


@dataclass(frozen=True, kw_only=True)
class SinkWindow(_Json):
    """What a sink accepted since the last look: the sender's rate as the sink saw it, from
    the first request's arrival to the last one's answer (unix times; taken as the answer
    is sent)."""

    requests: int = 0
    recipients: int = 0
    first: float | None = None
    last: float | None = None
    # The sink process's CPU time over the window, every thread's: what serving cost it, so
    # a benchmark can tell a sender's ceiling from the sink's own.
    cpu_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return (self.last - self.first) if self.first is not None and self.last else 0.0

    @property
    def rate(self) -> float:
        """Recipients per second over the window."""
        return self.recipients / self.seconds if self.seconds else 0.0

    def add(self, recipients: int, started: float, answered: float) -> SinkWindow:
        return SinkWindow(
            requests=self.requests + 1,
            recipients=self.recipients + recipients,
            first=started if self.first is None else min(self.first, started),
            last=answered if self.last is None else max(self.last, answered),
            cpu_seconds=self.cpu_seconds,
        )


@dataclass(frozen=True, kw_only=True)
class RequestRecord:
    """One answered POST: when its headers had arrived and when its status line was
    written (time.monotonic() of this process), and the status."""

    started: float
    answered: float
    status: int
