"""The SMTP provider against a real SMTP server (aiosmtpd in a child process) with scripted
faults: each reader's own message, read back from the server's Maildir, and each answer of
the server mapped to the outcome the delivery log records."""

from __future__ import annotations

import mailbox
import smtplib
import socket
from email.parser import BytesParser
from email.policy import default

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.articles import read_article
from newsletter.exceptions import ConfigError, CredentialsRefused, Unreachable
from newsletter.providers import OutgoingBatch
from newsletter.providers.dkim import DKIMSigner
from newsletter.providers.smtp import SMTPProvider, verp_address
from newsletter.records import Recipient
from newsletter.render import render_issue
from newsletter.settings import SMTPSettings
from newsletter.testing.smtp_server import SMTPServerProcess

PARSER = BytesParser(policy=default)


def smtp_settings(port: int, **overrides) -> SMTPSettings:
    values = dict(
        host="127.0.0.1",
        port=port,
        security="none",
        username="",
        connections=2,
        messages_per_connection=100,
        timeout_seconds=5.0,
        max_per_second=0.0,
        bounce_address="bounces@example.com",
        ca_file="",
        max_retries=2,
    )
    values.update(overrides)
    return SMTPSettings(**values)


def readers(count: int, *special: str) -> tuple[Recipient, ...]:
    emails = [f"reader{i:03d}@example.com" for i in range(count)] + list(special)
    return tuple(
        Recipient(sid, email, f"Reader {sid}", f"tok{sid:05d}.sig")
        for sid, email in enumerate(emails, 1)
    )


@pytest.fixture
def rendered(settings, seed_path):
    return render_issue([read_article(seed_path)], settings)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def messages(maildir) -> list:
    return [PARSER.parsebytes(bytes(m)) for m in mailbox.Maildir(maildir, create=False)]


def test_each_reader_gets_their_own_message_with_a_verp_envelope(settings, rendered, tmp_path):
    recipients = readers(25)
    batch = OutgoingBatch.of(settings, 7, 1, rendered, recipients)
    with SMTPServerProcess(maildir=tmp_path / "md") as server:
        provider = SMTPProvider(settings, smtp=smtp_settings(server.port))
        accepted = provider.send(batch)
        provider.close()
    assert set(accepted.message_ids) == {r.subscriber_id for r in recipients}
    assert all(mid.startswith("Q") for mid in accepted.message_ids.values())  # queue ids
    assert accepted.rejected == {} and accepted.deferred == {} and accepted.uncertain == {}
    got = messages(tmp_path / "md")
    assert sorted(m["To"].addresses[0].addr_spec for m in got) == sorted(
        r.email for r in recipients
    )
    by_to = {m["To"].addresses[0].addr_spec: m for m in got}
    for recipient, unsubscribe in zip(recipients, batch.unsubscribe_urls, strict=True):
        message = by_to[recipient.email]
        assert message["List-Unsubscribe"] == f"<{unsubscribe}>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["Message-ID"].endswith("@" + settings.from_email.rpartition("@")[2] + ">")
        assert message["X-Envelope-From"] == verp_address("bounces@example.com", 7, recipient.token)
        assert (
            message["X-Envelope-From"] == f"bounces+7-tok{recipient.subscriber_id:05d}@example.com"
        )
        text = message.get_body(("plain",)).get_content()
        assert unsubscribe in text and recipient.name in text


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
def test_answers_map_to_outcomes(settings, rendered, tmp_path, pipelining):
    recipients = readers(
        6, "gone@example.com", "busy@example.com", "spam@example.com", "lost@example.com"
    )
    sid = {r.email: r.subscriber_id for r in recipients}
    faults = {
        "refuse": {"gone@example.com": "550 5.1.1 <gone@example.com>: no such user"},
        "defer": {"busy@example.com": "451 4.3.0 mailbox busy, try later"},
        "refuse_data": {"spam@example.com": "554 5.7.1 message refused as spam"},
        "drop_after_data": ["lost@example.com"],
    }
    batch = OutgoingBatch.of(settings, 3, 1, rendered, recipients)
    with SMTPServerProcess(
        maildir=tmp_path / "md",
        faults=faults,
        faults_path=tmp_path / "f.json",
        pipelining=pipelining,
    ) as server:
        with smtplib.SMTP("127.0.0.1", server.port) as probe:  # what the server offers
            assert probe.ehlo()[0] == 250 and probe.has_extn("pipelining") == pipelining
        provider = SMTPProvider(
            settings, smtp=smtp_settings(server.port, connections=1, max_retries=1)
        )
        accepted = provider.send(batch)
        provider.close()
    assert set(accepted.message_ids) == {sid[f"reader{i:03d}@example.com"] for i in range(6)}
    assert "5.1.1" in accepted.rejected[sid["gone@example.com"]]
    assert accepted.bounced == {sid["gone@example.com"]}
    assert "5.7.1" in accepted.rejected[sid["spam@example.com"]]
    assert "451" in accepted.deferred[sid["busy@example.com"]]
    assert set(accepted.deferred) == {sid["busy@example.com"]}
    assert set(accepted.uncertain) == {sid["lost@example.com"]}
    assert "lost after the message was sent" in accepted.uncertain[sid["lost@example.com"]]
    assert len(messages(tmp_path / "md")) == 6  # the dropped one was never stored either


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
@pytest.mark.parametrize(
    "reply", ["421 4.7.0 too many messages, closing", "454 4.7.0 TLS not available"]
)
def test_421_or_454_mid_session_reconnects_slows_down_and_every_reader_gets_one(
    settings, rendered, tmp_path, reply, pipelining
):
    recipients = readers(30)
    faults = {"close_after_messages": 4, "close_reply": reply}
    batch = OutgoingBatch.of(settings, 3, 1, rendered, recipients)
    with SMTPServerProcess(
        maildir=tmp_path / "md",
        faults=faults,
        faults_path=tmp_path / "f.json",
        pipelining=pipelining,
    ) as server:
        provider = SMTPProvider(
            settings, smtp=smtp_settings(server.port, max_retries=10, max_per_second=500.0)
        )
        accepted = provider.send(batch)
        provider.close()
    assert set(accepted.message_ids) == {r.subscriber_id for r in recipients}
    assert provider.pace.interval > 1 / 500  # slowed down by each 421/454
    tos = [m["To"].addresses[0].addr_spec for m in messages(tmp_path / "md")]
    assert sorted(tos) == sorted(r.email for r in recipients)  # exactly once each


