"""`newsletter doctor` against a real authoritative DNS server (nsd, zone files written here,
on 127.0.0.1 at a free port; no mock resolver): a domain that passes everything, one domain
per failure the doctor names, DNS failures as findings (NXDOMAIN, SERVFAIL, a CNAME loop, a
timeout), the volume rules with the stored complaint rate, the command's exit code and JSON
through the real CLI, the daily gate before `run`, and the workspace page over real HTTP."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.doctor import Level, Report, diagnose
from newsletter.doctor.gate import before_run, last_report
from newsletter.doctor.lookup import Dns, Outcome
from newsletter.records import SubscriberStatus, utcnow
from newsletter.settings import load_settings, settings_from_dict
from newsletter.store import Store
from tests.conftest import run_cli
from tests.dns_server import DnsServer, SilentServer, nsd_or_skip

BASE_URL = "https://news.example.org"
SPF_OK = '@ TXT "v=spf1 include:sendgrid.net -all"'
CNAMES = [
    "s1._domainkey CNAME s1.domainkey.u1.wl.sendgrid.net.",
    "s2._domainkey CNAME s2.domainkey.u1.wl.sendgrid.net.",
]
MX = ["@ MX 10 mail", "mail A 192.0.2.7"]


def _key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _small_key_pem() -> bytes:
    """A 512-bit RSA key (cryptography refuses to make one; openssl still does)."""
    return subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:512"],
        capture_output=True,
        check=True,
    ).stdout


def _pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _p(key) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _dkim_txt(name: str, p: str) -> str:
    """A key record split into strings of at most 200 characters, as a 2048-bit key must be."""
    text = f"v=DKIM1; k=rsa; p={p}"
    parts = " ".join(f'"{text[i : i + 200]}"' for i in range(0, len(text), 200))
    return f"{name} TXT {parts}"


def healthy(
    origin: str,
    *,
    spf: list[str] | None = None,
    dmarc: str | None = "v=DMARC1; p=reject; rua=mailto:dmarc@{origin}",
    mx: bool = True,
    cnames: bool = True,
    extra: tuple[str, ...] = (),
) -> list[str]:
    records = list(spf if spf is not None else [SPF_OK])
    if dmarc:
        records.append(f'_dmarc TXT "{dmarc.format(origin=origin)}"')
    if mx:
        records += MX
    if cnames:
        records += CNAMES
    return records + list(extra)


OURS = _key()
OTHER = _key()
MEDIUM_PEM: list[bytes] = []  # the 1024-bit key the fixture publishes
SMALL_PEM = None  # made in the fixture (needs openssl)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, bytes]:
    small = _small_key_pem()
    folder = tmp_path_factory.mktemp("keys")
    (folder / "ours.pem").write_bytes(_pem(OURS))
    (folder / "small.pem").write_bytes(small)
    return {"ours": _pem(OURS), "small": small, "folder": str(folder).encode()}


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory, keys):
    nsd_or_skip()
    server = DnsServer(tmp_path_factory.mktemp("nsd"))
    sendgrid_key = _p(_key())
    server.zone(
        "sendgrid.net",
        [
            '@ TXT "v=spf1 ip4:167.89.0.0/17 ip4:208.117.48.0/20 -all"',
            _dkim_txt("s1.domainkey.u1.wl", sendgrid_key),
            _dkim_txt("s2.domainkey.u1.wl", sendgrid_key),
        ],
    )
    # Passes everything; its SPF is published as two strings (read joined).
    server.zone(
        "good.zonetest",
        healthy("good.zonetest", spf=['@ TXT "v=spf1 include:sendgrid.net " "-all"']),
    )
    server.zone("nospf.zonetest", healthy("nospf.zonetest", spf=[]))
    server.zone(
        "twospf.zonetest",
        healthy("twospf.zonetest", spf=[SPF_OK, '@ TXT "v=spf1 ip4:192.0.2.1 -all"']),
    )
    server.zone(
        "plusall.zonetest",
        healthy("plusall.zonetest", spf=['@ TXT "v=spf1 include:sendgrid.net +all"']),
    )
    first = " ".join(f"include:i{n}.lookups.zonetest" for n in range(1, 7))
    rest = " ".join(f"include:i{n}.lookups.zonetest" for n in range(7, 12))
    server.zone(
        "lookups.zonetest",
        healthy(
            "lookups.zonetest",
            # Over 255 characters: published as two strings, as it must be.
            spf=[f'@ TXT "v=spf1 include:sendgrid.net {first} " "{rest} -all"'],
            extra=tuple(f'i{n} TXT "v=spf1 ip4:192.0.2.{n} -all"' for n in range(1, 12)),
        ),
    )
    server.zone(
        "noauth.zonetest",
        healthy("noauth.zonetest", spf=['@ TXT "v=spf1 ip4:192.0.2.0/24 -all"'], cnames=False),
    )
    server.zone(
        "noauthsg.zonetest",
        healthy("noauthsg.zonetest", spf=['@ TXT "v=spf1 ip4:192.0.2.0/24 -all"']),
    )
    # The strings joined without a space: "include:sendgrid.net-all".
    server.zone(
        "splitbad.zonetest",
        healthy("splitbad.zonetest", spf=['@ TXT "v=spf1 include:sendgrid.net" "-all"']),
    )
    server.zone("nodmarc.zonetest", healthy("nodmarc.zonetest", dmarc=None))
    server.zone(
        "pnone.zonetest",
        healthy("pnone.zonetest", dmarc="v=DMARC1; p=none; rua=mailto:dmarc@{origin}"),
    )
    server.zone("norua.zonetest", healthy("norua.zonetest", dmarc="v=DMARC1; p=reject"))
    server.zone("nonenorua.zonetest", healthy("nonenorua.zonetest", dmarc="v=DMARC1; p=none"))
    server.zone(
        "orgonly.zonetest",
        [
            '_dmarc TXT "v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@orgonly.zonetest"',
            "@ MX 10 mail",
            "mail A 192.0.2.7",
            'news TXT "v=spf1 include:sendgrid.net -all"',
            "news MX 10 mail.orgonly.zonetest.",
            "s1._domainkey.news CNAME s1.domainkey.u1.wl.sendgrid.net.",
            "s2._domainkey.news CNAME s2.domainkey.u1.wl.sendgrid.net.",
        ],
    )
    server.zone("nomx.zonetest", healthy("nomx.zonetest", mx=False))
    server.zone("nocname.zonetest", healthy("nocname.zonetest", cnames=False))
    small_key = serialization.load_pem_private_key(keys["small"], None)
    server.zone(
        "ownkey.zonetest", healthy("ownkey.zonetest", extra=(_dkim_txt("nl._domainkey", _p(OURS)),))
    )
    server.zone(
        "wrongkey.zonetest",
        healthy("wrongkey.zonetest", extra=(_dkim_txt("nl._domainkey", _p(OTHER)),)),
    )
    server.zone(
        "smallkey.zonetest",
        healthy("smallkey.zonetest", extra=(_dkim_txt("nl._domainkey", _p(small_key)),)),
    )
    server.zone("signer.zonetest", [_dkim_txt("nl._domainkey", _p(OURS))])
    server.zone(
        "smtp.zonetest",
        healthy(
            "smtp.zonetest",
            spf=['@ TXT "v=spf1 a:relay.smtp.zonetest -all"'],
            extra=("relay A 192.0.2.25", "other A 192.0.2.26"),
        ),
    )
    server.zone("smtpmx.zonetest", healthy("smtpmx.zonetest", spf=['@ TXT "v=spf1 mx -all"']))
    server.zone(
        "voidinc.zonetest",
        healthy(
            "voidinc.zonetest",
            spf=['@ TXT "v=spf1 include:sendgrid.net include:gone.voidinc.zonetest -all"'],
        ),
    )
    server.zone(
        "ptr.zonetest",
        healthy(
            "ptr.zonetest",
            spf=['@ TXT "v=spf1 include:sendgrid.net ptr -all"'],
            extra=("@ A 192.0.2.9",),
        ),
    )
    # SMTP with VERP: SPF at the bounce address's domain only, our own DKIM key.
    server.zone(
        "verp.zonetest",
        healthy(
            "verp.zonetest",
            spf=[],
            cnames=False,
            extra=(
                _dkim_txt("nl._domainkey", _p(OURS)),
                'bounces TXT "v=spf1 a:relay.verp.zonetest -all"',
                "relay A 192.0.2.25",
                "bare A 192.0.2.30",
            ),
        ),
    )
    server.zone(
        "strict.zonetest",
        healthy("strict.zonetest", dmarc="v=DMARC1; p=reject; aspf=s; rua=mailto:d@{origin}"),
    )
    medium_key = _key(1024)
    MEDIUM_PEM.append(_pem(medium_key))
    server.zone(
        "mediumkey.zonetest",
        healthy("mediumkey.zonetest", extra=(_dkim_txt("nl._domainkey", _p(medium_key)),)),
    )
    server.zone("baddmarc.zonetest", healthy("baddmarc.zonetest", dmarc="v=DMARC1; p=bogus"))
    server.zone(
        "twodmarc.zonetest",
        healthy(
            "twodmarc.zonetest",
            extra=('_dmarc TXT "v=DMARC1; p=none; rua=mailto:other@twodmarc.zonetest"',),
        ),
    )
    # Amazon SES through SMTP: SPF names SES's include, never its endpoint's addresses.
    server.zone("amazonses.com", ['@ TXT "v=spf1 ip4:199.255.192.0/22 -all"'])
    server.zone(
        "ses.zonetest", healthy("ses.zonetest", spf=['@ TXT "v=spf1 include:amazonses.com -all"'])
    )
    server.zone("nosesinc.zonetest", healthy("nosesinc.zonetest", spf=['@ TXT "v=spf1 mx -all"']))
    server.zone("loop.zonetest", ["a CNAME b", "b CNAME a"])
    # news.dead.zonetest is delegated to a server that does not exist (nothing listens there).
    server.zone("dead.zonetest", ["news NS ns1.news", "ns1.news A 127.0.0.2", *MX])
    server.broken_zone("broken.zonetest")
    with server:
        yield server


def _settings(tmp_path: Path, from_email: str, provider: str = "sendgrid", **tables):
    newsletter = {
        "from_email": from_email,
        "provider": provider,
        "base_url": BASE_URL,
        "database_url": f"sqlite:///{tmp_path}/newsletter.db",
    }
    newsletter.update(tables.pop("newsletter", {}))
    return settings_from_dict({"newsletter": newsletter, **tables}, tmp_path)


def _doctor(tmp_path, server, from_email, *, env=None, **kwargs) -> Report:
    settings = _settings(tmp_path, from_email, **kwargs)
    store = Store(settings.database_url)
    try:
        return diagnose(
            settings, store, env={"NEWSLETTER_DNS_SERVER": server.address, **(env or {})}
        )
    finally:
        store.close()


def _at(report: Report, check: str, level: Level) -> list[str]:
    return [f.message for f in report.findings if f.check == check and f.level == level]


def _one(report: Report, check: str, level: Level, pattern: str):
    found = [
        f
        for f in report.findings
        if f.check == check and f.level == level and re.search(pattern, f.message)
    ]
    assert found, f"no {level} {check} finding matching {pattern!r}: {report.findings}"
    return found[0]


# -- the healthy domain ---------------------------------------------------------------------
def test_a_domain_that_passes_everything(tmp_path, dns_server):
    report = _doctor(tmp_path, dns_server, "news@good.zonetest")
    assert not report.errors and not report.warnings, report.findings
    spf = _one(report, "spf", Level.OK, "one SPF record, 1 of 10")
    assert "published as 2 strings" in spf.message
    assert spf.found == '"v=spf1 include:sendgrid.net " "-all"'
    assert {f.domain for f in report.findings if f.check == "dkim"} == {
        "s1._domainkey.good.zonetest",
        "s2._domainkey.good.zonetest",
    }
    _one(report, "dmarc", Level.OK, "p=reject")
    _one(report, "from", Level.OK, "receives mail")
    _one(report, "unsubscribe", Level.OK, "https")
    assert report.list_size == 0 and report.complaint_rate == 0.0
    assert all(row.met == "yes" for row in report.volume)


# -- SPF ------------------------------------------------------------------------------------
def test_no_spf_names_the_record_to_publish(tmp_path, dns_server):
    f = _one(
        _doctor(tmp_path, dns_server, "news@nospf.zonetest"), "spf", Level.ERROR, "no SPF record"
    )
    assert f.domain == "nospf.zonetest" and f.found is None
    assert f.publish == 'nospf.zonetest TXT "v=spf1 include:sendgrid.net -all"'


def test_two_spf_records_are_an_error_quoting_both(tmp_path, dns_server):
    f = _one(
        _doctor(tmp_path, dns_server, "news@twospf.zonetest"), "spf", Level.ERROR, "2 SPF records"
    )
    assert '"v=spf1 include:sendgrid.net -all"' in f.found
    assert '"v=spf1 ip4:192.0.2.1 -all"' in f.found


def test_plus_all_is_an_error(tmp_path, dns_server):
    f = _one(_doctor(tmp_path, dns_server, "news@plusall.zonetest"), "spf", Level.ERROR, r"\+all")
    assert f.found == '"v=spf1 include:sendgrid.net +all"'
    assert f.publish == 'plusall.zonetest TXT "v=spf1 include:sendgrid.net -all"'


def test_more_than_ten_lookups_is_an_error(tmp_path, dns_server):
    f = _one(_doctor(tmp_path, dns_server, "news@lookups.zonetest"), "spf", Level.ERROR, "look-ups")
    assert "needs 12 DNS look-ups" in f.message


def test_spf_that_does_not_authorise_the_provider(tmp_path, dns_server):
    f = _one(
        _doctor(tmp_path, dns_server, "news@noauth.zonetest"),
        "spf",
        Level.ERROR,
        "does not authorise",
    )
    assert "include:sendgrid.net is missing" in f.message
    assert f.publish == 'noauth.zonetest TXT "v=spf1 ip4:192.0.2.0/24 include:sendgrid.net -all"'


def test_with_sendgrid_domain_authentication_a_missing_include_is_a_warning(tmp_path, dns_server):
    """SendGrid's return path (em1234.<domain>) carries SPF when its CNAMEs are published."""
    f = _one(
        _doctor(tmp_path, dns_server, "news@noauthsg.zonetest"),
        "spf",
        Level.WARNING,
        "does not authorise SendGrid",
    )
    assert "return path" in f.message


