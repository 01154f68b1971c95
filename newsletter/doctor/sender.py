"""The From domain itself: not a free-mail domain (their DMARC p=reject makes mail sent as
them through another provider undeliverable), and it has MX or A records (replies and bounces
need somewhere to go)."""

from __future__ import annotations

from newsletter.doctor.findings import Finding, Level
from newsletter.doctor.lookup import Dns, Outcome

CHECK = "from"
FREE_MAIL = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "ymail.com",
        "rocketmail.com", "outlook.com", "hotmail.com", "hotmail.fr", "live.com", "msn.com",
        "aol.com", "icloud.com", "me.com", "mac.com", "gmx.com", "gmx.de", "gmx.net", "web.de",
        "mail.com", "proton.me", "protonmail.com", "yandex.ru", "yandex.com", "zoho.com",
        "laposte.net", "orange.fr", "free.fr",
    }
)  # fmt: skip


def check_from(dns: Dns, domain: str, from_email: str) -> list[Finding]:
    if domain in FREE_MAIL:
        return [
            Finding(
                check=CHECK,
                level=Level.ERROR,
                domain=domain,
                message=f"the From address {from_email} is on a free-mail domain: {domain}'s "
                "DMARC policy tells receivers to refuse its mail when it comes from anyone "
                "else's servers; send from a domain you own",
            )
        ]
    mx = dns.query(domain, "MX")
    if mx.found:
        return [
            Finding(
                check=CHECK,
                level=Level.OK,
                domain=domain,
                message=f"{domain} receives mail (MX)",
                found="MX " + ", ".join(mx.records),
            )
        ]
    if mx.outcome in (Outcome.NXDOMAIN, Outcome.SERVFAIL, Outcome.TIMEOUT, Outcome.CNAME_LOOP):
        return [
            Finding(
                check=CHECK,
                level=Level.ERROR,
                domain=domain,
                message=f"the From domain cannot be resolved: {mx.failure()}; receivers refuse "
                "mail from a domain that does not resolve",
            )
        ]
    for kind in ("A", "AAAA"):
        address = dns.query(domain, kind)
        if address.found:
            return [
                Finding(
                    check=CHECK,
                    level=Level.WARNING,
                    domain=domain,
                    message=f"{domain} has no MX, only an address ({kind}): replies go to that "
                    "host; publish an MX for the mailbox that reads them",
                    found=f"{kind} " + ", ".join(address.records),
                    publish=f"{domain} MX 10 <your mail host>",
                )
            ]
    return [
        Finding(
            check=CHECK,
            level=Level.ERROR,
            domain=domain,
            message=f"{domain} has neither MX nor A records: replies and bounces have nowhere "
            "to go, and many receivers refuse such a sender",
            publish=f"{domain} MX 10 <your mail host>",
        )
    ]
