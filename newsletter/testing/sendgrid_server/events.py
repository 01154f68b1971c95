"""Signed Event Webhook posts, made exactly as SendGrid makes them (ECDSA P-256 over the
timestamp and the raw body), so receivers can be tested with the official verification."""

from __future__ import annotations

import base64
import copy
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.testing.sendgrid_server.messages import DeliveredMessage, random_id

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

EVENT_EXTRAS: dict[str, dict[str, Any]] = {
    "processed": {},
    "delivered": {"response": "250 2.0.0 OK", "ip": "127.0.0.1", "tls": 1},
    "deferred": {"response": "421 try again later", "attempt": "1"},
    "bounce": {"reason": "550 5.1.1 user unknown", "status": "5.1.1", "type": "bounce"},
    "dropped": {"reason": "Bounced Address", "status": "5.0.0"},
    "open": {"useragent": "Mozilla/5.0", "ip": "127.0.0.1", "sg_machine_open": False},
    "click": {"useragent": "Mozilla/5.0", "ip": "127.0.0.1", "url": "https://example.com/"},
}


def load_private_key(
    key: ec.EllipticCurvePrivateKey | bytes | str | None,
) -> ec.EllipticCurvePrivateKey:
    """A P-256 key from an object, PEM or DER; a fresh one for None."""
    if key is None:
        return ec.generate_private_key(ec.SECP256R1())
    if isinstance(key, str):
        key = key.encode()
    loaded: object = key
    if isinstance(key, bytes):
        try:
            loaded = serialization.load_pem_private_key(key, password=None)
        except ValueError:
            loaded = serialization.load_der_private_key(key, password=None)
    key = loaded  # type: ignore[assignment]
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("event_private_key must be an ECDSA private key (object, PEM or DER)")
    if key.curve.name != ec.SECP256R1.name:
        raise ValueError("event_private_key must use the P-256 curve, as SendGrid does")
    return key


def events_for(messages: Iterable[DeliveredMessage], kind: str) -> list[dict[str, Any]]:
    """SendGrid-style events of one kind for these messages (custom args at the top level)."""
    now = int(time.time())
    extras = EVENT_EXTRAS.get(kind, {})
    events = []
    for message in messages:
        event: dict[str, Any] = dict(message.custom_args)
        event.update(extras)
        event.update(
            {
                "email": message.to,
                "timestamp": now,
                "event": kind,
                "smtp-id": f"<{message.message_id}@sendgrid.local>",
                "sg_message_id": message.sg_message_id,
                "sg_event_id": random_id(),
            }
        )
        if message.categories:
            event["category"] = list(message.categories)
        events.append(event)
    return events


class EventSigner:
    """Holds the webhook's private key; signs and posts event batches."""

    def __init__(self, key: ec.EllipticCurvePrivateKey | bytes | str | None = None) -> None:
        self._private_key = load_private_key(key)

    @property
    def public_key_pem(self) -> str:
        return (
            self._private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
            .decode()
        )

    @property
    def public_key_base64(self) -> str:
        der = self._private_key.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        return base64.b64encode(der).decode()

    def post(
        self,
        events: list[dict[str, Any]],
        url: str,
        *,
        timestamp: int | None = None,
        tamper: bool = False,
    ) -> int:
        """POST events with SendGrid's signature headers; return the HTTP status.

        The signature is base64(DER ECDSA-P256-SHA256(timestamp + raw body)). ``tamper=True``
        changes the body after signing, so a correct receiver must refuse it.
        """
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        body = json.dumps(events).encode()
        signature = self._private_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        if tamper:
            altered = copy.deepcopy(events) or [{}]
            altered[0]["email"] = "attacker@example.invalid"
            body = json.dumps(altered).encode()
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "SendGrid Event API",
                SIGNATURE_HEADER: base64.b64encode(signature).decode(),
                TIMESTAMP_HEADER: stamp,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code
