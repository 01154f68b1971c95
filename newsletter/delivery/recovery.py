"""After a crash: batches left in flight become uncertain, and a provider that can tell what
it delivered settles them. Never a silent resend."""

from __future__ import annotations

import logging

from newsletter.delivery.lease import PROCESS_ID, dead_local_process
from newsletter.delivery.log import RecoveryLog
from newsletter.delivery.policy import DeliveryPolicy
from newsletter.providers import Provider, Settles
from newsletter.records import DeliveryState, utcnow

log = logging.getLogger(__name__)

PENDING, SENT, UNCERTAIN = DeliveryState.PENDING, DeliveryState.SENT, DeliveryState.UNCERTAIN


def recover_in_flight(
    rows: RecoveryLog, issue_id: int, policy: DeliveryPolicy, provider: Provider | None = None
) -> int:
    """Batches left in flight by a sender that died become uncertain (or pending again when
    the list prefers a duplicate to a gap): at once when that sender was a process of this
    machine that no longer exists, otherwise once its claim is older than the claim timeout
    (a live sender never keeps a batch in flight longer than one request). A provider that
    can tell what it delivered (`Settles`) then settles every uncertain row of the issue.
    `rows` is the delivery log (`store.deliveries` or a `DeliveryLog`)."""
    moved = 0
    stale = utcnow() - policy.claim_timeout
    for worker, oldest in rows.in_flight_claims(issue_id):
        if worker == PROCESS_ID:
            continue  # our own threads' batches
        if worker is None or dead_local_process(worker):
            moved += rows.in_flight_to_uncertain(issue_id, worker=worker)
        elif oldest < stale:
            moved += rows.in_flight_to_uncertain(issue_id, older_than=stale, worker=worker)
    if moved:
        log.warning(
            "issue %s: %d deliveries were in flight when their sender stopped: now uncertain",
            issue_id,
            moved,
        )
    if isinstance(provider, Settles):
        settle_with_provider(rows, provider, issue_id)
    if policy.resend_uncertain:
        rows.settle(issue_id, UNCERTAIN, PENDING)
    return moved


def settle_with_provider(
    rows: RecoveryLog, provider: Settles, issue_id: int, subscriber_ids: list[int] | None = None
) -> tuple[int, int]:
    """Ask the provider which uncertain rows it delivered: those become sent, the others
    pending (it says they never went out). Returns (sent, pending)."""
    if subscriber_ids is None:
        subscriber_ids = [r.subscriber_id for r in rows.in_state(issue_id, UNCERTAIN)]
    if not subscriber_ids:
        return 0, 0
    delivered = provider.settle_uncertain(issue_id, subscriber_ids)
    sent = [sid for sid in subscriber_ids if delivered.get(sid)]
    unsent = [sid for sid in subscriber_ids if not delivered.get(sid)]
    moved_sent = rows.settle(issue_id, UNCERTAIN, SENT, sent) if sent else 0
    moved_back = rows.settle(issue_id, UNCERTAIN, PENDING, unsent) if unsent else 0
    log.warning(
        "issue %s: the provider settled %d uncertain deliveries: %d delivered, %d to send again",
        issue_id,
        moved_sent + moved_back,
        moved_sent,
        moved_back,
    )
    return moved_sent, moved_back
