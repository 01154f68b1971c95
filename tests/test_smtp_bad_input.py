"""Bad input over SMTP gets a clear error and loses nothing, against real servers (aiosmtpd in
a child process, a plain TCP listener that is not SMTP): a wrong port, a TLS handshake that
fails, an address refused as syntax, an 8-bit name on a server without SMTPUTF8; and through
the real `newsletter run`, a wrong setting leaves every delivery row pending."""

from __future__ import annotations

import dataclasses
import mailbox
import re
import socket
import threading
from email.parser import BytesParser
from email.policy import default

import pytest

from newsletter.articles import read_article
from newsletter.exceptions import ConfigError
from newsletter.providers import OutgoingBatch
from newsletter.providers.smtp import SMTPProvider
from newsletter.records import Recipient
from newsletter.render import render_issue
from newsletter.settings import load_settings
from newsletter.store import Store
from newsletter.testing.smtp_server import SMTPServerProcess
from tests.conftest import run_cli, write
from tests.test_smtp_provider import _self_signed, readers, smtp_settings

PARSER = BytesParser(policy=default)


@pytest.fixture
def rendered(settings, seed_path):
    return render_issue([read_article(seed_path)], settings)


class NotSMTP:
    """A TCP listener on 127.0.0.1 that greets like a web server (a wrong [smtp] port)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


def test_a_port_that_is_not_smtp_names_host_and_port(settings, rendered):
    listener = NotSMTP()
    try:
        provider = SMTPProvider(settings, smtp=smtp_settings(listener.port))
        with pytest.raises(ConfigError, match=r"did not greet as an SMTP server.*\[smtp\] host"):
            provider.send(OutgoingBatch.of(settings, 3, 1, rendered, readers(2)))
    finally:
        listener.close()


def test_a_tls_handshake_that_fails_names_security_and_port(settings, rendered, tmp_path):
    # Implicit TLS ("tls", port 465's way) against a server that speaks plain SMTP first.
    with SMTPServerProcess(maildir=tmp_path / "md") as server:
        provider = SMTPProvider(
            settings, smtp=smtp_settings(server.port, host="localhost", security="tls")
        )
        with pytest.raises(ConfigError, match=r"TLS handshake .*\[smtp\] security and port"):
            provider.send(OutgoingBatch.of(settings, 3, 1, rendered, readers(2)))
    assert not (tmp_path / "md").exists() or not list(mailbox.Maildir(tmp_path / "md"))


def test_an_address_refused_as_syntax_fails_alone(settings, rendered, tmp_path):
    # One the server refuses as syntax, one no header can carry (refused before SMTP).
    recipients = readers(3, "odd%route@example.com", "bad..dots@example.com")
    sid = {r.email: r.subscriber_id for r in recipients}
    faults = {"refuse": {"odd%route@example.com": "553 5.1.3 Bad recipient address syntax"}}
    with SMTPServerProcess(
        maildir=tmp_path / "md", faults=faults, faults_path=tmp_path / "f.json"
    ) as server:
        provider = SMTPProvider(settings, smtp=smtp_settings(server.port))
        accepted = provider.send(OutgoingBatch.of(settings, 3, 1, rendered, recipients))
        provider.close()
    odd, bad = sid["odd%route@example.com"], sid["bad..dots@example.com"]
    assert "553 5.1.3 Bad recipient address syntax (at RCPT TO)" in accepted.rejected[odd]
    assert odd in accepted.bounced  # 5.1.x: the address can never receive mail
    assert "cannot be written in an email header" in accepted.rejected[bad]
    assert bad not in accepted.bounced  # ours, not the server's verdict
    assert set(accepted.message_ids) == set(sid.values()) - {odd, bad}
    assert len(list(mailbox.Maildir(tmp_path / "md", create=False))) == 3


def test_an_8bit_name_goes_to_a_server_without_smtputf8_encoded(settings, rendered, tmp_path):
    settings = dataclasses.replace(settings, from_name="Éditions Finales")
    recipients = (
        Recipient(1, "zoe@example.com", "Zoë Ångström", "tok00001.sig"),
        Recipient(2, "jose@example.com", "José 山田", "tok00002.sig"),
        Recipient(3, "josé@exämple.com", "José", "tok00003.sig"),  # needs SMTPUTF8
    )
    with SMTPServerProcess(maildir=tmp_path / "md", smtputf8=False) as server:
        provider = SMTPProvider(settings, smtp=smtp_settings(server.port))
        accepted = provider.send(OutgoingBatch.of(settings, 3, 1, rendered, recipients))
        provider.close()
    assert set(accepted.message_ids) == {1, 2}
    assert "does not offer SMTPUTF8" in accepted.rejected[3]
    raws = [bytes(m) for m in mailbox.Maildir(tmp_path / "md", create=False)]
    names = {}
    for raw in raws:
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        assert head.isascii(), head  # headers encoded (RFC 2047), not raw UTF-8
        message = PARSER.parsebytes(raw)
        names[message["To"].addresses[0].addr_spec] = message["To"].addresses[0].display_name
        assert message["From"].addresses[0].display_name == "Éditions Finales"
    assert names == {"zoe@example.com": "Zoë Ångström", "jose@example.com": "José 山田"}


def _smtp_folder(tmp_path, seed_path, port: int, **keys: str):
    assert run_cli(["init", "."], tmp_path).returncode == 0
    path = tmp_path / "newsletter.toml"
    text = path.read_text().replace('provider = "outbox"', 'provider = "smtp"')
    changes = {"host": '"127.0.0.1"', "port": str(port), "security": '"none"', **keys}
    for key, value in changes.items():
        text, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
        assert count == 1, key
    path.write_text(text)
    write(tmp_path / "subs.csv", "email,name\r\na@example.com,A\r\nb@example.com,B\r\n")
    assert run_cli(["subscribers", "import", "subs.csv"], tmp_path).returncode == 0
    assert run_cli(["queue", "add", str(seed_path)], tmp_path).returncode == 0


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"security": '"tls"', "host": '"localhost"'}, "[smtp] security and port"),
        ({"security": '"starttls"'}, "does not offer STARTTLS"),
        ({}, "certificate is not trusted"),
    ],
    ids=["tls-handshake", "no-starttls", "self-signed"],
)
def test_run_stops_on_a_wrong_setting_and_keeps_every_row(tmp_path, seed_path, keys, expected):
    cert = _self_signed(tmp_path) if expected == "certificate is not trusted" else None
    if cert is not None:
        keys = {"security": '"starttls"', "host": '"localhost"'}
    with SMTPServerProcess(maildir=tmp_path / "md", cert=cert) as server:
        _smtp_folder(tmp_path, seed_path, server.port, **keys)
        out = run_cli(["run", "--once"], tmp_path)
    assert out.returncode == 1, out.stdout
    assert "Traceback" not in out.stderr and expected in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and expected in errors[0], out.stderr  # the check's warnings aside
    if cert is not None:
        assert "[smtp] ca_file" in out.stderr
    settings = load_settings(tmp_path / "newsletter.toml", env={})
    store = Store(settings.database_url)
    try:
        counts = store.deliveries.counts(1)
    finally:
        store.close()
    assert counts["pending"] == 2 and counts["sent"] == 0  # nothing lost, nothing sent
    assert not (tmp_path / "md").exists() or not list(mailbox.Maildir(tmp_path / "md"))


def test_smtp_settings_are_checked_where_the_file_is_read(tmp_path):
    assert run_cli(["init", "."], tmp_path).returncode == 0
    path = tmp_path / "newsletter.toml"
    original = path.read_text()
    cases = [
        (
            [
                ('host = ""', 'host = "smtp.example.com"'),
                ('security = "starttls"', 'security = "none"'),
            ],
            '[smtp] security: "none" sends the password and every message in clear',
        ),
        ([("port = 587", "port = 70000")], "[smtp] port: input should be less than or equal"),
        (
            [('bounce_address = ""', 'bounce_address = "bounces+x@example.com"')],
            "[smtp] bounce_address: must have no '+' of its own",
        ),
        (
            [('mailbox = ""', 'mailbox = "Maildir"'), ('imap_host = ""', 'imap_host = "imap.x"')],
            "[bounces] imap_host: set mailbox or imap_host, not both",
        ),
        (
            [('provider = "outbox"', 'provider = "smtp"')],
            '[smtp] host: needed with provider = "smtp"',
        ),
    ]
    for replacements, expected in cases:
        text = original
        for old, new in replacements:
            assert old in text
            text = text.replace(old, new, 1)
        path.write_text(text)
        out = run_cli(["queue", "list"], tmp_path)
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert expected in out.stderr, (expected, out.stderr)


@pytest.mark.parametrize("where", ["unknown-host", "nothing-listening"])
def test_run_pauses_on_a_server_it_cannot_reach_and_keeps_every_row(tmp_path, seed_path, where):
    """An unknown host (`.invalid`: no resolver can know it) or a port nothing listens on:
    one line naming `[smtp] host` (and port), the issue paused with every row pending, and
    `resume` sends them once the setting is right."""
    from tests.test_smtp_provider import free_port

    port = free_port()
    keys = {"max_retries": "1", "backoff_seconds": "0.05"}
    if where == "unknown-host":
        keys.update(host='"smtp.invalid"', security='"starttls"')
    _smtp_folder(tmp_path, seed_path, port, **keys)
    # A remote host has the doctor's DNS checks run first: aimed at a closed local port (they
    # fail, and --force sends anyway), so no query leaves this machine.
    env = {"NEWSLETTER_DNS_SERVER": f"127.0.0.1:{free_port()}"}
    out = run_cli(["run", "--once", "--force"], tmp_path, env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    expected = (
        "cannot reach the provider at smtp.invalid:"
        if where == "unknown-host"
        else f"cannot reach the provider at 127.0.0.1:{port}: connection refused: check [smtp]"
    )
    assert expected in out.stdout and "check [smtp] host" in out.stdout, out.stdout
    assert "paused" in out.stdout and "`newsletter resume 1`" in out.stdout
    assert "SMTP_PASSWORD" not in out.stdout + out.stderr
    settings = load_settings(tmp_path / "newsletter.toml", env={})
    store = Store(settings.database_url)
    try:
        counts = store.deliveries.counts(1)
        assert counts["pending"] == 2 and counts["sent"] == counts["failed"] == 0
        with SMTPServerProcess(maildir=tmp_path / "md") as server:
            path = tmp_path / "newsletter.toml"
            text = path.read_text()
            for key, value in [
                ("host", '"127.0.0.1"'),
                ("port", server.port),
                ("security", '"none"'),
            ]:
                text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
            path.write_text(text)
            resumed = run_cli(["resume", "1"], tmp_path)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert store.deliveries.counts(1)["sent"] == 2
    finally:
        store.close()
    assert len(list(mailbox.Maildir(tmp_path / "md", create=False))) == 2