def test_spf_authorises_an_smtp_host_by_its_addresses(tmp_path, dns_server):
    """The SMTP provider (issue 20) is not here yet: its host is passed as `Sending`."""
    from newsletter.doctor.sending import Sending
    from newsletter.doctor.spf import check_spf

    dns = Dns(dns_server.address)
    ok = Sending(
        provider="smtp",
        label="SMTP host relay.smtp.zonetest",
        real=True,
        host="relay.smtp.zonetest",
    )
    assert [f.level for f in check_spf(dns, "smtp.zonetest", ok)] == [Level.OK]
    by_mx = Sending(
        provider="smtp",
        label="SMTP host mail.smtpmx.zonetest",
        real=True,
        host="mail.smtpmx.zonetest",
    )
    assert [f.level for f in check_spf(dns, "smtpmx.zonetest", by_mx)] == [Level.OK]
    other = Sending(
        provider="smtp",
        label="SMTP host other.smtp.zonetest",
        real=True,
        host="other.smtp.zonetest",
    )
    (refused,) = check_spf(dns, "smtp.zonetest", other)
    assert refused.level == Level.ERROR and "192.0.2.26" in refused.message
    assert refused.publish == 'smtp.zonetest TXT "v=spf1 a:relay.smtp.zonetest ip4:192.0.2.26 -all"'


