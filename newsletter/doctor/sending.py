"""What the doctor expects of the configured provider: whether mail really leaves (a provider
whose endpoint is on this machine is a test server, its mail goes nowhere), which SPF term
authorises it, and which domain the envelope sender (where SPF is checked) has."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from newsletter.addresses import is_local_host

if TYPE_CHECKING:
    from newsletter.settings import Settings

# The SPF include each big provider documents, by the end of its SMTP host's name.
KNOWN_INCLUDES = {
    "sendgrid.net": "sendgrid.net",
    "amazonaws.com": "amazonses.com",
    "mailgun.org": "mailgun.org",
    "postmarkapp.com": "spf.mtasv.net",
    "brevo.com": "spf.brevo.com",
    "sendinblue.com": "spf.brevo.com",
}
SENDGRID_INCLUDE = "sendgrid.net"


@dataclass(frozen=True, kw_only=True)
class Sending:
    """The provider as the doctor sees it."""

    provider: str
    label: str  # "SendGrid", "SMTP host smtp.example.com", "the outbox"
    real: bool  # mail leaves this machine for real inboxes
    include: str = ""  # the SPF include that authorises it ("" when none is known)
    host: str = ""  # the SMTP host whose addresses SPF must cover
    # The envelope sender's (return path's) domain when it is not the From domain: SMTP's
    # VERP [smtp] bounce_address. SPF is checked there, and DMARC aligns it with the From.
    envelope_domain: str = ""


def sending_of(settings: Settings) -> Sending:
    if settings.provider == "sendgrid":
        host = urlsplit(settings.sendgrid.api_host).hostname or ""
        return Sending(
            provider="sendgrid",
            label="SendGrid",
            real=not is_local_host(host),
            include=SENDGRID_INCLUDE,
        )
    if settings.provider == "smtp":
        host = settings.smtp.host.lower()
        include = next((v for k, v in KNOWN_INCLUDES.items() if host.endswith(k)), "")
        bounces = settings.smtp.bounce_address
        return Sending(
            provider="smtp",
            label=f"SMTP host {host}",
            real=not is_local_host(host),
            include=include,
            host=host,
            envelope_domain=bounces.rpartition("@")[2].strip().lower() if bounces else "",
        )
    return Sending(provider=settings.provider, label="the outbox", real=False)
