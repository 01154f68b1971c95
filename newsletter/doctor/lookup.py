"""DNS look-ups with dnspython, each answer or failure a typed record the checks turn into
findings (a failure is never a traceback).

`NEWSLETTER_DNS_SERVER=host:port` sends every query to that server instead of the system's
resolvers: for split-horizon set-ups, and for the tests' own authoritative server. CNAMEs are
followed here as well as by the server, and so are referrals to a delegated zone's servers, so a
stub pointed at an authoritative server sees the same records (and the same dead delegations)
a recursive resolver would."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from newsletter.exceptions import ConfigError

SERVER_VARIABLE = "NEWSLETTER_DNS_SERVER"
# Seconds one query may take, retries included; a receiving server gives up sooner.
LIFETIME = 4.0
MAX_CNAMES = 8
# A zone delegated away: its name, and its servers with their glue addresses.
Delegation = tuple[str, list[tuple[str, tuple[str, ...]]]]


class Outcome(StrEnum):
    """How a look-up ended; SERVFAIL and timeout may be over in minutes (TEMPORARY)."""

    FOUND = "found"
    NXDOMAIN = "NXDOMAIN"
    NO_ANSWER = "no answer"
    SERVFAIL = "SERVFAIL"
    TIMEOUT = "timeout"
    CNAME_LOOP = "CNAME loop"
    FAILED = "failed"


TEMPORARY = (Outcome.SERVFAIL, Outcome.TIMEOUT)


@dataclass(frozen=True, kw_only=True)
class Answer:
    """What one look-up gave: the records as text (a TXT record's strings joined, as RFC 7208
    and RFC 6376 read them), each TXT record's strings as published, the CNAMEs on the way."""

    name: str
    rdtype: str
    outcome: Outcome
    records: tuple[str, ...] = ()
    strings: tuple[tuple[str, ...], ...] = ()
    cnames: tuple[str, ...] = ()
    detail: str = ""

    @property
    def found(self) -> bool:
        return self.outcome == Outcome.FOUND

    def failure(self) -> str:
        """The failure in words that say what it means for mail."""
        what = {
            Outcome.NXDOMAIN: f"NXDOMAIN: {self.name} does not exist",
            Outcome.NO_ANSWER: f"no {self.rdtype} record at {self.name}",
            Outcome.SERVFAIL: f"SERVFAIL: the DNS servers of {self.name} failed to answer "
            "(a broken zone or a dead delegation); receivers treat this as a temporary error",
            Outcome.TIMEOUT: f"timeout: no answer for {self.name} within {LIFETIME:g} s",
            Outcome.CNAME_LOOP: f"CNAME loop: {self.name} points back to itself through "
            + " -> ".join(self.cnames or (self.name,)),
            Outcome.FAILED: f"the look-up of {self.name} failed",
        }.get(self.outcome, "")
        return f"{what} ({self.detail})" if self.detail else what


def parse_server(value: str) -> tuple[str, int]:
    """`host:port` (an IP address; `[v6]:port` for IPv6; the port defaults to 53)."""
    text = value.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
        if not 0 < number < 65536:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"{SERVER_VARIABLE}={value!r}: expected an IP address and port, e.g. 127.0.0.1:5353"
        ) from None
    return host, number


