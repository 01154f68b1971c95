"""DMARC at `_dmarc.<domain>`, walking up to the organisational domain (the Public Suffix
List bundled with `publicsuffixlist`, never fetched): present, parses (checkdmarc), its policy
explained, reports (rua) asked for, and alignment possible with the signing domain."""

from __future__ import annotations

import dataclasses
import functools
import re
import warnings
from typing import Any

from publicsuffixlist import PublicSuffixList

from newsletter.doctor.findings import Finding, Level, finding
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


def _finding(
    level: Level, name: str, message: str, found: str | None = None, publish: str | None = None
) -> Finding:
    return finding(CHECK, level, name, message, found, publish)


def _lookup(dns: Dns, domain: str) -> tuple[str, str, tuple[str, ...]] | Finding | None:
    """The DMARC record that applies to `domain`: (where it is, the record, its strings),
    walking up to the organisational domain; a finding when a look-up fails or a name has
    more than one; None when there is none."""
    for name in _candidates(domain):
        answer = dns.txt(f"_dmarc.{name}")
        if answer.outcome not in (Outcome.FOUND, Outcome.NO_ANSWER, Outcome.NXDOMAIN):
            return _finding(Level.ERROR, f"_dmarc.{name}", f"cannot read DMARC: {answer.failure()}")
        found = [
            (r, s)
            for r, s in zip(answer.records, answer.strings, strict=True)
            if r.lower().startswith("v=dmarc1")
        ]
        if len(found) > 1:
            return _finding(
                Level.ERROR,
                f"_dmarc.{name}",
                f"{len(found)} DMARC records: receivers ignore them all",
                found=", ".join(quoted(s) for _, s in found),
            )
        if found:
            return name, found[0][0], found[0][1]
    return None


def check_dmarc(
    dns: Dns, domain: str, dkim_domain: str | None, spf_domain: str | None = None
) -> list[Finding]:
    """`dkim_domain`: the d= we (or SendGrid) sign with, None when nobody signs for us;
    `spf_domain`: the envelope sender's domain when it is not the From domain."""
    publish = f'_dmarc.{domain} TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@{domain}"'
    looked = _lookup(dns, domain)
    if isinstance(looked, Finding):
        return [dataclasses.replace(looked, publish=publish)]
    if looked is None:
        return [
            _finding(
                Level.ERROR,
                f"_dmarc.{domain}",
                "no DMARC record (looked up to the organisational domain "
                f"{organisational_domain(domain)}): Gmail, Yahoo and Outlook require one of "
                "bulk senders",
                publish=publish,
            )
        ]
    where, record, strings = looked
    quote = quoted(strings)
    name = f"_dmarc.{where}"
    try:
        result: Any = checkdmarc_dmarc.parse_dmarc_record(
            record, where, resolver=dns.resolver, timeout=dns.lifetime, retries=0
        )
    except checkdmarc_dmarc.DMARCError as exc:
        return [
            _finding(Level.ERROR, name, f"the DMARC record is not valid: {exc}", quote, publish)
        ]
    tags = result["tags"]
    inherited = where != domain
    policy = str(tags["sp"]["value"] if inherited else tags["p"]["value"])
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
    findings = [
        _finding(
            Level.WARNING if policy == "none" else Level.OK,
            name,
            f"{via}p={policy}: {POLICIES.get(policy, policy)}",
            quote,
            f'{name} TXT "{better}"' if policy == "none" else None,
        )
    ]
    if no_rua:
        findings.append(
            _finding(
                Level.WARNING,
                name,
                "no rua= (aggregate reports): you will not learn who sends as your "
                "domain, or whether your own mail passes",
                quote,
                f'{name} TXT "{better}"',
            )
        )
    for warning in result.get("warnings") or []:  # checkdmarc's own, but for p=none and rua (above)
        if not re.search(r"rua tag|p tag value of none", str(warning)):
            findings.append(_finding(Level.WARNING, name, str(warning), quote))
    return findings + _alignment(tags, name, quote, domain, dkim_domain, spf_domain)


def _alignment(
    tags: Any,
    name: str,
    quote: str,
    domain: str,
    dkim_domain: str | None,
    spf_domain: str | None,
) -> list[Finding]:
    """DMARC passes when SPF or DKIM passes for a domain aligned with the From domain."""
    findings = []
    dkim_strict = str(tags["adkim"]["value"]) == "s"
    dkim_aligned = dkim_domain is not None and aligned(dkim_domain, domain, dkim_strict)
    if dkim_domain and not dkim_aligned:
        findings.append(
            _finding(
                Level.ERROR,
                name,
                f"DKIM signs as d={dkim_domain}, which is not aligned with the From "
                f"domain {domain} ({'strict: adkim=s' if dkim_strict else 'relaxed'}): DMARC "
                "fails unless SPF aligns",
                quote,
            )
        )
    if spf_domain:
        spf_strict = str(tags["aspf"]["value"]) == "s"
        if not aligned(spf_domain, domain, spf_strict):
            rests = "DMARC rests on DKIM alone" if dkim_aligned else "DMARC fails"
            findings.append(
                _finding(
                    Level.WARNING if dkim_aligned else Level.ERROR,
                    name,
                    f"the envelope sender's domain {spf_domain} (where SPF is checked) is not "
                    f"aligned with the From domain {domain} "
                    f"({'strict: aspf=s' if spf_strict else 'relaxed'}): {rests}",
                    quote,
                )
            )
    return findings
