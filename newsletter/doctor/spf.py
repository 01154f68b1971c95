"""SPF of the From domain: one record, it parses (checkdmarc), at most 10 DNS look-ups, not
`+all`, and it authorises the provider (its include, or the SMTP host's addresses)."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import warnings
from typing import Any

from newsletter.doctor.findings import Finding, Level
from newsletter.doctor.findings import finding as make
from newsletter.doctor.lookup import Dns, Outcome
from newsletter.doctor.sending import Sending

with warnings.catch_warnings():  # dnspython's DNSSEC module, loaded by checkdmarc, warns on DSA
    warnings.simplefilter("ignore")
    import checkdmarc.spf as checkdmarc_spf

CHECK = "spf"
LOOKUP_LIMIT = 10  # RFC 7208 section 4.6.4
_SPF = re.compile(r"^v=spf1(\s|$)", re.IGNORECASE)


def is_spf(record: str) -> bool:
    return bool(_SPF.match(record.strip()))


def quoted(strings: tuple[str, ...]) -> str:
    """A TXT record as published: each of its strings in double quotes."""
    return " ".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in strings)


def suggested(record: str | None, include: str, extra: str = "") -> str:
    """The record to publish: the existing one with `+all` made `-all` and the provider's
    include (or `extra` terms) added before its `all`, or a new one."""
    if not record:
        return f'"v=spf1 include:{include} -all"' if include else '"v=spf1 <your provider> -all"'
    terms = ["-all" if t.lower() in ("+all", "all") else t for t in record.split()]
    wanted = [extra] if extra else [f"include:{include}"] if include else []
    for term in wanted:
        if term.lower() not in (t.lower() for t in terms):
            at = next(
                (i for i, t in enumerate(terms) if t.lower().lstrip("+-~?") == "all"), len(terms)
            )
            terms.insert(max(at, 1), term)
    return '"' + " ".join(terms) + '"'


def check_spf(dns: Dns, domain: str, sending: Sending) -> list[Finding]:
    def finding(level: Level, message: str, found: str | None = None, publish: str | None = None):
        return make(CHECK, level, domain, message, found, publish)

    answer = dns.txt(domain)
    new = suggested(None, sending.include)
    if answer.outcome not in (Outcome.FOUND, Outcome.NO_ANSWER):
        return [finding(Level.ERROR, f"cannot read SPF: {answer.failure()}")]
    spf = [(r, s) for r, s in zip(answer.records, answer.strings, strict=True) if is_spf(r)]
    if not spf:
        return [
            finding(
                Level.ERROR,
                f"no SPF record at {domain}: receivers cannot tell who may send for it",
                publish=f"{domain} TXT {new}",
            )
        ]
    if len(spf) > 1:
        found = ", ".join(quoted(s) for _, s in spf)
        return [
            finding(
                Level.ERROR,
                f"{len(spf)} SPF records at {domain}: SPF fails (permerror) when there is more "
                "than one; merge them into one",
                found=found,
                publish=f"{domain} TXT {suggested(spf[0][0], sending.include)}",
            )
        ]
    record, strings = spf[0]
    found = quoted(strings)
    split = (
        f' (published as {len(strings)} strings, read joined without spaces as "{record}")'
        if len(strings) > 1
        else ""
    )
    try:
        result: Any = checkdmarc_spf.parse_spf_record(
            record,
            domain,
            resolver=dns.resolver,
            ignore_too_many_lookups=True,
            timeout=dns.lifetime,
            retries=0,
        )
    except checkdmarc_spf.SPFError as exc:
        return [
            finding(
                Level.ERROR,
                f"the SPF record is not valid (receivers fail it: permerror): {exc}{split}",
                found=found,
                publish=f"{domain} TXT {suggested(None, sending.include)}",
            )
        ]
    findings: list[Finding] = []
    lookups = int(result.get("dns_lookups", 0))
    if lookups > LOOKUP_LIMIT:
        findings.append(
            finding(
                Level.ERROR,
                f"the SPF record needs {lookups} DNS look-ups; receivers stop at "
                f"{LOOKUP_LIMIT} and fail SPF (permerror): drop includes you no longer use, "
                "or replace them with ip4:/ip6: ranges",
                found=found,
            )
        )
    parsed = result.get("parsed") or {}
    everything = str(parsed.get("all") or "")
    if everything == "pass":
        findings.append(
            finding(
                Level.ERROR,
                "the SPF record ends in +all: it lets anyone on the internet send as "
                f"{domain}; receivers treat that as no SPF at all",
                found=found,
                publish=f"{domain} TXT {suggested(record, sending.include)}",
            )
        )
    if sending.real or sending.include or sending.host:
        findings += _authorises(dns, domain, record, found, parsed, sending, finding)
    for warning in result.get("warnings") or []:  # checkdmarc's own (a void include, ptr, ...)
        findings.append(finding(Level.WARNING, str(warning), found=found))
    if split:  # a record split over strings is read joined: say how, where it went wrong
        findings = [dataclasses.replace(f, message=f.message + split) for f in findings]
    if not findings:
        findings.append(
            finding(
                Level.OK,
                f"one SPF record, {lookups} of {LOOKUP_LIMIT} DNS look-ups{split}",
                found=found,
            )
        )
    return findings


def _includes(parsed: dict) -> list[str]:
    found: list[str] = []
    for mech in parsed.get("mechanisms") or []:
        if mech.get("action") == "pass" and mech.get("mechanism") == "include":
            found.append(str(mech.get("value", "")).lower())
            found += _includes(mech.get("parsed") or {})
    redirect = parsed.get("redirect")
    if isinstance(redirect, dict):
        found += _includes(redirect.get("parsed") or {})
    return found


def _networks(parsed: dict, dns: Dns) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The addresses a record lets pass: ip4/ip6 ranges, a/mx hosts' addresses (checkdmarc
    gives an mx term's host names only: their addresses are looked up here), includes."""
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for mech in parsed.get("mechanisms") or []:
        if mech.get("action") != "pass":
            continue
        kind = mech.get("mechanism")
        if kind in ("ip4", "ip6"):
            nets.append(ipaddress.ip_network(str(mech["value"]), strict=False))
        elif kind == "a":
            nets += [ipaddress.ip_network(a) for a in mech.get("addresses") or []]
        elif kind == "mx":
            for host in mech.get("hosts") or []:
                for rdtype in ("A", "AAAA"):
                    found = dns.query(str(host.get("hostname", "")), rdtype).records
                    nets += [ipaddress.ip_network(a) for a in found]
        elif kind == "include":
            nets += _networks(mech.get("parsed") or {}, dns)
    redirect = parsed.get("redirect")
    if isinstance(redirect, dict):
        nets += _networks(redirect.get("parsed") or {}, dns)
    return nets