def test_nothing_listening_is_unreachable_not_a_refusal(settings, rendered):
    batch = OutgoingBatch.of(settings, 3, 1, rendered, readers(3))
    provider = SMTPProvider(settings, smtp=smtp_settings(free_port()))
    with pytest.raises(Unreachable, match=r"connection refused: check \[smtp\] host and port"):
        provider.send(batch)


def test_unknown_host_is_named(settings, rendered):
    batch = OutgoingBatch.of(settings, 3, 1, rendered, readers(1))
    provider = SMTPProvider(
        settings, smtp=smtp_settings(25, host="smtp.invalid", security="starttls")
    )
    with pytest.raises(Unreachable, match=r"smtp.invalid.*unknown host.*check \[smtp\] host"):
        provider.send(batch)


def test_a_timeout_before_data_defers_that_reader_alone(settings, rendered, tmp_path):
    """A server that never answers RCPT TO for one reader: the client's timeout breaks the
    connection, the others go on over a new one, that reader is tried again, then deferred
    (back to pending); nothing was sent twice."""
    recipients = readers(8, "slow@example.com")
    slow = recipients[-1].subscriber_id
    faults = {"stall": ["slow@example.com"]}
    batch = OutgoingBatch.of(settings, 3, 1, rendered, recipients)
    with SMTPServerProcess(
        maildir=tmp_path / "md", faults=faults, faults_path=tmp_path / "f.json"
    ) as server:
        provider = SMTPProvider(
            settings, smtp=smtp_settings(server.port, timeout_seconds=0.5, max_retries=1)
        )
        accepted = provider.send(batch)
        provider.close()
    assert set(accepted.message_ids) == {r.subscriber_id for r in recipients[:-1]}
    assert set(accepted.deferred) == {slow} and "timed out" in accepted.deferred[slow]
    assert accepted.uncertain == {} and accepted.rejected == {}
    tos = [m["To"].addresses[0].addr_spec for m in messages(tmp_path / "md")]
    assert sorted(tos) == sorted(r.email for r in recipients[:-1])


def test_plain_text_is_refused_for_a_remote_host(settings):
    with pytest.raises(ConfigError, match="127.0.0.1/localhost"):
        SMTPProvider(settings, smtp=smtp_settings(25, host="smtp.example.com"))


def _self_signed(tmp_path):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_starttls_with_auth(settings, rendered, tmp_path):
    cert = _self_signed(tmp_path)
    batch = OutgoingBatch.of(settings, 3, 1, rendered, readers(3))
    with SMTPServerProcess(maildir=tmp_path / "md", auth=("news", "s3cret"), cert=cert) as server:
        base = dict(host="localhost", security="starttls", username="news")
        # Self-signed without [smtp] ca_file: refused, with the setting to use.
        untrusted = SMTPProvider(
            settings, smtp=smtp_settings(server.port, **base), password="s3cret"
        )
        with pytest.raises(ConfigError, match=r"\[smtp\] ca_file"):
            untrusted.send(batch)
        # A wrong password: the send stops, naming the setting, never the password.
        wrong = SMTPProvider(
            settings,
            smtp=smtp_settings(server.port, ca_file=str(cert[0]), **base),
            password="wrong-pw",
        )
        with pytest.raises(CredentialsRefused) as refused:
            wrong.send(batch)
        assert "SMTP_PASSWORD" in str(refused.value) and "wrong-pw" not in str(refused.value)
        assert not (tmp_path / "md").exists() or messages(tmp_path / "md") == []
        good = SMTPProvider(
            settings,
            smtp=smtp_settings(server.port, ca_file=str(cert[0]), **base),
            password="s3cret",
        )
        accepted = good.send(batch)
        good.close()
    assert len(accepted.message_ids) == 3 and len(messages(tmp_path / "md")) == 3


