"""What an accepted request delivers: one message per `to` recipient, substitutions applied,
as SendGrid would render it (tests read these instead of a real inbox)."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DeliveredMessage:
    """One accepted message as one recipient would get it (substitutions applied)."""

    to: str
    to_name: str | None
    from_email: str
    subject: str
    text: str | None
    html: str | None
    headers: dict[str, str]
    custom_args: dict[str, str]
    categories: list[str]
    message_id: str  # the X-Message-Id answered for the request
    sandbox: bool
    from_name: str | None = None
    reply_to: str | None = None
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    send_at: int | None = None
    index: int = 0  # position of this recipient in its request (the n of sg_message_id)

    @property
    def sg_message_id(self) -> str:
        """The id SendGrid puts in events for this recipient: ``<X-Message-Id>.<n>``."""
        return f"{self.message_id}.{self.index}"


def _substitute(text: str | None, subs: dict[str, str] | None) -> str | None:
    if text is None or not subs:
        return text
    for key, value in subs.items():
        text = text.replace(key, value)
    return text


def expand(body: dict[str, Any], message_id: str, sandbox: bool) -> list[DeliveredMessage]:
    """One DeliveredMessage per `to` recipient, as SendGrid would render it."""
    text = html = None
    for item in body.get("content") or ():
        kind = item["type"].lower()
        if kind == "text/plain" and text is None:
            text = item["value"]
        elif kind == "text/html" and html is None:
            html = item["value"]
    top_headers = body.get("headers") or {}
    top_args = body.get("custom_args") or {}
    categories = list(body.get("categories") or ())
    top_reply = (body.get("reply_to") or {}).get("email")
    if top_reply is None and body.get("reply_to_list"):
        top_reply = body["reply_to_list"][0]["email"]
    out: list[DeliveredMessage] = []
    index = 0
    for pers in body["personalizations"]:
        subs = pers.get("substitutions")
        sender = pers.get("from") or body["from"]
        subject = _substitute(pers.get("subject") or body.get("subject") or "", subs)
        pers_text, pers_html = _substitute(text, subs), _substitute(html, subs)
        headers = {**top_headers, **(pers.get("headers") or {})}
        args = {**top_args, **(pers.get("custom_args") or {})}
        cc = tuple(r["email"] for r in pers.get("cc") or ())
        bcc = tuple(r["email"] for r in pers.get("bcc") or ())
        send_at = pers.get("send_at", body.get("send_at"))
        for recipient in pers["to"]:
            out.append(
                DeliveredMessage(
                    to=recipient["email"],
                    to_name=recipient.get("name"),
                    from_email=sender["email"],
                    subject=subject or "",
                    text=pers_text,
                    html=pers_html,
                    headers=dict(headers),
                    custom_args=dict(args),
                    categories=list(categories),
                    message_id=message_id,
                    sandbox=sandbox,
                    from_name=sender.get("name"),
                    reply_to=top_reply,
                    cc=cc,
                    bcc=bcc,
                    send_at=send_at,
                    index=index,
                )
            )
            index += 1
    return out


def random_id() -> str:
    """22 url-safe characters, the shape of SendGrid's X-Message-Id."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