def test_an_smtp_relay_with_a_documented_include_is_held_to_that_include(dns_server):
    """Amazon SES sends from its own ranges: SPF must name include:amazonses.com, and the
    endpoint's own addresses are not what is asked for."""
    from newsletter.doctor.sending import KNOWN_INCLUDES, Sending
    from newsletter.doctor.spf import check_spf

    host = "email-smtp.eu-west-1.amazonaws.com"
    ses = Sending(
        provider="smtp",
        label=f"SMTP host {host}",
        real=True,
        include=KNOWN_INCLUDES["amazonaws.com"],
        host=host,
    )
    dns = Dns(dns_server.address)
    assert [f.level for f in check_spf(dns, "ses.zonetest", ses)] == [Level.OK]
    (missing,) = check_spf(dns, "nosesinc.zonetest", ses)
    assert missing.level == Level.ERROR and "include:amazonses.com is missing" in missing.message
    assert missing.publish == 'nosesinc.zonetest TXT "v=spf1 mx include:amazonses.com -all"'


def test_a_txt_split_without_a_space_is_read_joined_and_named(tmp_path, dns_server):
    report = _doctor(tmp_path, dns_server, "news@splitbad.zonetest")
    f = _one(report, "spf", Level.ERROR, "not valid")
    assert 'read joined without spaces as "v=spf1 include:sendgrid.net-all"' in f.message
    assert f.found == '"v=spf1 include:sendgrid.net" "-all"'


def test_an_include_of_a_name_that_does_not_exist_is_an_error(tmp_path, dns_server):
    report = _doctor(tmp_path, dns_server, "news@voidinc.zonetest")
    f = _one(report, "spf", Level.ERROR, "not valid.*gone.voidinc.zonetest")
    assert f.found == '"v=spf1 include:sendgrid.net include:gone.voidinc.zonetest -all"'


def test_checkdmarcs_own_warnings_are_findings(tmp_path, dns_server):
    report = _doctor(tmp_path, dns_server, "news@ptr.zonetest")
    _one(report, "spf", Level.WARNING, "ptr mechanism should not be used")
    assert not report.errors, report.errors


# -- DMARC ----------------------------------------------------------------------------------
def test_no_dmarc(tmp_path, dns_server):
    f = _one(
        _doctor(tmp_path, dns_server, "news@nodmarc.zonetest"), "dmarc", Level.ERROR, "no DMARC"
    )
    assert f.domain == "_dmarc.nodmarc.zonetest"
    assert f.publish.startswith('_dmarc.nodmarc.zonetest TXT "v=DMARC1; p=quarantine; rua=mailto:')


def test_p_none_is_a_warning_with_a_stricter_record(tmp_path, dns_server):
    report = _doctor(tmp_path, dns_server, "news@pnone.zonetest")
    f = _one(report, "dmarc", Level.WARNING, "p=none: monitoring only")
    assert f.found == '"v=DMARC1; p=none; rua=mailto:dmarc@pnone.zonetest"'
    assert (
        f.publish
        == '_dmarc.pnone.zonetest TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@pnone.zonetest"'
    )
    assert not report.errors


def test_p_none_without_rua_gets_one_record_with_both_fixed(tmp_path, dns_server):
    report = _doctor(tmp_path, dns_server, "news@nonenorua.zonetest")
    better = '_dmarc.nonenorua.zonetest TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@nonenorua.zonetest"'
    assert _one(report, "dmarc", Level.WARNING, "p=none").publish == better
    assert _one(report, "dmarc", Level.WARNING, "no rua=").publish == better


def test_no_rua_is_a_warning(tmp_path, dns_server):
    f = _one(
        _doctor(tmp_path, dns_server, "news@norua.zonetest"), "dmarc", Level.WARNING, "no rua="
    )
    assert (
        f.publish
        == '_dmarc.norua.zonetest TXT "v=DMARC1; p=reject; rua=mailto:dmarc-reports@norua.zonetest"'
    )


def test_a_dmarc_record_that_does_not_parse_and_two_records(tmp_path, dns_server):
    bad = _one(
        _doctor(tmp_path, dns_server, "news@baddmarc.zonetest"), "dmarc", Level.ERROR, "not valid"
    )
    assert bad.found == '"v=DMARC1; p=bogus"' and bad.publish.startswith("_dmarc.baddmarc")
    two = _one(
        _doctor(tmp_path, dns_server, "news@twodmarc.zonetest"),
        "dmarc",
        Level.ERROR,
        "2 DMARC records: receivers ignore them all",
    )
    assert "p=reject" in two.found and "p=none" in two.found