class Dns:
    """One resolver for a doctor run. After a timeout the server is taken as unreachable and
    later look-ups fail at once as timeouts, so a dead server costs one wait, not twenty."""

    def __init__(self, server: str | None = None, lifetime: float = LIFETIME) -> None:
        self.server = server
        self.lifetime = lifetime
        self.unreachable = False
        self.setup_problem = ""
        self.dead: dict[str, str] = {}  # delegated zone -> why none of its servers answered
        self.troubled = False  # a look-up timed out or got SERVFAIL: worth asking again soon
        if server:
            host, port = parse_server(server)
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [host]
            self.resolver.port = port
        else:
            try:
                self.resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                self.resolver = dns.resolver.Resolver(configure=False)
                self.setup_problem = "this machine has no DNS resolver configured"
        self.resolver.lifetime = lifetime
        self.resolver.timeout = lifetime / 2

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Dns:
        return cls(env.get(SERVER_VARIABLE) or None)

    @property
    def where(self) -> str:
        return self.server or "the system's resolvers"

    def txt(self, name: str) -> Answer:
        return self.query(name, "TXT")

    def query(self, name: str, rdtype: str) -> Answer:
        answer = self._query(name.rstrip(".").lower(), rdtype)
        if answer.outcome in TEMPORARY:
            self.troubled = True
        return answer

    def _query(self, name: str, rdtype: str) -> Answer:
        if self.setup_problem:
            return Answer(
                name=name, rdtype=rdtype, outcome=Outcome.FAILED, detail=self.setup_problem
            )
        if self.unreachable:
            return Answer(
                name=name,
                rdtype=rdtype,
                outcome=Outcome.TIMEOUT,
                detail=f"{self.where} did not answer an earlier query",
            )
        chain: list[str] = []
        target = name
        while True:
            answer = self._one(target, rdtype, name, tuple(chain))
            if isinstance(answer, Answer):
                return answer
            records, strings, canonical = answer
            if records or canonical == target:
                return Answer(
                    name=name,
                    rdtype=rdtype,
                    outcome=Outcome.FOUND if records else Outcome.NO_ANSWER,
                    records=records,
                    strings=strings,
                    cnames=tuple(chain),
                )
            # The server gave the CNAME but not what it points to (another server's zone).
            chain.append(canonical)
            if canonical == name or canonical in chain[:-1] or len(chain) > MAX_CNAMES:
                return Answer(
                    name=name, rdtype=rdtype, outcome=Outcome.CNAME_LOOP, cnames=tuple(chain)
                )
            target = canonical

    def _one(
        self, target: str, rdtype: str, name: str, chain: tuple[str, ...]
    ) -> Answer | tuple[tuple[str, ...], tuple[tuple[str, ...], ...], str]:
        def failed(outcome: Outcome, detail: str = "") -> Answer:
            return Answer(name=name, rdtype=rdtype, outcome=outcome, cnames=chain, detail=detail)

        try:
            got = self.resolver.resolve(target, rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return failed(Outcome.NXDOMAIN, f"via {target}" if target != name else "")
        except dns.resolver.NoNameservers as exc:
            text = str(exc)
            if "CNAME chain is too long" in text:
                return failed(Outcome.CNAME_LOOP)
            if "SERVFAIL" in text:
                return failed(Outcome.SERVFAIL)
            return failed(Outcome.FAILED, text)
        except dns.resolver.LifetimeTimeout:
            self.unreachable = True
            return failed(Outcome.TIMEOUT, f"asked {self.where}")
        except dns.resolver.YXDOMAIN:
            return failed(Outcome.FAILED, "the name is too long")
        except dns.exception.DNSException as exc:
            return failed(Outcome.FAILED, str(exc) or type(exc).__name__)
        if got.rrset is None and (delegation := _referral(got.response, target)) is not None:
            followed = self._follow(delegation, target, rdtype)
            if isinstance(followed, str):
                return failed(Outcome.SERVFAIL, followed)
            if followed.rcode() == dns.rcode.NXDOMAIN:
                return failed(Outcome.NXDOMAIN, f"via {target}" if target != name else "")
            try:
                got = dns.resolver.Answer(
                    dns.name.from_text(target),
                    dns.rdatatype.from_text(rdtype),
                    dns.rdataclass.IN,
                    followed,
                )
            except dns.exception.DNSException as exc:
                return failed(Outcome.FAILED, str(exc) or type(exc).__name__)
        canonical = got.canonical_name.to_text().rstrip(".").lower()
        if got.rrset is None:
            return (), (), canonical
        records: list[str] = []
        strings: list[tuple[str, ...]] = []
        for rdata in got.rrset:
            if rdtype == "TXT":
                parts = tuple(s.decode("utf-8", "replace") for s in rdata.strings)
                strings.append(parts)
                records.append("".join(parts))
            else:
                records.append(rdata.to_text().rstrip("."))
        return tuple(records), tuple(strings), canonical

    def _follow(
        self, delegation: Delegation, target: str, rdtype: str
    ) -> dns.message.QueryMessage | str:
        """Ask the servers a zone is delegated to, as a recursive resolver would (the server
        asked is authoritative only). Their answer, or why there is none: a dead delegation,
        which a receiver's resolver reports as SERVFAIL. Told once per zone."""
        zone, servers = delegation
        if zone in self.dead:
            return self.dead[zone]
        query = dns.message.make_query(target, rdtype)
        tried: list[str] = []
        for host, addresses in servers:
            if not addresses:  # no glue: the server's name is looked up first
                addresses = self.query(host, "A").records
            for address in addresses:
                tried.append(f"{host} ({address})")
                try:
                    reply = dns.query.udp(query, address, timeout=self.lifetime / 2)
                except (dns.exception.DNSException, OSError, ValueError):
                    continue
                if (
                    isinstance(reply, dns.message.QueryMessage)
                    and reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
                    and reply.flags & dns.flags.AA
                ):
                    return reply
        why = (
            f"dead delegation: {zone} is delegated to "
            + (", ".join(tried) or ", ".join(host for host, _ in servers))
            + ", which did not answer for it"
        )
        self.dead[zone] = why
        return why


def _referral(response: dns.message.Message, target: str) -> Delegation | None:
    """A referral (no answer, not authoritative, NS records for a zone holding the name):
    the zone and its servers with their glue addresses, or None."""
    if response.flags & dns.flags.AA or response.answer:
        return None
    name = dns.name.from_text(target)
    for rrset in response.authority:
        if rrset.rdtype != dns.rdatatype.NS or not name.is_subdomain(rrset.name):
            continue
        servers = []
        for ns in rrset:
            host = ns.target
            glue = tuple(
                rdata.address
                for extra in response.additional
                if extra.name == host and extra.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
                for rdata in extra
            )
            servers.append((host.to_text().rstrip("."), glue))
        return rrset.name.to_text().rstrip(".").lower(), servers
    return None
