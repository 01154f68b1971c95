"""The tables of our own mail servers and keys: [smtp] (the SMTP provider), [dkim] (our own
signing) and [bounces] (the mailbox reports come back to)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from newsletter.addresses import LOOPBACK_HOSTS
from newsletter.settings.schema.base import Section, address


class DkimSection(Section):
    """[dkim]: signing with our own DKIM key (the provider's own signing needs none of it)."""

    selector: str = Field(
        "",
        description="The DKIM selector: the key is published at "
        "<selector>._domainkey.<domain>. Empty: no signing of our own (SendGrid signs with "
        "its domain-authentication keys).",
    )
    domain: str = Field("", description="The d= domain of the signature; empty: the From domain.")
    private_key_file: str = Field(
        "",
        description="The PEM private key, relative to this file; DKIM_PRIVATE_KEY in the "
        "environment takes its place.",
    )


class SMTPSection(Section):
    """[smtp]: any SMTP server or provider (SES, Mailgun, Postmark, a local Postfix);
    SMTP_PASSWORD in the environment."""

    host: str = Field("", description='The SMTP server; needed with provider = "smtp".')
    port: int = Field(
        587, ge=1, le=65535, description="587 for STARTTLS, 465 for TLS, 25 for a local relay."
    )
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls",
        description='"starttls" (port 587), "tls" (port 465) or "none" (only for a server on '
        "127.0.0.1/localhost: the password and every message would travel in clear).",
    )
    username: str = Field(
        "", description="The login (the password is SMTP_PASSWORD); empty: no login."
    )
    connections: int = Field(
        4, ge=1, le=64, description="Persistent connections used in parallel for one batch."
    )
    messages_per_connection: int = Field(
        100, ge=1, le=100_000, description="A connection is opened again after this many."
    )
    timeout_seconds: float = Field(
        30, gt=0, le=600, description="How long one SMTP command may wait for its answer."
    )
    max_per_second: float = Field(
        0, ge=0, le=100_000, description="At most this many messages a second; 0: no limit."
    )
    bounce_address: str = Field(
        "",
        description="The envelope sender, made per reader (VERP): bounces@example.com sends "
        "as bounces+<issue>-<reader>@example.com, so a bounce names both. Empty: the From "
        "address, and bounces are matched by the addresses they name.",
    )
    ca_file: str = Field(
        "",
        description="A PEM certificate (or its CA) to trust for a private server, relative "
        "to this file; empty: the system's CAs.",
    )

    @field_validator("security")
    @classmethod
    def _clear_text_locally(cls, value: str, info: ValidationInfo) -> str:
        host = str(info.data.get("host", "")).strip("[]").lower()
        if value == "none" and host and host not in LOOPBACK_HOSTS:
            raise ValueError(
                '"none" sends the password and every message in clear: allowed only for '
                f"127.0.0.1/localhost, not {host!r}"
            )
        return value

    @field_validator("bounce_address")
    @classmethod
    def _bounces(cls, value: str) -> str:
        if not value.strip():
            return ""
        checked = address(value)
        if "+" in checked.partition("@")[0]:
            raise ValueError("must have no '+' of its own (VERP adds +<issue>-<reader>)")
        return checked


class BouncesSection(Section):
    """[bounces]: the mailbox bounces and complaints come back to (`newsletter bounces`);
    BOUNCES_PASSWORD in the environment for IMAP."""

    mailbox: str = Field("", description="A Maildir folder or an mbox file, relative to this file.")
    imap_host: str = Field("", description="Or an IMAP server (over TLS), instead of mailbox.")
    imap_port: int = Field(993, ge=1, le=65535, description="The IMAP server's TLS port.")
    imap_user: str = Field("", description="The IMAP login (the password is BOUNCES_PASSWORD).")
    imap_folder: str = Field("INBOX", description="The IMAP folder the reports arrive in.")
    every_minutes: int = Field(
        0,
        ge=0,
        le=7 * 24 * 60,
        description="`newsletter scheduler` reads the mailbox this often; 0: only when "
        "`newsletter bounces` is run.",
    )

    @field_validator("imap_host")
    @classmethod
    def _one_source(cls, value: str, info: ValidationInfo) -> str:
        if value.strip() and info.data.get("mailbox"):
            raise ValueError("set mailbox or imap_host, not both")
        return value.strip()
