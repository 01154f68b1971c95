"""The delivery state machine, one module per job (imports run one way, import-linter):
`policy` (how batches are treated, the report), `lease` (who sends: the sending lease, the
stop request), `log` (the delivery log the sender needs, as protocols, and its adapter over
the store), `context` (`SendContext`, `SendHooks`), `recovery` (in-flight rows after a
crash), `sender` (the loop), `control` (pause/resume/cancel, uncertain rows, workers).
Callers keep `delivery.X`: this re-exports what the CLI, publish, the scheduler and the
workspace call."""

from newsletter.delivery.context import ProgressFactory, SendContext, SendHooks, SendOptions
from newsletter.delivery.control import (
    WorkerReport,
    change_issue_status,
    resolve_uncertain,
    resume_issue,
    run_worker,
)
from newsletter.delivery.lease import (
    PROCESS_ID,
    SENDER_LEASE,
    SendingLease,
    StopRequest,
    stop_on_signals,
)
from newsletter.delivery.log import DeliveryLog, IssueStatuses, RecoveryLog, StoreLog
from newsletter.delivery.policy import DeliveryPolicy, SendReport, backoff_delay
from newsletter.delivery.recovery import recover_in_flight, settle_with_provider
from newsletter.delivery.sender import send_issue

__all__ = [
    "PROCESS_ID",
    "SENDER_LEASE",
    "DeliveryLog",
    "DeliveryPolicy",
    "IssueStatuses",
    "ProgressFactory",
    "RecoveryLog",
    "SendContext",
    "SendHooks",
    "SendOptions",
    "SendReport",
    "SendingLease",
    "StopRequest",
    "StoreLog",
    "WorkerReport",
    "backoff_delay",
    "change_issue_status",
    "recover_in_flight",
    "resolve_uncertain",
    "resume_issue",
    "run_worker",
    "send_issue",
    "settle_with_provider",
    "stop_on_signals",
]
