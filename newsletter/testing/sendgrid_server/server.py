"""The contract server: answers POST /v3/mail/send like api.sendgrid.com.

Requests are checked in SendGrid's order (auth, length, size, encoding: `transport`; then type,
faults, JSON, contract here) and accepted ones are counted and, unless the config says
``record=False``, recorded one message per recipient. It also posts signed Event Webhook
events for what it accepted.
"""

from __future__ import annotations

import json
from typing import Any

from newsletter.testing.sendgrid_server.contract import validators
from newsletter.testing.sendgrid_server.events import EventSigner, events_for
from newsletter.testing.sendgrid_server.faults import FAULT_ORDER, Faults, fault_answer
from newsletter.testing.sendgrid_server.messages import DeliveredMessage, expand, random_id
from newsletter.testing.sendgrid_server.rules import error, errors_body, validate_mail_send
from newsletter.testing.sendgrid_server.stats import ServerStats
from newsletter.testing.sendgrid_server.transport import BaseServer, Exchange


class SendGridServer(BaseServer):
    """Local stand-in for api.sendgrid.com: POST /v3/mail/send plus Event Webhook posts.

    ``SendGridServer(api_key=..., record=False, ...)`` takes `ServerConfig`'s fields (or one
    `ServerConfig`). ``server.faults`` arms SendGrid's failure answers between two requests.
    """

    def __init__(self, *args: Any, **fields: Any) -> None:
        super().__init__(*args, **fields)
        validators()  # load + compile the contract now, so a missing spec fails early
        self.faults = Faults()
        self._signer = EventSigner(self.config.event_private_key)
        self._messages: list[DeliveredMessage] = []
        self._sandbox_messages: list[DeliveredMessage] = []

    def __repr__(self) -> str:  # never shows the key
        state = self.url if self._httpd else "stopped"
        return f"<SendGridServer {state} record={self.config.record}>"

    # -- what was received

    @property
    def messages(self) -> list[DeliveredMessage]:
        """Snapshot of accepted (non-sandbox) messages, one per `to` recipient."""
        with self.lock:
            return list(self._messages)

    @property
    def sandbox_messages(self) -> list[DeliveredMessage]:
        """Snapshot of sandbox-mode messages: validated and answered 200, never delivered."""
        with self.lock:
            return list(self._sandbox_messages)

    def clear(self) -> None:
        """Forget recorded messages and reset counters (faults are left as they are)."""
        super().clear()
        with self.lock:
            self._messages.clear()
            self._sandbox_messages.clear()

    # -- event webhook

    @property
    def public_key_pem(self) -> str:
        """PEM public key matching the signatures of post_events."""
        return self._signer.public_key_pem

    @property
    def public_key_base64(self) -> str:
        """Base64 DER public key, the form SendGrid shows and EventWebhook expects."""
        return self._signer.public_key_base64

    def events_for_accepted(self, kind: str = "delivered") -> list[dict[str, Any]]:
        """SendGrid-style events for every accepted recipient (needs record=True).

        Custom args become top-level keys, as in SendGrid's Event Webhook.
        """
        if not self.config.record:
            raise RuntimeError("events_for_accepted needs a server created with record=True")
        return events_for(self.messages, kind)

    def post_events(
        self,
        events: list[dict[str, Any]],
        url: str | None = None,
        *,
        timestamp: int | None = None,
        tamper: bool = False,
    ) -> int:
        """POST events as SendGrid's Signed Event Webhook does; return the HTTP status.

        ``tamper=True`` changes the body after signing, so a correct receiver must refuse it.
        """
        target = url or self.config.event_webhook_url
        if not target:
            raise ValueError("no url given and no event_webhook_url configured")
        return self._signer.post(events, target, timestamp=timestamp, tamper=tamper)

    # -- answering a mail send

    def answer(self, exchange: Exchange, length: int) -> None:
        raw = exchange.read_body(length)
        if raw is None:
            return
        content_type = (exchange.header("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            exchange.send(
                415, errors_body(error("Content-Type should be application/json.", None, None))
            )
            return

        fault = self._take_fault()
        if fault is not None and fault != "slow":
            answer = fault_answer(fault, self.faults)
            exchange.send(
                answer.status,
                answer.body,
                content_type=answer.content_type,
                headers=answer.headers,
            )
            return
        if fault == "slow":  # (waiting uses no thread CPU, so cpu_seconds stays fair)
            self.stopping.wait(self.faults.slow_seconds)

        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            exchange.send(400, errors_body(error("Bad Request: the body is not valid JSON.", None)))
            return
        errors = validate_mail_send(body)
        if errors:
            self.count(ServerStats(requests_rejected=1))
            exchange.send(400, errors_body(*errors))
            return

        sandbox = (body.get("mail_settings") or {}).get("sandbox_mode", {}).get("enable") is True
        message_id = random_id()
        if self._accept(body, message_id, sandbox, may_drop=fault is None):
            exchange.drop()  # accepted and recorded, but never answered
        elif sandbox:
            exchange.send(200)
        else:
            exchange.send(202, headers={"X-Message-Id": message_id})

    def _take_fault(self) -> str | None:
        with self.lock:
            for name in FAULT_ORDER:
                left = getattr(self.faults, name)
                if left > 0:
                    setattr(self.faults, name, left - 1)
                    return name
        return None

    def _accept(
        self, body: dict[str, Any], message_id: str, sandbox: bool, *, may_drop: bool
    ) -> bool:
        """Count (and record) a valid request; True if it must be dropped unanswered."""
        recipients = sum(len(p["to"]) for p in body["personalizations"])
        expanded = expand(body, message_id, sandbox) if self.config.record else []
        if sandbox:
            delta = ServerStats(sandbox_requests=1)
        else:
            delta = ServerStats(requests_accepted=1, recipients_accepted=recipients)
        with self.lock:
            (self._sandbox_messages if sandbox else self._messages).extend(expanded)
            if may_drop and self.faults.drop_after_accept > 0:
                self.faults.drop_after_accept -= 1
                drop = True
            else:
                drop = False
            self.count(delta)
        return drop