def test_dkim_signatures_verify_against_the_published_key(settings, rendered, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    signer = DKIMSigner.load(
        selector="news", domain="example.com", key_file="", key_pem=pem.decode()
    )
    batch = OutgoingBatch.of(settings, 3, 1, rendered, readers(4))
    with SMTPServerProcess(maildir=tmp_path / "md") as server:
        provider = SMTPProvider(settings, smtp=smtp_settings(server.port), sign=signer.sign)
        provider.send(batch)
        provider.close()
    raws = [bytes(m) for m in mailbox.Maildir(tmp_path / "md", create=False)]
    assert len(raws) == 4

    def dns(name, timeout=5):
        assert name == b"news._domainkey.example.com."
        return record

    for raw in raws:
        # The server added its own X-Envelope headers on top; drop them, as a verifier
        # would ignore unsigned headers anyway.
        assert dkim.verify(raw, dnsfunc=dns), raw[:400]
        signed = PARSER.parsebytes(raw)["DKIM-Signature"]
        for header in ("list-unsubscribe", "list-unsubscribe-post", "from", "to", "subject"):
            assert header in signed.lower()
        # Tampering with the unsubscribe link breaks the signature.
        assert not dkim.verify(
            raw.replace(b"List-Unsubscribe: <", b"List-Unsubscribe: <x"), dnsfunc=dns
        )


def test_connections_caps_every_batch_in_flight_together(settings, rendered, tmp_path):
    """[delivery] concurrency sends several batches at once through one provider: together
    they never open more than [smtp] connections."""
    from concurrent.futures import ThreadPoolExecutor

    everyone = readers(120)
    batches = [
        OutgoingBatch.of(settings, 3, n, rendered, everyone[n * 30 : (n + 1) * 30])
        for n in range(4)
    ]
    server = SMTPServerProcess(sink=True)
    try:
        provider = SMTPProvider(settings, smtp=smtp_settings(server.port, connections=3))
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(provider.send, batches))
        provider.close()
    finally:
        accepted = server.stop()
    assert sum(len(r.message_ids) for r in results) == 120 == accepted
    assert 1 <= server.peak_connections <= 3


def test_transactional_mail_goes_out_over_smtp(settings, tmp_path):
    """Sign-up confirmations and the editors' alerts use `send_message`."""
    from newsletter.exceptions import Rejected
    from newsletter.providers import Message

    faults = {"refuse": {"nobody@example.com": "550 5.1.1 no such user"}}
    with SMTPServerProcess(
        maildir=tmp_path / "md", faults=faults, faults_path=tmp_path / "f.json"
    ) as server:
        provider = SMTPProvider(settings, smtp=smtp_settings(server.port))
        note = dict(subject="Confirm", text="Click", html="<p>Click</p>", category="c", key="k")
        message_id = provider.send_message(Message("ann@example.com", "Ann Ö", **note))
        with pytest.raises(Rejected, match="refused 'nobody@example.com': 550 5.1.1"):
            provider.send_message(Message("nobody@example.com", "", **note))
        provider.close()
    (got,) = messages(tmp_path / "md")
    assert got["Message-ID"] == message_id and got["Subject"] == "Confirm"
    assert got["To"].addresses[0].display_name == "Ann Ö"
    assert got["X-Envelope-From"] == "bounces@example.com"


def test_the_password_comes_from_the_environment_only(settings, monkeypatch):
    import dataclasses

    smtp = dataclasses.replace(settings.smtp, host="smtp.example.com", username="news")
    with_login = dataclasses.replace(settings, provider="smtp", smtp=smtp)
    monkeypatch.delenv("SMTP_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match=r"\[smtp\] username is 'news' but SMTP_PASSWORD"):
        SMTPProvider.from_settings(with_login)
    monkeypatch.setenv("SMTP_PASSWORD", "pass phrase with spaces\r\n")
    provider = SMTPProvider.from_settings(with_login)
    assert provider.pool._password == "pass phrase with spaces"
    assert "pass phrase" not in repr(provider) and "pass phrase" not in repr(settings)
