"""DKIM: SendGrid's domain-authentication CNAMEs resolve to keys; for our own signing
([dkim]) the published key is the public half of the private key we sign with (compared, not
just present), of at least 1024 bits (2048 recommended)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from newsletter.doctor.findings import Finding, Level, finding
from newsletter.doctor.lookup import Dns
from newsletter.doctor.sending import Sending
from newsletter.doctor.spf import quoted

CHECK = "dkim"
SENDGRID_SELECTORS = ("s1", "s2")
MIN_BITS = 1024
RECOMMENDED_BITS = 2048


@dataclass(frozen=True, kw_only=True)
class OwnKey:
    """Our own signing ([dkim]): the selector, the d= domain and the private key in PEM
    (from the file or DKIM_PRIVATE_KEY), or why it could not be read."""

    selector: str
    domain: str
    pem: bytes | None
    problem: str = ""


def tags(record: str) -> dict[str, str]:
    """A DKIM key record's tag=value list (RFC 6376 section 3.2); whitespace is not part of
    a value (the base64 of p= may be folded)."""
    out: dict[str, str] = {}
    for part in record.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            out[name.strip().lower()] = "".join(value.split())
    return out


def check_sendgrid(dns: Dns, domain: str) -> list[Finding]:
    return [
        _sendgrid_selector(dns, f"{selector}._domainkey.{domain}", selector)
        for selector in SENDGRID_SELECTORS
    ]


def _sendgrid_selector(dns: Dns, name: str, selector: str) -> Finding:
    """One of SendGrid's CNAMEs: present, and leading to a key."""
    publish = (
        f"{name} CNAME {selector}.domainkey.uNNNNNNN.wl.sendgrid.net (the exact target is on "
        "SendGrid's Settings > Sender Authentication page for this domain)"
    )
    cname = dns.query(name, "CNAME")
    if not cname.found:
        return finding(
            CHECK,
            Level.ERROR,
            name,
            f"SendGrid's DKIM CNAME is missing: {cname.failure()}; without it SendGrid signs "
            "as sendgrid.net, which does not align with your From domain",
            publish=publish,
        )
    target = cname.records[0]
    key = dns.txt(name)
    if not key.found or not any("p" in tags(r) and tags(r)["p"] for r in key.records):
        why = key.failure() if not key.found else "no key (p=) there"
        return finding(
            CHECK,
            Level.ERROR,
            name,
            f"the CNAME points to {target}, which gives no DKIM key: {why}",
            f"CNAME {target}",
            publish,
        )
    return finding(
        CHECK,
        Level.OK,
        name,
        f"SendGrid's DKIM key is published (CNAME to {target})",
        f"CNAME {target}",
    )


def _strings(text: str, size: int = 250) -> str:
    """A TXT value as quoted strings of at most `size` characters (one string holds 255)."""
    return quoted(tuple(text[i : i + size] for i in range(0, len(text), size)))


def _public_record(private: object) -> tuple[str, str, int]:
    """(k=, p= in base64, bits) of the public half of our private key."""
    if isinstance(private, rsa.RSAPrivateKey):
        der = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return "rsa", base64.b64encode(der).decode(), private.key_size
    if isinstance(private, ed25519.Ed25519PrivateKey):
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return "ed25519", base64.b64encode(raw).decode(), 256
    raise ValueError("the private key is neither RSA nor Ed25519")


def _published_bits(kind: str, p: str) -> int | None:
    try:
        data = base64.b64decode(p, validate=True)
    except (binascii.Error, ValueError):
        return None
    if kind == "ed25519":
        return 256 if len(data) == 32 else None
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        return None
    return key.key_size if isinstance(key, rsa.RSAPublicKey) else None


def check_own(dns: Dns, own: OwnKey) -> list[Finding]:
    name = f"{own.selector}._domainkey.{own.domain}"

    def at(level: Level, message: str, found: str | None = None, publish: str | None = None):
        return finding(CHECK, level, name, message, found, publish)

    ours: tuple[str, str, int] | None = None
    problem = own.problem
    if own.pem is not None and not problem:
        try:
            private = serialization.load_pem_private_key(own.pem, password=None)
            ours = _public_record(private)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            problem = f"the DKIM private key cannot be read: {str(exc).splitlines()[0]}"
    publish = f"{name} TXT {_strings(f'v=DKIM1; k={ours[0]}; p={ours[1]}')}" if ours else None
    findings = []
    if problem:
        findings.append(at(Level.ERROR, problem))
    answer = dns.txt(name)
    if not answer.found:
        findings.append(
            at(Level.ERROR, f"no DKIM key published: {answer.failure()}", publish=publish)
        )
        return findings
    record, strings = answer.records[0], answer.strings[0]
    found = quoted(strings)
    values = tags(record)
    kind, p = values.get("k", "rsa").lower(), values.get("p", "")
    if not p:
        findings.append(at(Level.ERROR, "the key record has no p= (a revoked key)", found, publish))
        return findings
    bits = _published_bits(kind, p)
    if bits is None:
        findings.append(
            at(Level.ERROR, f"the published p= is not a valid {kind} key", found, publish)
        )
        return findings
    if ours is not None and (kind, p) != (ours[0], ours[1]):
        findings.append(
            at(
                Level.ERROR,
                "the published key is not the public half of the private key we sign with: "
                "every signature fails",
                found,
                publish,
            )
        )
    if kind == "rsa" and bits < MIN_BITS:
        findings.append(
            at(
                Level.ERROR,
                f"the published RSA key has {bits} bits; receivers ignore keys under "
                f"{MIN_BITS} bits (make a {RECOMMENDED_BITS}-bit key)",
                found,
                publish if ours and ours[2] >= MIN_BITS else None,
            )
        )
    elif kind == "rsa" and bits < RECOMMENDED_BITS:
        findings.append(
            at(
                Level.WARNING,
                f"the published RSA key has {bits} bits; {RECOMMENDED_BITS} is recommended",
                found,
            )
        )
    if not findings:
        findings.append(
            at(
                Level.OK,
                f"the published {kind} key ({bits} bits) matches the private key we sign with",
                found,
            )
        )
    return findings


def check_dkim(dns: Dns, domain: str, sending: Sending, own: OwnKey | None) -> list[Finding]:
    if own is not None:
        return check_own(dns, own)
    if sending.provider == "sendgrid":
        return check_sendgrid(dns, domain)
    level = Level.ERROR if sending.real else Level.WARNING
    return [
        finding(
            CHECK,
            level,
            domain,
            f"no DKIM signing is set up for {sending.label}: set [dkim] selector and its "
            "private key, or the provider's own DKIM records",
        )
    ]
