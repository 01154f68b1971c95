"""SendGrid's signed Event Webhook: verify, then apply each event exactly once.

The signature (ECDSA P-256 over timestamp + raw body) is checked with SendGrid's own helper on
the raw bytes, and a timestamp more than five minutes away is refused so a captured request
cannot be replayed later. SendGrid redelivers for 24 hours, so applying a batch twice must
change nothing: suppressions and delivery confirmations are idempotent by nature and are
applied first (a crash half-way loses none of them: the redelivery applies them again); the
opens and clicks counters are only bumped for an `sg_event_id` seen for the first time.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook

from newsletter.exceptions import ConfigError
from newsletter.records import DeliveryState, SubscriberStatus
from newsletter.store import Store

log = logging.getLogger(__name__)

BOUNCED, COMPLAINED = SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED
SENT, UNCERTAIN = DeliveryState.SENT, DeliveryState.UNCERTAIN

PUBLIC_KEY_ENV = "SENDGRID_WEBHOOK_PUBLIC_KEY"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_SKEW_SECONDS = 300

# Events that take an address off the list, and the status it gets.
SUPPRESSING = {
    "bounce": BOUNCED,
    "dropped": BOUNCED,
    "spamreport": COMPLAINED,
    "unsubscribe": UNSUBSCRIBED,
    "group_unsubscribe": UNSUBSCRIBED,
}
# SendGrid drops messages to addresses already on its own suppression lists; the reason says
# which list, so the subscriber gets the matching status rather than a blanket "bounced".
DROPPED_REASONS = {
    "spam reporting address": COMPLAINED,
    "unsubscribed address": UNSUBSCRIBED,
    "group unsubscribe": UNSUBSCRIBED,
}
CONFIRMING = ("processed", "delivered")
ENGAGEMENT = ("open", "click")


class WebhookVerifier:
    """Checks SendGrid's signature with the official helper; any oddity means 'not signed'."""

    def __init__(self, public_key_base64: str) -> None:
        key = "".join(public_key_base64.split())
        try:
            helper = EventWebhook(key)
        except Exception:
            raise ConfigError(
                f"{PUBLIC_KEY_ENV} is not a public key: paste the base64 verification key "
                "SendGrid shows under Mail Settings > Signed Event Webhook"
            ) from None
        if not isinstance(helper.public_key, ec.EllipticCurvePublicKey) or not isinstance(
            helper.public_key.curve, ec.SECP256R1
        ):
            raise ConfigError(f"{PUBLIC_KEY_ENV} must be an ECDSA P-256 public key")
        self._helper = helper

    def verify(self, body: bytes, signature: str, timestamp: str, now: float | None = None) -> bool:
        if not timestamp.isascii() or not timestamp.isdigit():
            return False
        now = time.time() if now is None else now
        if abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
            return False
        try:
            # The helper takes text and re-encodes it as UTF-8, which gives back exactly the
            # raw bytes for any valid UTF-8 body; anything else cannot be a SendGrid post.
            payload = body.decode("utf-8")
            return self._helper.verify_signature(payload, signature, timestamp) is True
        except Exception:  # malformed base64, bad DER, undecodable body: all just "not signed"
            return False


@dataclass
class EventSummary:
    suppressed: int = 0
    confirmed: int = 0
    opens: int = 0
    clicks: int = 0
    duplicates: int = 0
    ignored: int = 0

    def as_dict(self) -> dict:
        return {
            "suppressed": self.suppressed,
            "confirmed": self.confirmed,
            "opens": self.opens,
            "clicks": self.clicks,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
        }


def parse_events(body: bytes) -> list:
    """The JSON array SendGrid posts; ValueError for anything else."""
    events = json.loads(body)
    if not isinstance(events, list):
        raise ValueError("the body is not a JSON array of events")
    return events


def _int_arg(event: dict, key: str) -> int | None:
    value = event.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value > 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value) or None
    return None


def suppression_status(event: dict) -> str | None:
    kind = event.get("event")
    status = SUPPRESSING.get(kind) if isinstance(kind, str) else None
    if status is None:
        return None
    if kind == "bounce" and event.get("type") == "blocked":
        # A block is the receiving server refusing our IP or content for now, not the address
        # being dead: SendGrid itself does not suppress it, and neither do we.
        return None
    if kind == "dropped":
        reason = str(event.get("reason", "")).strip().lower()
        return DROPPED_REASONS.get(reason, BOUNCED)
    return status


def apply_events(store: Store, events: list) -> EventSummary:
    """Apply a verified batch of events to the subscriber list and the delivery log."""
    summary = EventSummary()
    to_confirm: dict[int, set[int]] = defaultdict(set)
    engagement: list[tuple[str, int, str]] = []
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            summary.ignored += 1
            continue
        kind = event["event"]
        status = suppression_status(event)
        email = event.get("email")
        if status is not None and isinstance(email, str) and email.strip():
            if store.subscribers.suppress(email, status):
                summary.suppressed += 1
        elif kind in CONFIRMING:
            issue_id, subscriber_id = _int_arg(event, "issue_id"), _int_arg(event, "subscriber_id")
            if issue_id and subscriber_id:
                to_confirm[issue_id].add(subscriber_id)
            else:
                summary.ignored += 1
        elif kind in ENGAGEMENT:
            issue_id = _int_arg(event, "issue_id")
            event_id = event.get("sg_event_id")
            if issue_id and isinstance(event_id, str) and event_id:
                engagement.append((kind, issue_id, event_id))
            else:
                summary.ignored += 1
    for issue_id, subscriber_ids in to_confirm.items():
        summary.confirmed += store.deliveries.settle(
            issue_id, UNCERTAIN, SENT, sorted(subscriber_ids)
        )
    counts: dict[int, Counter] = defaultdict(Counter)
    for kind, issue_id, event_id in engagement:
        if store.events.first_time(event_id):
            counts[issue_id][kind] += 1
        else:
            summary.duplicates += 1
    for issue_id, counter in counts.items():
        store.queue.add_engagement(issue_id, opens=counter["open"], clicks=counter["click"])
        summary.opens += counter["open"]
        summary.clicks += counter["click"]
    return summary