def test_the_organisational_domain_comes_from_the_bundled_public_suffix_list():
    """No network here: publicsuffixlist's own snapshot knows the multi-label suffixes."""
    from newsletter.doctor.dmarc import organisational_domain

    assert organisational_domain("news.example.co.uk") == "example.co.uk"
    assert organisational_domain("a.b.example.com.au") == "example.com.au"
    assert organisational_domain("mail.news.orgonly.zonetest") == "orgonly.zonetest"


def test_dmarc_only_at_the_organisational_domain_is_found_by_walking_up(tmp_path, dns_server):
    report = _doctor(tmp_path, dns_server, "editor@news.orgonly.zonetest")
    f = _one(report, "dmarc", Level.OK, "organisational domain")
    assert f.domain == "_dmarc.orgonly.zonetest"
    assert "sp=" in f.message and "p=quarantine" in f.message
    assert not report.errors, report.errors


def test_dkim_not_aligned_with_the_from_domain(tmp_path, dns_server, keys):
    report = _doctor(
        tmp_path,
        dns_server,
        "news@good.zonetest",
        dkim={"selector": "nl", "domain": "signer.zonetest"},
        env={"DKIM_PRIVATE_KEY": keys["ours"].decode()},
    )
    _one(report, "dkim", Level.OK, "matches the private key")
    _one(report, "dmarc", Level.ERROR, "d=signer.zonetest, which is not aligned")


# -- the From domain ------------------------------------------------------------------------
def test_a_free_mail_from_address_is_an_error(tmp_path, dns_server):
    report = _doctor(tmp_path, dns_server, "someone@gmail.com")
    _one(report, "from", Level.ERROR, "free-mail domain")


def test_no_mx_and_no_a(tmp_path, dns_server):
    _one(
        _doctor(tmp_path, dns_server, "news@nomx.zonetest"), "from", Level.ERROR, "neither MX nor A"
    )


# -- DKIM -----------------------------------------------------------------------------------
def test_sendgrid_cnames_missing(tmp_path, dns_server):
    report = _doctor(tmp_path, dns_server, "news@nocname.zonetest")
    missing = [f for f in report.findings if f.check == "dkim" and f.level == Level.ERROR]
    assert [f.domain for f in missing] == [
        "s1._domainkey.nocname.zonetest",
        "s2._domainkey.nocname.zonetest",
    ]
    assert missing[0].publish.startswith("s1._domainkey.nocname.zonetest CNAME s1.domainkey.u")


def test_our_dkim_key_matches_the_published_one(tmp_path, dns_server, keys):
    folder = Path(keys["folder"].decode())
    report = _doctor(
        tmp_path,
        dns_server,
        "news@ownkey.zonetest",
        dkim={"selector": "nl", "private_key_file": str(folder / "ours.pem")},
    )
    f = _one(report, "dkim", Level.OK, "2048 bits.*matches the private key")
    assert f.domain == "nl._domainkey.ownkey.zonetest"
    assert not report.errors


def test_a_published_key_that_is_not_ours(tmp_path, dns_server, keys):
    report = _doctor(
        tmp_path,
        dns_server,
        "news@wrongkey.zonetest",
        dkim={"selector": "nl"},
        env={"DKIM_PRIVATE_KEY": keys["ours"].decode()},
    )
    f = _one(report, "dkim", Level.ERROR, "not the public half")
    assert f.found.startswith('"v=DKIM1; k=rsa; p=' + _p(OTHER)[:100])
    assert f.publish.startswith('nl._domainkey.wrongkey.zonetest TXT "v=DKIM1; k=rsa; p=')
    strings = re.findall(r'"([^"]*)"', f.publish)
    assert all(len(part) <= 255 for part in strings) and len(strings) > 1
    assert "".join(strings) == f"v=DKIM1; k=rsa; p={_p(OURS)}"
    assert keys["ours"].decode() not in repr(report)  # the private key is never in a report


def test_a_key_under_1024_bits(tmp_path, dns_server, keys):
    report = _doctor(
        tmp_path,
        dns_server,
        "news@smallkey.zonetest",
        dkim={"selector": "nl"},
        env={"DKIM_PRIVATE_KEY": keys["small"].decode()},
    )
    _one(report, "dkim", Level.ERROR, "512 bits; receivers ignore keys under 1024")
    assert not _at(report, "dkim", Level.OK)


def test_a_1024_bit_key_is_a_warning_recommending_2048(tmp_path, dns_server):
    report = _doctor(
        tmp_path,
        dns_server,
        "news@mediumkey.zonetest",
        dkim={"selector": "nl"},
        env={"DKIM_PRIVATE_KEY": MEDIUM_PEM[0].decode()},
    )
    _one(report, "dkim", Level.WARNING, "1024 bits; 2048 is recommended")
    assert not [f for f in report.errors if f.check == "dkim"], report.errors


# -- DNS failures are findings --------------------------------------------------------------
def test_nxdomain(tmp_path, dns_server):
    report = _doctor(tmp_path, dns_server, "news@missing.good.zonetest")
    _one(report, "from", Level.ERROR, "NXDOMAIN: missing.good.zonetest does not exist")


def test_servfail(tmp_path, dns_server):
    report = _doctor(tmp_path, dns_server, "news@broken.zonetest")
    _one(report, "from", Level.ERROR, "SERVFAIL")
    _one(report, "spf", Level.ERROR, "cannot read SPF: SERVFAIL")


def test_cname_loop(tmp_path, dns_server):
    report = _doctor(tmp_path, dns_server, "news@a.loop.zonetest")
    _one(report, "from", Level.ERROR, "CNAME loop")
    assert Dns(dns_server.address).txt("a.loop.zonetest").outcome == Outcome.CNAME_LOOP


def test_a_dead_delegation_is_named_once_and_the_rest_still_answers(tmp_path, dns_server):
    """nsd answers with a referral; the doctor asks the delegated server, as a recursive
    resolver would, and names the dead delegation instead of "no record"."""
    report = _doctor(tmp_path, dns_server, "news@news.dead.zonetest")
    detail = "dead delegation: news.dead.zonetest is delegated to ns1.news.dead.zonetest"
    for check, text in (("from", "SERVFAIL"), ("spf", "cannot read SPF: SERVFAIL")):
        assert detail in _one(report, check, Level.ERROR, text).message
    _one(report, "dmarc", Level.ERROR, "cannot read DMARC: SERVFAIL.*dead delegation")
    dns = Dns(dns_server.address)
    assert dns.txt("news.dead.zonetest").outcome == Outcome.SERVFAIL
    assert list(dns.dead) == ["news.dead.zonetest"]
    assert dns.query("mail.dead.zonetest", "A").records == ("192.0.2.7",)  # the parent answers