def _authorises(dns, domain, record, found, parsed, sending: Sending, finding) -> list[Finding]:
    includes = _includes(parsed)
    if sending.include and sending.include in includes:
        return []
    # A provider with a documented include (SendGrid, SES, Mailgun, ...) sends from its own
    # ranges, not from its SMTP endpoint's addresses: the include is what SPF must name.
    if sending.host and not sending.include:
        addresses = [
            ipaddress.ip_address(a)
            for kind in ("A", "AAAA")
            for a in dns.query(sending.host, kind).records
        ]
        networks = _networks(parsed, dns)
        missing = [a for a in addresses if not any(a in n for n in networks)]
        if addresses and not missing:
            return []
        if not addresses:
            return [
                finding(
                    Level.ERROR,
                    f"{sending.label} has no address in DNS, so SPF cannot authorise it",
                    found=found,
                )
            ]
        terms = " ".join(f"ip{a.version}:{a}" for a in missing)
        publish = suggested(record, "", terms)
        return [
            finding(
                Level.ERROR,
                f"the SPF record does not authorise {sending.label} "
                f"({', '.join(map(str, missing))}): receivers see its mail as forged",
                found=found,
                publish=f"{domain} TXT {publish}",
            )
        ]
    if not sending.include:
        return []
    return [
        finding(
            Level.ERROR,
            f"the SPF record does not authorise {sending.label} (include:{sending.include} is "
            "missing): receivers see its mail as forged",
            found=found,
            publish=f"{domain} TXT {suggested(record, sending.include)}",
        )
    ]


def soften_for_sendgrid_return_path(findings: list[Finding], authenticated: bool) -> list[Finding]:
    """With SendGrid's domain authentication in place (its DKIM CNAMEs resolve), the envelope
    sender is its `em1234.<domain>` subdomain, CNAMEd to SendGrid, which carries SPF of its own
    and aligns with the From domain: the From domain's missing include is then a warning."""
    if not authenticated:
        return findings
    note = (
        "; SendGrid's domain authentication is in place, so its return path (the em1234 "
        "CNAME on SendGrid's Sender Authentication page) can carry SPF instead: make sure it "
        "is published"
    )
    return [
        dataclasses.replace(f, level=Level.WARNING, message=f.message + note)
        if f.check == CHECK
        and f.level == Level.ERROR
        and "does not authorise SendGrid" in f.message
        else f
        for f in findings
    ]
