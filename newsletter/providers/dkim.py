"""DKIM signing (RFC 6376), for the messages we send ourselves (SMTP, the outbox).

The signed headers are those Gmail wants for one-click unsubscribe as well as the usual ones:
From, To, Subject, Date, Message-ID, List-Unsubscribe, List-Unsubscribe-Post; relaxed/relaxed
canonicalization, rsa-sha256. `DKIMSigner.sign(message)` returns the `DKIM-Signature:` header
line to put in front of the message.

Signed once per issue as far as the standard allows. A signature covers the hash of the
body and the signed headers of *that* message, so each reader's copy needs its own RSA
signature: their body carries their own unsubscribe link (and name), their `To`, Message-ID
and List-Unsubscribe differ. What is the same for every reader is done once: the key is
parsed once (into OpenSSL's form, which signs some twenty times faster than dkimpy's
pure-Python RSA), the signature's fixed tags are laid out once, the canonical form of each
header line that repeats (From, Subject, List-Unsubscribe-Post; the Date for a second) is
computed once, and a body equal to the last one signed (a message without per-reader values)
keeps its body hash. Per reader only the rest: their headers' canonical form, their body's
hash, one RSA signature. dkimpy does the standard's parts (header parsing and selection,
canonicalization, folding) and verifies what we sign in the tests.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
_INCLUDE = tuple(h.lower() for h in SIGNED_HEADERS)
_HEADER_CACHE_SIZE = 64  # repeating lines of an issue; the rest come and go


class DKIMSigner:
    """Signs as `selector._domainkey.domain` with an RSA private key (PEM)."""

    def __init__(self, *, selector: str, domain: str, private_key: bytes) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.selector = selector
        self.domain = domain
        try:
            key = serialization.load_pem_private_key(private_key, password=None)
        except (ValueError, TypeError):
            key = None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError("[dkim]: the private key is not an RSA private key in PEM form")
        self._key: Any = key
        d = domain.encode("ascii")
        self._tags = (
            b"v=1; a=rsa-sha256; c=relaxed/relaxed; d=" + d + b"; i=@" + d + b"; q=dns/txt; s="
        ) + selector.encode("ascii")
        self._h = b" : ".join(_INCLUDE)
        self._headers: dict[
            bytes, tuple[bytes, bytes]
        ] = {}  # raw header line -> its canonical form
        self._last_body: tuple[bytes, bytes] = (b"", b"")  # (body, its body hash)

    def __repr__(self) -> str:  # never shows the key
        return f"DKIMSigner(selector={self.selector!r}, domain={self.domain!r})"

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
        return cls(selector=selector, domain=domain, private_key=key)

    def sign(self, message: bytes) -> bytes:
        """The `DKIM-Signature: ...\\r\\n` line for `message` (CRLF or LF line ends)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        from dkim import RE_BTAG, fold, rfc822_parse, select_headers

        end = message.find(b"\r\n\r\n")
        if end < 0 or message.count(b"\n", 0, end) != message.count(b"\r\n", 0, end):
            headers, body = rfc822_parse(message)  # not laid out as ours: the general path
            canonical = [self._canonical(name, value) for name, value in headers]
        else:
            head, body = message[: end + 2], message[end + 4 :]
            canonical = self._head(head)
        signed = select_headers(canonical, _INCLUDE)
        fields = [
            self._tags,
            b"t=" + str(int(time.time())).encode("ascii"),
            b"h=" + self._h,
            b"bh=" + self._body_hash(body),
        ]
        # As dkimpy lays it out: b= folded onto a line of its own, so that putting the
        # signature in changes nothing before it.
        unsigned = fold(b"; ".join([*fields, b"b=" + b"0" * 60]), namelen=14)
        unsigned = RE_BTAG.sub(rb"\1", unsigned)
        data = b"".join(name + b":" + value for name, value in signed)
        data += b"dkim-signature:" + _relaxed_value(b" " + unsigned).rstrip()
        signature = self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        value = b"; ".join([*fields, b"b=" + base64.b64encode(signature)]) + b"\r\n"
        return b"DKIM-Signature: " + fold(value, namelen=14)

    def _head(self, head: bytes) -> list[tuple[bytes, bytes]]:
        """The header lines of `head` in canonical form, repeating ones from the cache."""
        from dkim import rfc822_parse

        cache = self._headers
        out = []
        for line in re.split(rb"\r\n(?![ \t])", head[:-2]):
            known = cache.get(line)
            if known is None:
                parsed, _ = rfc822_parse(line + b"\r\n\r\n")
                if not parsed:  # an mbox "From " line: not a header field
                    continue
                if len(cache) >= _HEADER_CACHE_SIZE:
                    cache.clear()
                known = cache[line] = self._canonical(*parsed[0])
            out.append(known)
        return out

    @staticmethod
    def _canonical(name: bytes, value: bytes) -> tuple[bytes, bytes]:
        return name.lower().rstrip(), _relaxed_value(value) + b"\r\n"

    def _body_hash(self, body: bytes) -> bytes:
        last, digest = self._last_body
        if body == last and digest:
            return digest
        digest = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
        self._last_body = (body, digest)
        return digest


def _relaxed_value(value: bytes) -> bytes:
    """A header value in relaxed form: unfolded, runs of spaces one space, trimmed."""
    return re.sub(rb"[\t ]+", b" ", re.sub(rb"\r?\n", b"", value)).strip()


def relaxed_body(body: bytes) -> bytes:
    """The body in relaxed form (RFC 6376 3.4.4), as dkimpy computes it. Our messages are
    usually in that form already (no trailing spaces, no runs of spaces, one CRLF at the
    end): checked first, that costs three scans and no copy."""
    from dkim.canonicalization import correct_empty_body, strip_trailing_lines

    if b"\n" in body and body.count(b"\n") != body.count(b"\r\n"):
        body = re.sub(rb"\r?\n", b"\r\n", body)  # as dkimpy's parser hands it over
    if (
        body.endswith(b"\r\n")
        and body != b"\r\n"
        and not body.endswith(b"\r\n\r\n")
        and b"\t" not in body
        and b"  " not in body
        and b" \r\n" not in body
    ):
        return body
    # Byte replacements rather than dkimpy's regular expressions, which try a match at each
    # space of the body (a millisecond for an issue's indented HTML): tabs are spaces, each
    # run of spaces one space, then a space before a line end goes.
    if b"\t" in body:
        body = body.replace(b"\t", b" ")
    while b"  " in body:
        body = body.replace(b"  ", b" ")
    body = body.replace(b" \r\n", b"\r\n")
    return bytes(correct_empty_body(strip_trailing_lines(body)))


def key_from_env(env: Mapping[str, str]) -> str:
    """`DKIM_PRIVATE_KEY` as a PEM (its line breaks real or written `\\n`); "" when unset:
    the key the signer and the doctor both take before [dkim] private_key_file."""
    return (env.get(KEY_VARIABLE) or "").strip().replace("\\n", "\n")


def signer_for(settings: Settings) -> DKIMSigner | None:
    """The signer `[dkim]` describes (`d=` the From domain unless `domain` is set), the key
    from `DKIM_PRIVATE_KEY` (a PEM, its line breaks real or written `\\n`) or the file;
    None without a selector (the provider signs, or nobody does)."""
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
