"""DMARC at `_dmarc.<domain>`, walking up to the organisational domain (the Public Suffix
List bundled with `publicsuffixlist`, never fetched): present, parses (checkdmarc), its policy
explained, reports (rua) asked for, and alignment possible with the signing domain."""

from __future__ import annotations

import functools
import re
import warnings
from typing import Any

from publicsuffixlist import PublicSuffixList

from newsletter.doctor.findings import Finding, Level
from newsletter.doctor.lookup import Dns, Outcome
from newsletter.doctor.spf import quoted

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import checkdmarc.dmarc as checkdmarc_dmarc

CHECK = "dmarc"
POLICIES = {
    "none": "monitoring only: receivers act as if there were no policy. Gmail and Yahoo "
    "accept it, but a large list should move to p=quarantine, then p=reject, once the reports "
    "(rua) show its mail passes",
    "quarantine": "mail that fails DMARC goes to spam",
    "reject": "mail that fails DMARC is refused",
}


@functools.cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # the snapshot bundled with the package


def organisational_domain(domain: str) -> str:
    return _psl().privatesuffix(domain.lower()) or domain.lower()


def aligned(signing: str, from_domain: str, strict: bool) -> bool:
    """DMARC identifier alignment (RFC 7489 section 3.1)."""
    if strict:
        return signing.lower() == from_domain.lower()
    return organisational_domain(signing) == organisational_domain(from_domain)


def _candidates(domain: str) -> list[str]:
    """The domain, then each parent down to the organisational domain."""
    org = organisational_domain(domain)
    labels = domain.lower().split(".")
    names = [".".join(labels[i:]) for i in range(len(labels))]
    return names[: names.index(org) + 1] if org in names else [domain]


def check_dmarc(dns: Dns, domain: str, dkim_domain: str | None) -> list[Finding]:
    publish = f'_dmarc.{domain} TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@{domain}"'
    where = ""
    record = ""
    strings: tuple[str, ...] = ()
    for name in _candidates(domain):
        answer = dns.txt(f"_dmarc.{name}")
        if answer.outcome not in (Outcome.FOUND, Outcome.NO_ANSWER, Outcome.NXDOMAIN):
            return [
                Finding(
                    check=CHECK,
                    level=Level.ERROR,
                    domain=f"_dmarc.{name}",
                    message=f"cannot read DMARC: {answer.failure()}",
                    publish=publish,
                )
            ]
        found = [
            (r, s)
            for r, s in zip(answer.records, answer.strings, strict=True)
            if r.lower().startswith("v=dmarc1")
        ]
        if len(found) > 1:
            return [
                Finding(
                    check=CHECK,
                    level=Level.ERROR,
                    domain=f"_dmarc.{name}",
                    message=f"{len(found)} DMARC records: receivers ignore them all",
                    found=", ".join(quoted(s) for _, s in found),
                    publish=publish,
                )
            ]
        if found:
            where, (record, strings) = name, found[0]
            break
    if not where:
        return [
            Finding(
                check=CHECK,
                level=Level.ERROR,
                domain=f"_dmarc.{domain}",
                message="no DMARC record (looked up to the organisational domain "
                f"{organisational_domain(domain)}): Gmail, Yahoo and Outlook require one of "
                "bulk senders",
                publish=publish,
            )
        ]
    quote = quoted(strings)
    name = f"_dmarc.{where}"
    try:
        result: Any = checkdmarc_dmarc.parse_dmarc_record(
            record, where, resolver=dns.resolver, timeout=dns.lifetime, retries=0
        )
    except checkdmarc_dmarc.DMARCError as exc:
        return [
            Finding(
                check=CHECK,
                level=Level.ERROR,
                domain=name,
                message=f"the DMARC record is not valid: {exc}",
                found=quote,
                publish=publish,
            )
        ]
    tags = result["tags"]
    inherited = where != domain
    policy = str(tags["sp"]["value"] if inherited else tags["p"]["value"])
    findings = []
    via = (
        f"found at the organisational domain ({name}); for {domain} its "
        f"{'sp' if tags['sp']['explicit'] else 'p'}= applies: "
        if inherited
        else ""
    )
    no_rua = "rua" not in tags or not tags["rua"].get("value")
    better = record.rstrip("; ")
    if policy == "none":
        better = re.sub(r"\b(s?p)=none\b", r"\1=quarantine", better)
    if no_rua:
        better += f"; rua=mailto:dmarc-reports@{where}"
    level = Level.WARNING if policy == "none" else Level.OK
    findings.append(
        Finding(
            check=CHECK,
            level=level,
            domain=name,
            message=f"{via}p={policy}: {POLICIES.get(policy, policy)}",
            found=quote,
            publish=f'{name} TXT "{better}"' if policy == "none" else None,
        )
    )
    if no_rua:
        findings.append(
            Finding(
                check=CHECK,
                level=Level.WARNING,
                domain=name,
                message="no rua= (aggregate reports): you will not learn who sends as your "
                "domain, or whether your own mail passes",
                found=quote,
                publish=f'{name} TXT "{better}"',
            )
        )
    for warning in result.get("warnings") or []:  # checkdmarc's own, but for p=none and rua (above)
        if not re.search(r"rua tag|p tag value of none", str(warning)):
            findings.append(
                Finding(
                    check=CHECK, level=Level.WARNING, domain=name, message=str(warning), found=quote
                )
            )
    if dkim_domain:
        strict = str(tags["adkim"]["value"]) == "s"
        if not aligned(dkim_domain, domain, strict):
            findings.append(
                Finding(
                    check=CHECK,
                    level=Level.ERROR,
                    domain=name,
                    message=f"DKIM signs as d={dkim_domain}, which is not aligned with the From "
                    f"domain {domain} ({'strict: adkim=s' if strict else 'relaxed'}): DMARC "
                    "fails unless SPF aligns",
                    found=quote,
                )
            )
    return findings
