"""Our own DKIM signatures verify with dkimpy against the key as published in real DNS (nsd
serving a zone this test writes): the outbox's .eml files written by the real `newsletter run`,
and the messages the SMTP provider that `make_provider` builds hands to an SMTP server.
Changing a signed header (the unsubscribe link) breaks the signature."""

from __future__ import annotations

import base64
import dataclasses
import mailbox
import re

import dkim
import dns.message
import dns.query
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.articles import read_article
from newsletter.exceptions import ConfigError
from newsletter.providers import OutgoingBatch, make_provider
from newsletter.providers.dkim import DKIMSigner
from newsletter.render import render_issue
from newsletter.settings import load_settings
from newsletter.testing.smtp_server import SMTPServerProcess
from tests.conftest import run_cli, write
from tests.dns_server import DnsServer
from tests.test_smtp_provider import readers

DOMAIN = "news.zonetest"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
)


def _record() -> str:
    der = KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    text = f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    parts = " ".join(f'"{text[i : i + 200]}"' for i in range(0, len(text), 200))
    return f"news._domainkey TXT {parts}"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """dkimpy's DNS look-up, answered by nsd serving the zone with our public key."""
    server = DnsServer(tmp_path_factory.mktemp("dns"))
    server.zone(DOMAIN, [_record()])
    with server:

        def lookup(name: bytes, timeout: int = 5) -> bytes:
            query = dns.message.make_query(name.decode(), "TXT")
            reply = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=timeout)
            for rrset in reply.answer:
                for rdata in rrset:
                    return b"".join(rdata.strings)
            return b""

        yield lookup


def _signing_folder(tmp_path) -> None:
    assert run_cli(["init", "."], tmp_path).returncode == 0
    (tmp_path / "dkim.pem").write_bytes(PEM)
    path = tmp_path / "newsletter.toml"
    text = path.read_text()
    for pattern, value in [
        (r'^from_email = ".*"', f'from_email = "editor@{DOMAIN}"'),
        (r'^selector = ""', 'selector = "news"'),
        (r'^private_key_file = ""', 'private_key_file = "dkim.pem"'),
    ]:
        text, count = re.subn(pattern, value, text, flags=re.M)
        assert count == 1, pattern
    path.write_text(text)


def test_outbox_files_are_signed_and_verify_against_the_published_key(
    tmp_path, seed_path, published
):
    _signing_folder(tmp_path)
    write(tmp_path / "subs.csv", "email,name\r\nann@example.com,Ann\r\nbob@example.org,Bob\r\n")
    assert run_cli(["subscribers", "import", "subs.csv"], tmp_path).returncode == 0
    assert run_cli(["queue", "add", str(seed_path)], tmp_path).returncode == 0
    out = run_cli(["run", "--once"], tmp_path)
    assert out.returncode == 0 and "sent 2" in out.stdout, out.stderr
    files = sorted((tmp_path / "outbox").rglob("*.eml"))
    assert len(files) == 2
    for path in files:
        raw = path.read_bytes()
        assert raw.startswith(b"DKIM-Signature: ")
        assert b"d=news.zonetest" in raw.split(b"\r\n\r\n")[0]
        assert dkim.verify(raw, dnsfunc=published), raw[:600]
        forged = raw.replace(b"List-Unsubscribe: <", b"List-Unsubscribe: <https://evil.example/")
        assert not dkim.verify(forged, dnsfunc=published)


def test_smtp_messages_from_make_provider_verify(tmp_path, seed_path, published):
    _signing_folder(tmp_path)
    settings = load_settings(tmp_path / "newsletter.toml", env={})
    rendered = render_issue([read_article(seed_path)], settings)
    with SMTPServerProcess(maildir=tmp_path / "md") as server:
        smtp = dataclasses.replace(
            settings.smtp, host="127.0.0.1", port=server.port, security="none"
        )
        provider = make_provider(dataclasses.replace(settings, provider="smtp", smtp=smtp))
        accepted = provider.send(OutgoingBatch.of(settings, 5, 1, rendered, readers(3)))
        provider.close()  # type: ignore[attr-defined]
    assert len(accepted.message_ids) == 3
    raws = [bytes(m) for m in mailbox.Maildir(tmp_path / "md", create=False)]
    assert len(raws) == 3
    for raw in raws:  # the server put its X-Envelope-* lines on top: unsigned, ignored
        assert dkim.verify(raw, dnsfunc=published), raw[:600]