def test_timeout(tmp_path):
    silent = SilentServer()
    try:
        settings = _settings(tmp_path, "news@good.zonetest")
        store = Store(settings.database_url)
        report = diagnose(settings, store, env={"NEWSLETTER_DNS_SERVER": silent.address})
        store.close()
    finally:
        silent.close()
    _one(report, "from", Level.ERROR, "timeout: no answer for good.zonetest")
    _one(report, "spf", Level.ERROR, "timeout")


# -- base_url -------------------------------------------------------------------------------
def test_a_loopback_http_base_url_is_an_error_for_a_real_provider_and_a_warning_for_the_outbox(
    tmp_path, dns_server
):
    local = {"newsletter": {"base_url": "http://127.0.0.1:8000"}}
    real = _doctor(tmp_path, dns_server, "news@good.zonetest", **local)
    f = _one(
        real, "unsubscribe", Level.ERROR, "not https.*127.0.0.1, which subscribers cannot reach"
    )
    assert f.found == "http://127.0.0.1:8000"
    outbox = _doctor(tmp_path, dns_server, "news@good.zonetest", provider="outbox", **local)
    _one(outbox, "unsubscribe", Level.WARNING, "not https")
    private = _doctor(
        tmp_path, dns_server, "news@good.zonetest", newsletter={"base_url": "https://10.1.2.3"}
    )
    _one(private, "unsubscribe", Level.ERROR, "10.1.2.3, which subscribers cannot reach")


# -- volume rules ---------------------------------------------------------------------------
def test_volume_rules_with_the_list_size_and_the_stored_complaint_rate(tmp_path, dns_server):
    folder = tmp_path / "nl"
    assert run_cli(["init", str(folder), "--sample"], cwd=tmp_path).returncode == 0
    sent = run_cli(["run"], cwd=folder)
    assert sent.returncode == 0, sent.stderr
    settings = load_settings(folder / "newsletter.toml", env={})
    store = Store(settings.database_url)
    try:
        delivered = store.deliveries.sent_since(utcnow() - timedelta(days=1))
        assert delivered > 0
        first = next(store.subscribers.each(SubscriberStatus.ACTIVE))
        assert store.subscribers.suppress(first.email, SubscriberStatus.COMPLAINED)
        active = store.subscribers.count(SubscriberStatus.ACTIVE)
        settings = _settings(
            folder, "news@good.zonetest", newsletter={"database_url": settings.database_url}
        )
        report = diagnose(settings, store, env={"NEWSLETTER_DNS_SERVER": dns_server.address})
    finally:
        store.close()
    assert report.list_size == active
    assert report.complaint_rate == pytest.approx(1 / delivered)
    f = _one(report, "volume", Level.ERROR, "complaint rate")
    assert f"1 complaints over {delivered} delivered" in f.message
    rule = next(r for r in report.volume if r.rule.startswith("spam complaint rate"))
    assert rule.met == "no"


def test_at_5000_subscribers_the_bulk_rules_apply_and_an_unmet_one_is_an_error(
    tmp_path, dns_server
):
    """nocname.zonetest has SPF but not SendGrid's DKIM: fine under 5,000 ("SPF or DKIM"),
    an error from 5,000 on ("both SPF and DKIM")."""
    from newsletter.doctor.volume import BULK

    settings = _settings(tmp_path, "news@nocname.zonetest")
    store = Store(settings.database_url)
    env = {"NEWSLETTER_DNS_SERVER": dns_server.address}
    try:
        rows = ({"email": f"r{i:05d}@example.com", "token": f"t{i}"} for i in range(BULK - 1))
        store.subscribers.add(rows)
        small = diagnose(settings, store, env=env)
        f = _one(small, "volume", Level.OK, f"{BULK - 1:,} active subscribers")
        assert "every rule that applies is met" in f.message
        store.subscribers.add([{"email": "last@example.com", "token": "t-last"}])
        big = diagnose(settings, store, env=env)
    finally:
        store.close()
    f = _one(big, "volume", Level.ERROR, f"{BULK:,} active subscribers")
    assert "bulk-sender threshold" in f.message and "both SPF and DKIM pass" in f.message
    rule = next(r for r in big.volume if r.rule == "both SPF and DKIM pass")
    assert rule.met == "no"


# -- the command ----------------------------------------------------------------------------
def _folder(tmp_path: Path, from_email: str, provider: str = "sendgrid", base_url: str = BASE_URL):
    folder = tmp_path / "nl"
    tmp_path.mkdir(parents=True, exist_ok=True)
    assert run_cli(["init", str(folder)], cwd=tmp_path).returncode == 0
    path = folder / "newsletter.toml"
    text = path.read_text(encoding="utf-8")
    text = text.replace('from_email = "editor@example.com"', f'from_email = "{from_email}"')
    text = text.replace('provider = "outbox"', f'provider = "{provider}"')
    text = text.replace('base_url = "http://127.0.0.1:8000"', f'base_url = "{base_url}"')
    path.write_text(text, encoding="utf-8")
    return folder


