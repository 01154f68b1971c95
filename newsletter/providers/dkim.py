"""DKIM signing (RFC 6376) with dkimpy, for the messages we send ourselves (SMTP, the outbox).

The signed headers are those Gmail wants for one-click unsubscribe as well as the usual ones:
From, To, Subject, Date, Message-ID, List-Unsubscribe, List-Unsubscribe-Post. Each reader's
copy differs in its body (their name, their unsubscribe link), so each is signed: relaxed
canonicalization, rsa-sha256. `DKIMSigner.sign(message)` returns the `DKIM-Signature:` header
line to put in front of the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.exceptions import ConfigError
from newsletter.settings import Settings

KEY_VARIABLE = "DKIM_PRIVATE_KEY"

SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
)


@dataclass(frozen=True, kw_only=True)
class DKIMSigner:
    """Signs as `selector._domainkey.domain` with an RSA private key (PEM)."""

    selector: str
    domain: str
    private_key: bytes = field(repr=False)

    @classmethod
    def load(cls, *, selector: str, domain: str, key_file: str, key_pem: str) -> DKIMSigner:
        """The key from `DKIM_PRIVATE_KEY` (`key_pem`) or the file `[dkim] private_key_file`."""
        if key_pem:
            key = key_pem.encode("ascii", "replace")
        elif key_file:
            try:
                key = Path(key_file).expanduser().read_bytes()
            except OSError as exc:
                raise ConfigError(
                    f"[dkim] private_key_file: cannot read {key_file}: {exc.strerror}"
                ) from None
        else:
            raise ConfigError("[dkim] needs private_key_file or DKIM_PRIVATE_KEY")
        signer = cls(selector=selector, domain=domain, private_key=key)
        signer.sign(b"From: a@b\r\nTo: c@d\r\nSubject: t\r\n\r\nx\r\n")  # a bad key fails here
        return signer

    def sign(self, message: bytes) -> bytes:
        import dkim

        try:
            return bytes(
                dkim.sign(
                    message,
                    self.selector.encode("ascii"),
                    self.domain.encode("ascii"),
                    self.private_key,
                    canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=list(SIGNED_HEADERS),
                    linesep=b"\r\n",
                )
            )
        except dkim.KeyFormatError:
            raise ConfigError(
                "[dkim]: the private key is not an RSA private key in PEM form"
            ) from None


def key_from_env(env: Mapping[str, str]) -> str:
    """`DKIM_PRIVATE_KEY` as a PEM (its line breaks real or written `\\n`); "" when unset:
    the key the signer and the doctor both take before [dkim] private_key_file."""
    return (env.get(KEY_VARIABLE) or "").strip().replace("\\n", "\n")


def signer_for(settings: Settings) -> DKIMSigner | None:
    """The signer `[dkim]` describes (`d=` the From domain unless `domain` is set), the key
    from `DKIM_PRIVATE_KEY` (a PEM, its line breaks real or written `\\n`) or the file;
    None without a selector (the provider signs, or nobody does)."""
    import os

    dkim = settings.dkim
    if not dkim.selector:
        return None
    pem = key_from_env(os.environ)
    return DKIMSigner.load(
        selector=dkim.selector,
        domain=dkim.domain or settings.from_email.rpartition("@")[2].lower(),
        key_file=str(dkim.private_key_file or ""),
        key_pem=pem,
    )
