"""One issue end to end through Debian's Postfix (a private instance the test starts): sent
with `provider = "smtp"` by the real `newsletter run`, every delivered message read back from
Postfix's Maildirs exactly once each, DKIM-signed and still verifying after the relay; a reader
Postfix does not know comes back as Postfix's own delivery status notification to our VERP
address, which `newsletter bounces` reads from the bounce Maildir to mark them bounced."""

from __future__ import annotations

import base64
import re
from email.parser import BytesParser
from email.policy import default

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.records import SubscriberStatus
from newsletter.settings import load_settings
from newsletter.store import Store
from tests.conftest import run_cli, write
from tests.postfix_server import PostfixServer

READERS = [f"reader{i:02d}" for i in range(12)]
DOMAINS = ("readers.example.com", "news.example.com")
PARSER = BytesParser(policy=default)


def configure(folder, port: int, bounces) -> None:
    path = folder / "newsletter.toml"
    text = path.read_text()
    for pattern, value in [
        (r'^provider = "outbox"', 'provider = "smtp"'),
        (r'^from_email = ".*"', 'from_email = "editor@news.example.com"'),
        (r'^host = ""', 'host = "127.0.0.1"'),
        (r"^port = 587", f"port = {port}"),
        (r'^security = "starttls"', 'security = "none"'),
        (r'^bounce_address = ""', 'bounce_address = "bounces@news.example.com"'),
        (r'^mailbox = ""', f'mailbox = "{bounces}"'),
        (r'^selector = ""', 'selector = "news"'),
    ]:
        text, count = re.subn(pattern, value, text, flags=re.M)
        assert count == 1, pattern
    path.write_text(text)


def test_an_issue_through_postfix_and_its_bounce_back(tmp_path, seed_path):
    mailboxes = {f"{name}@readers.example.com": f"readers/{name}/" for name in READERS}
    mailboxes["bounces@news.example.com"] = "bounces/"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    with PostfixServer(mailboxes=mailboxes, domains=DOMAINS) as postfix:
        assert run_cli(["init", "."], tmp_path).returncode == 0
        configure(tmp_path, postfix.port, postfix.maildir("bounces/"))
        rows = [f"{name}@readers.example.com,Reader {name[-2:]}" for name in READERS]
        rows.append("ghost@readers.example.com,Ghost")  # Postfix has no mailbox for them
        write(tmp_path / "subs.csv", "email,name\r\n" + "\r\n".join(rows) + "\r\n")
        assert run_cli(["subscribers", "import", "subs.csv"], tmp_path).returncode == 0
        assert run_cli(["queue", "add", str(seed_path)], tmp_path).returncode == 0
        env = {"DKIM_PRIVATE_KEY": pem}
        out = run_cli(["run", "--once"], tmp_path, env=env)
        assert out.returncode == 0, out.stderr
        assert f"sent {len(READERS) + 1}" in out.stdout, out.stdout

        postfix.wait_until(
            lambda: (
                all(postfix.messages(f"readers/{n}/") for n in READERS)
                and postfix.messages("bounces/")
                and postfix.queue_empty()
            ),
            "every delivery and the bounce",
        )
        unsubscribe_links = set()
        for name in READERS:
            got = postfix.messages(f"readers/{name}/")
            assert len(got) == 1, (name, len(got))  # exactly once each
            raw = got[0]
            message = PARSER.parsebytes(raw)
            assert message["To"].addresses[0].addr_spec == f"{name}@readers.example.com"
            assert f"Reader {name[-2:]}" in message.get_body(("plain",)).get_content()
            assert message["Return-Path"].startswith("<bounces+1-")
            unsubscribe_links.add(message["List-Unsubscribe"])

            def dns(qname, timeout=5):
                assert qname == b"news._domainkey.news.example.com."
                return record

            assert dkim.verify(raw, dnsfunc=dns), raw[:600]  # Postfix's Received: unsigned
        assert len(unsubscribe_links) == len(READERS)

        bounce = PARSER.parsebytes(postfix.messages("bounces/")[0])
        assert bounce["Subject"] == "Undelivered Mail Returned to Sender"
        out = run_cli(["bounces"], tmp_path)
        assert out.returncode == 0, out.stderr
        assert "read 1 messages" in out.stdout
        assert "permanent: 1, temporary: 0, complaints: 0, not understood: 0" in out.stdout
        assert "now bounced: ghost@readers.example.com" in out.stdout

    settings = load_settings(tmp_path / "newsletter.toml", env={})
    store = Store(settings.database_url)
    try:
        assert store.subscribers.by_email("ghost@readers.example.com").status == (
            SubscriberStatus.BOUNCED
        )
        assert store.subscribers.count() == len(READERS)  # everyone else still active
        assert store.bounces.counts(1) == {"permanent": 1}
    finally:
        store.close()
