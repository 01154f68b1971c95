"""One-click unsubscribe (RFC 8058): its link must be https:// and reachable from outside,
or Gmail and Yahoo do not offer it. An error when the mail really goes out, a warning for
the outbox (nothing leaves this machine yet)."""

from __future__ import annotations

from urllib.parse import urlsplit

from newsletter.addresses import is_local_host
from newsletter.doctor.findings import Finding, Level
from newsletter.doctor.sending import Sending

CHECK = "unsubscribe"


def check_base_url(base_url: str, sending: Sending) -> list[Finding]:
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    level = Level.ERROR if sending.real else Level.WARNING
    problems = []
    if parts.scheme != "https":
        problems.append("is not https:// (RFC 8058 one-click unsubscribe requires HTTPS)")
    if is_local_host(host):
        problems.append(f"points to {host}, which subscribers cannot reach")
    if not problems:
        return [
            Finding(
                check=CHECK,
                level=Level.OK,
                domain=host,
                message="unsubscribe links are https:// on a public host (List-Unsubscribe-Post)",
                found=base_url,
            )
        ]
    return [
        Finding(
            check=CHECK,
            level=level,
            domain=host,
            message=f"base_url {' and '.join(problems)}: set [newsletter] base_url (or "
            "NEWSLETTER_BASE_URL) to the public https:// address of `newsletter serve`",
            found=base_url,
            publish='base_url = "https://news.example.com"',
        )
    ]