def test_the_command_passes_fails_and_speaks_json(tmp_path, dns_server):
    env = {"NEWSLETTER_DNS_SERVER": dns_server.address}
    good = _folder(tmp_path / "a", "news@good.zonetest")
    out = run_cli(["doctor"], cwd=good, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 error(s), 0 warning(s)" in out.stdout and "bulk-sender rules" in out.stdout
    bad = _folder(tmp_path / "b", "news@nospf.zonetest")
    out = run_cli(["doctor"], cwd=bad, env=env)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "error   spf nospf.zonetest: no SPF record at nospf.zonetest" in out.stdout
    assert 'publish: nospf.zonetest TXT "v=spf1 include:sendgrid.net -all"' in out.stdout
    out = run_cli(["doctor", "--json"], cwd=bad, env=env)
    assert out.returncode == 1
    data = json.loads(out.stdout)
    assert data["domain"] == "nospf.zonetest"
    spf = [f for f in data["findings"] if f["check"] == "spf"]
    assert spf[0]["level"] == "error" and spf[0]["found"] is None
    assert Report.from_json(out.stdout).has_errors


DNS_FAILURES = {
    "missing.good.zonetest": ("from", "NXDOMAIN: missing.good.zonetest does not exist"),
    "broken.zonetest": ("spf", "cannot read SPF: SERVFAIL"),
    "news.dead.zonetest": ("spf", "dead delegation: news.dead.zonetest is delegated"),
    "a.loop.zonetest": ("from", "CNAME loop: a.loop.zonetest points back to itself"),
    "splitbad.zonetest": ("spf", 'read joined without spaces as "v=spf1 include:sendgrid.net-all"'),
    "twospf.zonetest": ("spf", "2 SPF records at twospf.zonetest"),
}


def test_each_dns_failure_is_a_named_finding_through_the_command(tmp_path, dns_server):
    """The real command against nsd: exit 1, the failure named, JSON that parses, and never a
    traceback (the timeout is the next test's)."""
    folder = _folder(tmp_path, "news@good.zonetest")
    path = folder / "newsletter.toml"
    text = path.read_text(encoding="utf-8")
    for domain, (check, words) in DNS_FAILURES.items():
        path.write_text(text.replace("news@good.zonetest", f"news@{domain}"), encoding="utf-8")
        out = run_cli(
            ["doctor", "--json"], cwd=folder, env={"NEWSLETTER_DNS_SERVER": dns_server.address}
        )
        assert out.returncode == 1 and "Traceback" not in out.stderr, (domain, out.stderr)
        report = Report.from_json(out.stdout)
        assert report.domain == domain
        assert any(
            f.check == check and f.level == Level.ERROR and words in f.message
            for f in report.findings
        ), (domain, report.findings)


def test_the_command_names_a_timeout_and_a_bad_server_setting(tmp_path):
    folder = _folder(tmp_path, "news@good.zonetest")
    silent = SilentServer()
    try:
        out = run_cli(["doctor"], cwd=folder, env={"NEWSLETTER_DNS_SERVER": silent.address})
    finally:
        silent.close()
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "timeout: no answer for good.zonetest" in out.stdout
    out = run_cli(["doctor"], cwd=folder, env={"NEWSLETTER_DNS_SERVER": "nameserver"})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "NEWSLETTER_DNS_SERVER='nameserver': expected an IP address and port" in out.stderr


# -- the gate before `run` ------------------------------------------------------------------
SENDGRID_KEY = {"SENDGRID_API_KEY": "SG.not-a-real-key"}


def test_run_through_a_real_provider_refuses_on_errors_once_a_day_unless_forced(
    tmp_path, dns_server
):
    """The queue is empty: nothing would be posted even if the gate let it through."""
    folder = _folder(tmp_path, "news@nospf.zonetest")
    env = {"NEWSLETTER_DNS_SERVER": dns_server.address, **SENDGRID_KEY}
    out = run_cli(["run"], cwd=folder, env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "error: spf nospf.zonetest: no SPF record at nospf.zonetest" in out.stderr
    assert "not sending" in out.stderr and "nothing to send" not in out.stdout
    # Within the day the cached report decides: a dead DNS server changes nothing.
    silent = SilentServer()
    try:
        again = run_cli(["run"], cwd=folder, env={**env, "NEWSLETTER_DNS_SERVER": silent.address})
    finally:
        silent.close()
    assert again.returncode == 1 and "cached" in again.stderr
    assert "no SPF record" in again.stderr and "timeout" not in again.stderr
    # `newsletter doctor` checks again at once and its report replaces the cached one.
    silent = SilentServer()
    try:
        doctor = run_cli(
            ["doctor"], cwd=folder, env={**env, "NEWSLETTER_DNS_SERVER": silent.address}
        )
        after = run_cli(["run"], cwd=folder, env=env)
    finally:
        silent.close()
    assert doctor.returncode == 1 and "timeout" in doctor.stdout
    assert after.returncode == 1 and "timeout" in after.stderr and "cached" in after.stderr
    forced = run_cli(["run", "--force"], cwd=folder, env=env)
    assert forced.returncode == 0, forced.stderr
    assert "sending anyway (--force)" in forced.stderr
    assert "nothing to send" in forced.stdout


def test_run_through_a_real_provider_passes_a_healthy_domain_and_caches_the_report(
    tmp_path, dns_server
):
    folder = _folder(tmp_path, "news@good.zonetest")
    env = {"NEWSLETTER_DNS_SERVER": dns_server.address, **SENDGRID_KEY}
    out = run_cli(["run"], cwd=folder, env=env)
    assert out.returncode == 0, out.stderr
    assert "error" not in out.stderr and "nothing to send" in out.stdout
    settings = load_settings(folder / "newsletter.toml", env={})
    store = Store(settings.database_url)
    try:
        report = last_report(store)
        assert report is not None and report.domain == "good.zonetest" and not report.has_errors
        assert utcnow() - report.checked_at < timedelta(minutes=5)
    finally:
        store.close()


def test_the_daily_report_is_checked_again_after_a_day(tmp_path, dns_server):
    settings = _settings(tmp_path, "news@nospf.zonetest")
    store = Store(settings.database_url)
    env = {"NEWSLETTER_DNS_SERVER": dns_server.address}
    try:
        now = utcnow()
        first = before_run(settings, store, force=False, now=now, env=env)
        assert first.refuse and not first.cached
        soon = before_run(settings, store, force=False, now=now + timedelta(hours=23), env=env)
        assert soon.cached and soon.report.checked_at == now
        later = before_run(settings, store, force=False, now=now + timedelta(hours=25), env=env)
        assert not later.cached and later.report.checked_at == now + timedelta(hours=25)
        assert later.refuse
    finally:
        store.close()


def test_a_report_with_a_dns_timeout_is_checked_again_within_minutes(tmp_path, dns_server):
    """A timeout or SERVFAIL passes: the gate must not refuse for a whole day on one."""
    settings = _settings(tmp_path, "news@good.zonetest")
    store = Store(settings.database_url)
    silent = SilentServer()
    try:
        now = utcnow()
        dead = {"NEWSLETTER_DNS_SERVER": silent.address}
        first = before_run(settings, store, force=False, now=now, env=dead)
        assert first.refuse and first.report.dns_trouble
        assert Report.from_json(first.report.to_json()).dns_trouble
        live = {"NEWSLETTER_DNS_SERVER": dns_server.address}
        soon = before_run(settings, store, force=False, now=now + timedelta(minutes=5), env=live)
        assert soon.cached and soon.refuse
        later = before_run(settings, store, force=False, now=now + timedelta(minutes=20), env=live)
        assert not later.cached and not later.refuse and not later.report.dns_trouble
    finally:
        silent.close()
        store.close()


def test_run_through_the_outbox_only_warns(tmp_path):
    folder = tmp_path / "nl"
    assert run_cli(["init", str(folder), "--sample"], cwd=tmp_path).returncode == 0
    out = run_cli(["run"], cwd=folder)
    assert out.returncode == 0, out.stderr
    assert "warning: unsubscribe: base_url is not https://" in out.stderr
    assert "issue 1:" in out.stdout


def test_the_local_sendgrid_server_is_not_a_real_provider(tmp_path):
    from newsletter.doctor.sending import sending_of

    settings = _settings(tmp_path, "news@good.zonetest")
    assert sending_of(settings).real
    local = settings_from_dict(
        {"newsletter": {"provider": "sendgrid"}, "sendgrid": {"api_host": "http://127.0.0.1:8025"}},
        tmp_path,
    )
    assert not sending_of(local).real


# -- the workspace --------------------------------------------------------------------------
def test_the_deliverability_page_shows_the_last_report_and_checks_again(
    tmp_path, dns_server, monkeypatch
):
    from newsletter.editors import add_editor
    from tests.test_admin_http import PASSWORD, Browser, csrf_of
    from tests.test_web import serve_folder

    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    monkeypatch.setenv("NEWSLETTER_DNS_SERVER", dns_server.address)
    folder = _folder(tmp_path, "news@pnone.zonetest")
    with serve_folder(folder) as web:
        add_editor(web.store, "ed@example.com", PASSWORD)
        browser = Browser(web)
        assert browser.sign_in().status == 303
        page = browser.get("/admin/deliverability")
        assert page.status == 200 and "Not checked yet" in page.text
        assert 'href="/admin/deliverability" aria-current="page">Deliverability' in page.text
        done = browser.post("/admin/deliverability/check", {"csrf_token": csrf_of(page)})
        assert done.status == 303
        page = browser.get("/admin/deliverability")
        assert "Checked pnone.zonetest: " in page.text
        assert "p=none: monitoring only" in page.text
        assert "_dmarc.pnone.zonetest TXT &#34;v=DMARC1; p=quarantine" in page.text or (
            "_dmarc.pnone.zonetest TXT &quot;v=DMARC1; p=quarantine" in page.text
        )
        assert 'id="rules"' in page.text
        refused = browser.post("/admin/deliverability/check", {})
        assert refused.status == 403


def test_the_dns_server_setting_takes_an_address_and_a_port():
    from newsletter.doctor.lookup import parse_server
    from newsletter.exceptions import ConfigError

    assert parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_server("[::1]:5353") == ("::1", 5353)
    assert parse_server("192.0.2.53") == ("192.0.2.53", 53)
    for bad in ("ns.example.com:53", "127.0.0.1:0", "127.0.0.1:port"):
        with pytest.raises(ConfigError, match="NEWSLETTER_DNS_SERVER"):
            parse_server(bad)


# -- the gate before the scheduler and the workers ------------------------------------------
def _unattended_folder(tmp_path: Path, server, from_email: str):
    """A folder of 3 readers and a queued article whose tick was 5 minutes ago, sending
    through SendGrid as the doctor sees it (api.sendgrid.com), and the same settings with the
    local SendGrid server's address, whose provider really posts the mail (nothing leaves
    this machine)."""
    from newsletter.providers import make_provider
    from tests.faults import KEY, make_folder

    make_folder(tmp_path, server.url, subscribers=3, tick_ago=timedelta(minutes=5))
    config = tmp_path / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace('from_email = "editor@example.com"', f'from_email = "{from_email}"')
    text = text.replace('provider = "outbox"', 'provider = "sendgrid"')
    text = text.replace('base_url = "http://127.0.0.1:8000"', f'base_url = "{BASE_URL}"')
    config.write_text(text, encoding="utf-8")
    real = load_settings(config, env={"SENDGRID_API_KEY": KEY})
    local = load_settings(config, env={"SENDGRID_API_KEY": KEY, "SENDGRID_API_HOST": server.url})
    return real, make_provider(local)


@pytest.fixture
def sendgrid(monkeypatch):
    """The local SendGrid server; its key in the environment, where providers read it."""
    from newsletter.testing.sendgrid_server import SendGridServer
    from tests.faults import KEY

    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    with SendGridServer(api_key=KEY) as server:
        yield server


def test_the_scheduler_and_workers_stop_on_errors_pause_the_issue_and_alert_the_editors(
    tmp_path, dns_server, sendgrid, monkeypatch
):
    import dataclasses
    import threading

    from newsletter import publish
    from newsletter.delivery import SendContext, run_worker
    from newsletter.doctor.gate import PAUSE_REASON, REFUSED_KEY
    from newsletter.editors import add_editor
    from newsletter.records import IssueStatus
    from newsletter.scheduler import SchedulerRunner

    monkeypatch.setenv("NEWSLETTER_DNS_SERVER", dns_server.address)
    settings, provider = _unattended_folder(tmp_path, sendgrid, "news@nospf.zonetest")
    store = Store(settings.database_url)
    try:
        add_editor(store, "ed@example.com", "a long enough passphrase 1")
        # An issue already in progress (planned, nothing sent yet), as a crash leaves one.
        picked, _ = publish.pick(store, settings, utcnow())
        in_progress = publish.build_issue(store, settings, picked)
        said: list[str] = []
        runner = SchedulerRunner(store, settings, said.append)
        runner.ctx = dataclasses.replace(runner.ctx, provider=provider)
        assert runner.ctx.provider is provider
        runner.wake("cadence")  # must not raise
        issue = store.issues.get_issue(in_progress)
        assert issue.status == IssueStatus.PAUSED
        assert issue.last_error.startswith(PAUSE_REASON)
        assert "spf nospf.zonetest: no SPF record at nospf.zonetest" in issue.last_error
        assert store.deliveries.counts(in_progress)["pending"] == 3
        assert [i.id for i in store.issues.list_issues()] == [in_progress]  # no new issue
        assert any("error: spf nospf.zonetest: no SPF record" in line for line in said)
        assert any("not sending; the editors are told" in line for line in said)
        # Nothing reached a reader; the editor got both alerts.
        assert {m.to for m in sendgrid.messages} == {"ed@example.com"}
        subjects = sorted(m.subject for m in sendgrid.messages)
        assert any(
            "Not sending: 1 deliverability error(s) for nospf.zonetest" in s for s in subjects
        )
        assert any(f"Issue {in_progress} paused: deliverability errors" in s for s in subjects)
        assert store.meta.get(REFUSED_KEY)
        # The next heartbeat: the cached report decides, nothing said or sent again.
        said.clear()
        before = len(sendgrid.messages)
        runner.wake("heartbeat")
        assert said == [] and len(sendgrid.messages) == before
        # A worker beside it finds nothing to claim: the issue is paused.
        ctx = SendContext.of(store, settings, provider)
        report = run_worker(ctx, stop=threading.Event(), once=True, echo=said.append)
        assert report.batches == 0 and len(sendgrid.messages) == before
    finally:
        store.close()


def test_a_worker_alone_pauses_the_issue_in_progress_on_errors(tmp_path, dns_server, sendgrid):
    """What `newsletter worker` calls before it claims anything (doctor.gate.unattended)."""
    import threading

    from newsletter import publish
    from newsletter.delivery import SendContext, run_worker
    from newsletter.doctor.gate import PAUSE_REASON, unattended
    from newsletter.records import IssueStatus

    settings, provider = _unattended_folder(tmp_path, sendgrid, "news@twospf.zonetest")
    store = Store(settings.database_url)
    try:
        picked, _ = publish.pick(store, settings, utcnow())
        issue_id = publish.build_issue(store, settings, picked)
        gate = unattended(
            settings, store, now=utcnow(), env={"NEWSLETTER_DNS_SERVER": dns_server.address}
        )
        assert gate.refuse
        issue = store.issues.get_issue(issue_id)
        assert issue.status == IssueStatus.PAUSED and issue.last_error.startswith(PAUSE_REASON)
        assert "2 SPF records" in issue.last_error
        ctx = SendContext.of(store, settings, provider)
        report = run_worker(ctx, stop=threading.Event(), once=True, echo=lambda _: None)
        assert report.batches == 0 and sendgrid.messages == []
    finally:
        store.close()


def test_a_fresh_cached_ok_lets_the_scheduler_send_without_asking_dns(
    tmp_path, dns_server, sendgrid, monkeypatch
):
    import dataclasses

    from newsletter.doctor.gate import REFUSED_KEY, unattended
    from newsletter.scheduler import SchedulerRunner

    settings, provider = _unattended_folder(tmp_path, sendgrid, "news@good.zonetest")
    store = Store(settings.database_url)
    silent = SilentServer()
    try:
        env = {"NEWSLETTER_DNS_SERVER": dns_server.address}
        first = unattended(settings, store, now=utcnow() - timedelta(hours=2), env=env)
        assert not first.refuse and not first.report.has_errors
        store.meta.set(REFUSED_KEY, "left by an earlier refusal")
        # DNS is now dead: a look-up would time out and refuse; the cached report decides.
        monkeypatch.setenv("NEWSLETTER_DNS_SERVER", silent.address)
        said: list[str] = []
        runner = SchedulerRunner(store, settings, said.append)
        runner.ctx = dataclasses.replace(runner.ctx, provider=provider)
        runner.wake("cadence")
        assert sorted(m.to for m in sendgrid.messages) == [
            f"reader{i:04d}@example.com" for i in range(3)
        ], said
        assert not any("deliverability" in line or "timeout" in line for line in said)
        assert store.meta.get(REFUSED_KEY) is None
        assert last_report(store).checked_at == first.report.checked_at
    finally:
        silent.close()
        store.close()


# -- SPF of the envelope sender (SMTP's VERP bounce address) --------------------------------
def _smtp_settings(tmp_path: Path, bounce_address: str):
    from newsletter.exceptions import ConfigError

    smtp = {"host": "relay.verp.zonetest", "bounce_address": bounce_address}
    try:
        settings = _settings(
            tmp_path, "news@verp.zonetest", provider="smtp", smtp=smtp, dkim={"selector": "nl"}
        )
    except ConfigError as exc:
        if "smtp" not in str(exc).lower():
            raise
        pytest.skip(f"the [smtp] settings arrive with the SMTP provider (issue 20): {exc}")
    if getattr(settings, "smtp", None) is None:
        pytest.skip("the [smtp] settings arrive with the SMTP provider (issue 20)")
    return settings


def test_spf_is_checked_for_the_envelope_domain_of_the_smtp_bounce_address(
    tmp_path, dns_server, keys
):
    env = {"NEWSLETTER_DNS_SERVER": dns_server.address, "DKIM_PRIVATE_KEY": keys["ours"].decode()}

    def doctor(bounce_address: str) -> Report:
        settings = _smtp_settings(tmp_path, bounce_address)
        store = Store(settings.database_url)
        try:
            return diagnose(settings, store, env=env)
        finally:
            store.close()

    verp = doctor("bounces@bounces.verp.zonetest")
    f = _one(verp, "spf", Level.OK, "one SPF record")
    assert f.domain == "bounces.verp.zonetest"
    assert f.found == '"v=spf1 a:relay.verp.zonetest -all"'
    assert not verp.errors, verp.errors  # the From domain has no SPF: it is not the envelope
    bare = doctor("bounces@bare.verp.zonetest")
    f = _one(bare, "spf", Level.ERROR, "no SPF record at bare.verp.zonetest")
    assert f.publish == 'bare.verp.zonetest TXT "v=spf1 <your provider> -all"'
    plain = doctor("")  # no VERP: the From address is the envelope sender
    _one(plain, "spf", Level.ERROR, "no SPF record at verp.zonetest")


def test_the_smtp_hosts_provider_include_is_known_from_its_name(tmp_path):
    from newsletter.doctor.sending import sending_of

    settings = _smtp_settings(tmp_path, "")
    for host, include in (
        ("email-smtp.eu-west-1.amazonaws.com", "amazonses.com"),
        ("smtp.eu.mailgun.org", "mailgun.org"),
        ("smtp.postmarkapp.com", "spf.mtasv.net"),
        ("relay.verp.zonetest", ""),
    ):
        smtp = dataclasses.replace(settings.smtp, host=host)
        sending = sending_of(dataclasses.replace(settings, smtp=smtp))
        assert (sending.include, sending.host, sending.real) == (include, host, True)
    local = dataclasses.replace(settings.smtp, host="127.0.0.1", bounce_address="b@x.zonetest")
    sending = sending_of(dataclasses.replace(settings, smtp=local))
    assert not sending.real and sending.envelope_domain == "x.zonetest"


def test_dmarc_aligns_the_envelope_domain_with_the_from_domain(dns_server):
    from newsletter.doctor.dmarc import check_dmarc

    dns = Dns(dns_server.address)

    def alignment(domain: str, dkim: str | None, envelope: str) -> list:
        return [
            f
            for f in check_dmarc(dns, domain, dkim, spf_domain=envelope)
            if "envelope sender" in f.message
        ]

    assert alignment("verp.zonetest", "verp.zonetest", "bounces.verp.zonetest") == []
    (other,) = alignment("verp.zonetest", "verp.zonetest", "bounces.good.zonetest")
    assert other.level == Level.WARNING and "DMARC rests on DKIM alone" in other.message
    assert "bounces.good.zonetest" in other.message and "relaxed" in other.message
    (unsigned,) = alignment("verp.zonetest", None, "bounces.good.zonetest")
    assert unsigned.level == Level.ERROR and unsigned.message.endswith("DMARC fails")
    (strict,) = alignment("strict.zonetest", None, "bounces.strict.zonetest")
    assert strict.level == Level.ERROR and "strict: aspf=s" in strict.message
    assert alignment("strict.zonetest", None, "strict.zonetest") == []
