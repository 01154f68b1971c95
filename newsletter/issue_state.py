"""What an issue's delivery counts mean to an editor. An issue that finished with uncertain
or failed recipients is not simply "sent": those rows are left to settle. The rule lives
here once; `status` and `run` read it, the CLI's reports put it in words."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from newsletter.records import DeliveryState, IssueStatus

if TYPE_CHECKING:  # the records only: `run --help` must not load the store
    from newsletter.records import DeliveryRow, IssueRecord, IssueSummary, WaveProgress
    from newsletter.store import Store


@dataclass(frozen=True, kw_only=True)
class IssueState:
    """An issue's status with its delivery counts by state."""

    issue_id: int
    status: str
    counts: Mapping[str, int]

    @property
    def uncertain(self) -> int:
        return self.counts.get(DeliveryState.UNCERTAIN, 0)

    @property
    def failed(self) -> int:
        return self.counts.get(DeliveryState.FAILED, 0)

    @property
    def finished(self) -> bool:
        """Sending is over: nothing is pending or in flight any more."""
        return self.status == IssueStatus.SENT

    @property
    def left_to_settle(self) -> bool:
        """Finished, with uncertain rows for the editor to settle or failed rows to know of."""
        return self.finished and bool(self.uncertain or self.failed)

    @property
    def label(self) -> str:
        """The state as an editor reads it: the status, or "finished sending; N uncertain
        left to settle, M failed" when it finished with such rows."""
        if not self.left_to_settle:
            return self.status
        left = []
        if self.uncertain:
            left.append(f"{self.uncertain} uncertain left to settle")
        if self.failed:
            left.append(f"{self.failed} failed")
        return "finished sending; " + ", ".join(left)


@dataclass(frozen=True, kw_only=True)
class IssueDetail:
    """One issue as `status N` shows it: the row, its state, the rows an editor acts on."""

    issue: IssueRecord
    state: IssueState
    uncertain: list[DeliveryRow]
    failed: list[DeliveryRow]
    waves: list[WaveProgress] = field(default_factory=list)  # reader time, per wave


@dataclass(frozen=True, kw_only=True)
class StatusReport:
    """What `status [N]` shows: issue N, or the latest of `latest_of` issues when no number
    is named (`latest_of` is None when one is; 0 with no issue yet). The queue's held
    articles are `publish.held_articles`."""

    detail: IssueDetail | None
    latest_of: int | None


def issue_state(store: Store, issue_id: int, status: str) -> IssueState:
    return IssueState(issue_id=issue_id, status=status, counts=store.deliveries.counts(issue_id))


def issue_detail(store: Store, issue_id: int) -> IssueDetail:
    issue = store.issues.get_issue(issue_id)
    return IssueDetail(
        issue=issue,
        state=issue_state(store, issue_id, issue.status),
        uncertain=store.deliveries.in_state(issue_id, DeliveryState.UNCERTAIN),
        failed=store.deliveries.in_state(issue_id, DeliveryState.FAILED),
        waves=store.deliveries.waves(issue_id),
    )


def list_issues(store: Store) -> list[IssueSummary]:
    """Every issue, newest first, without its bodies."""
    return store.issues.list_issues()


def status_report(store: Store, issue_id: int | None = None) -> StatusReport:
    """Issue `issue_id`, or the latest one when it is None."""
    if issue_id is not None:
        return StatusReport(detail=issue_detail(store, issue_id), latest_of=None)
    issues = list_issues(store)
    detail = issue_detail(store, issues[0].id) if issues else None
    return StatusReport(detail=detail, latest_of=len(issues))