def test_a_key_that_is_not_one_is_named(tmp_path, monkeypatch):
    _signing_folder(tmp_path)
    (tmp_path / "dkim.pem").write_text("not a key\n")
    settings = load_settings(tmp_path / "newsletter.toml", env={})
    monkeypatch.delenv("DKIM_PRIVATE_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"\[dkim\]: the private key is not an RSA private key"):
        make_provider(settings)
    # DKIM_PRIVATE_KEY takes the file's place (its line breaks may be written \n).
    monkeypatch.setenv("DKIM_PRIVATE_KEY", PEM.decode().replace("\n", "\\n"))
    assert make_provider(settings).name == "outbox"


def test_relaxed_body_is_dkimpys_canonical_form():
    """The fast check (a body already in relaxed form goes as it is) and the regular
    expressions give what dkimpy computes, for every small body of these characters."""
    import random

    from dkim.canonicalization import Relaxed

    from newsletter.providers.dkim import relaxed_body

    chance = random.Random(20)
    bodies = [b"", b"\r\n", b"\r\n\r\n", b"a", b"a\r\n", b"a \r\n\r\n", b"a\n b\t\tc  \n"]
    for _ in range(5000):
        raw = bytes(chance.choice(b"ab \t\n") for _ in range(chance.randrange(0, 24)))
        bodies.append(raw.replace(b"\n", b"\r\n") if chance.random() < 0.8 else raw)
    for body in bodies:
        expected = Relaxed.canonicalize_body(re.sub(rb"\r?\n", b"\r\n", body))
        assert relaxed_body(body) == expected, body


def test_what_is_shared_between_readers_still_verifies(published):
    """One signer for many messages, as for an issue: repeated header lines come from its
    cache, an equal body keeps its hash, a different body gets its own; a message laid out
    otherwise (LF line ends, spaces to canonicalize, folded headers) takes the general path.
    Each signature verifies against the published key, and each covers only its message."""
    signer = DKIMSigner.load(selector="news", domain=DOMAIN, key_file="", key_pem=PEM.decode())
    head = (
        f"From: Editor <editor@{DOMAIN}>\r\nTo: {{to}}\r\nSubject: Issue 7:\r\n  the  end\r\n"
        "Date: Mon, 07 Dec 2026 12:00:00 +0000\r\nMessage-ID: <{id}@news.zonetest>\r\n"
        "List-Unsubscribe: <https://news.zonetest/u/{id}>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nMIME-Version: 1.0\r\n\r\n"
    )
    same_body = b"Hello,\r\nthe same for everyone.\r\n"
    messages = []
    for i in range(3):  # equal bodies: the body hash is shared
        messages.append(head.format(to=f"r{i}@example.com", id=i).encode() + same_body)
    for i in range(3, 6):  # each reader's own link in the body
        body = f"Hello r{i},\r\nunsubscribe: https://news.zonetest/u/{i}\r\n".encode()
        messages.append(head.format(to=f"r{i}@example.com", id=i).encode() + body)
    spaced = head.format(to="s@example.com", id=9).encode() + b"a  b\t c \r\n\r\n\r\n"
    messages += [spaced, spaced.replace(b"\r\n", b"\n")]
    signatures = [signer.sign(message) for message in messages]
    for signature, message in zip(signatures, messages, strict=True):
        assert dkim.verify(signature + message, dnsfunc=published), signature + message[:300]
    # Another reader's signature does not fit this reader's message (To and link differ).
    assert not dkim.verify(signatures[0] + messages[1], dnsfunc=published)
    assert not dkim.verify(signatures[3] + messages[4], dnsfunc=published)
    assert "BEGIN" not in repr(signer)  # the key is never shown
