"""An email laid out once as bytes with slots, filled per recipient: the outbox writes each
reader's copy of an issue from it, the SMTP provider sends it.

Building and serialising an `email.message.EmailMessage` per recipient costs milliseconds.
Instead the MIME structure of an issue is built once as bytes with slots (`MessageTemplate`),
and per recipient only the `To` header, the Message-ID, the Date and the placeholders are
filled in. The parts are 8bit (7bit when all ASCII) with lines of at most 998 bytes, where
plain substitution is safe; a part whose lines would be longer is written base64, as the
`email` package would. The output is laid out as `email` lays it out.

Addresses with a non-ASCII local part or domain are written SMTPUTF8-style (RFC 6532: the
address raw in UTF-8 in the `To` header); an address that cannot be written at all raises
`UnwritableAddress` for that recipient alone.
"""

from __future__ import annotations

import binascii
import functools
import re
import secrets
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.errors import MessageError
from email.headerregistry import Address
from email.policy import SMTP
from email.utils import format_datetime

from newsletter.exceptions import UnwritableAddress
from newsletter.records import Recipient, RenderedIssue
from newsletter.render import header_safe, substitution_values
from newsletter.settings import Settings

# Long URL headers (List-Unsubscribe) stay on one line: folding them right after the colon
# trips some parsers. 998 is the hard limit of RFC 5322.
MAX_LINE = 998
EMAIL_POLICY = SMTP.clone(max_line_length=MAX_LINE)
CRLF = b"\r\n"

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
# A display name that can go out as a phrase of atoms, unquoted.
_ATOMS = re.compile(rf"[{_ATEXT}]+(?: [{_ATEXT}]+)*\Z")
# An address whose parts are dot-atoms: ASCII, or with UTF-8 characters (RFC 6532).
_ASCII_ADDRESS = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z")
_UTF8_ADDRESS = re.compile(
    rf"[\u0080-\U0010ffff{_ATEXT}]+(?:\.[\u0080-\U0010ffff{_ATEXT}]+)*"
    r"@[A-Za-z0-9\u0080-\U0010ffff-]+(?:\.[A-Za-z0-9\u0080-\U0010ffff-]+)*\Z"
)
_SEVEN_BIT = b"Content-Transfer-Encoding: 7bit\r\n"
_EIGHT_BIT = b"Content-Transfer-Encoding: 8bit\r\n"
# UTF-8 bytes per RFC 2047 encoded word: 45 bytes make 60 base64 characters, 72 in all.
_WORD_BYTES = 45


def _fold(name: str, value: object) -> bytes:
    """One header line (or several, folded) as the `email` package writes it: the slow,
    general path for the constant headers and for unusual recipients."""
    stored = EMAIL_POLICY.header_store_parse(name, value)
    return EMAIL_POLICY.fold_binary(*stored)


def _encoded_words(text: str) -> str:
    """`text` as RFC 2047 base64 encoded words, split between characters."""
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in text:
        width = len(char.encode("utf-8"))
        if size + width > _WORD_BYTES:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(char)
        size += width
    words.append("".join(chunk))
    encoded = [
        "=?utf-8?b?" + binascii.b2a_base64(w.encode("utf-8"), newline=False).decode() + "?="
        for w in words
    ]
    # Readers ignore the whitespace between adjacent encoded words (RFC 2047 section 6.2;
    # Python's address parser keeps one space there, as it did with `email`'s own output).
    if len(encoded) * 76 < MAX_LINE // 2:
        return " ".join(encoded)
    return "\r\n ".join(encoded)


def _display_name(name: str) -> str:
    """The display name as a phrase: atoms as they are, other ASCII quoted, anything else
    (or text that looks like an encoded word) as encoded words."""
    if name.isascii() and name.isprintable() and "=?" not in name:
        if _ATOMS.match(name):
            return name
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _encoded_words(name)


def to_header(email: str, name: str) -> bytes:
    """The `To` header line for one recipient. Raises UnwritableAddress."""
    name = header_safe(name)
    if _ASCII_ADDRESS.match(email):
        line = f"To: {_display_name(name)} <{email}>" if name else f"To: {email}"
        if max(map(len, line.split("\r\n"))) <= MAX_LINE:
            return line.encode("ascii") + CRLF
    elif _UTF8_ADDRESS.match(email) and email.isprintable():
        # RFC 6532: the address goes out in UTF-8 (the file needs SMTPUTF8 to be relayed);
        # the display name stays RFC 2047 so that readers without UTF-8 headers decode it.
        line = f"To: {_display_name(name)} <{email}>" if name else f"To: {email}"
        encoded = line.encode("utf-8")
        if max(map(len, encoded.split(CRLF))) <= MAX_LINE:
            return encoded + CRLF
        raise UnwritableAddress("the address and name are too long for one header line")
    try:
        return _fold("To", Address(display_name=name, addr_spec=email))
    except (ValueError, IndexError, TypeError, MessageError) as exc:
        raise UnwritableAddress(f"the address cannot be written in an email header: {exc}") from exc


class _Dates:
    """The Date header, formatted once per second rather than once per message."""

    def __init__(self) -> None:
        self.second = -1
        self.line = b""

    def line_now(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            stamp = format_datetime(datetime.fromtimestamp(now, UTC))
            self.second, self.line = now, f"Date: {stamp}".encode("ascii") + CRLF
        return self.line


@dataclass(frozen=True, eq=False)
class _Part:
    """One text part as byte segments between placeholders, ready to join per recipient."""

    head: bytes  # Content-Type line; the Content-Transfer-Encoding follows
    tail_headers: bytes  # headers after the transfer encoding, and the blank line
    segments: tuple[bytes, ...]  # len(slots) + 1 pieces of body around the slots
    slots: tuple[str, ...]  # placeholder names, in order
    ascii: bool
    longest_static: int  # the longest line without a placeholder
    slotted_lines: tuple[tuple[int, tuple[str, ...]], ...]  # (static bytes, placeholders)

    @classmethod
    def make(cls, subtype: str, body: str, placeholders: Iterable[str], extra: bytes) -> _Part:
        # Lines end in CRLF, as the `email` package writes an 8bit part.
        lines = body.encode("utf-8").splitlines()
        names = sorted(set(placeholders), key=len, reverse=True)
        # With no placeholders, a pattern that never matches (an empty one matches everywhere).
        alternatives = b"|".join(re.escape(n.encode("ascii")) for n in names) or rb"(?!)"
        pattern = re.compile(alternatives)
        longest, slotted = 0, []
        for line in lines:
            found = [m.decode("ascii") for m in pattern.findall(line)]
            if found:
                static = len(line) - sum(len(n) for n in found)
                slotted.append((static, tuple(found)))
            else:
                longest = max(longest, len(line))
        data = CRLF.join(lines) + CRLF
        pieces = pattern.split(data)
        slots = tuple(m.decode("ascii") for m in pattern.findall(data))
        return cls(
            head=f'Content-Type: text/{subtype}; charset="utf-8"'.encode("ascii") + CRLF,
            tail_headers=extra + CRLF,
            segments=tuple(pieces),
            slots=slots,
            ascii=data.isascii(),
            longest_static=longest,
            slotted_lines=tuple(slotted),
        )

    @functools.cached_property
    def room(self) -> tuple[int, int]:
        """(bytes free on the fullest line with a placeholder, most placeholders on a line)."""
        if not self.slotted_lines:
            return MAX_LINE, 1
        free = min(MAX_LINE - static for static, _ in self.slotted_lines)
        return free, max(len(found) for _, found in self.slotted_lines)

    def render(
        self, values: dict[str, bytes], ascii_values: bool, clash: bool, out: list[bytes]
    ) -> None:
        """Append headers and body of this part for one recipient's values to `out`.
        `clash`: a value holds the boundary (only base64 is then safe)."""
        free, most = self.room
        longest = self.longest_static
        if max(map(len, values.values()), default=0) * most > free:
            for static, found in self.slotted_lines:
                longest = max(longest, static + sum(len(values[n]) for n in found))
        if longest > MAX_LINE or clash:
            # As `email` does for long lines; base64 can never contain the boundary.
            body = b"".join(self._pieces(values))
            data = binascii.b2a_base64(body, newline=False)
            width = MAX_LINE // 4 * 4
            out += (self.head, b"Content-Transfer-Encoding: base64\r\n", self.tail_headers)
            out += (data[i : i + width] + CRLF for i in range(0, len(data), width))
            return
        seven_bit = ascii_values and self.ascii
        out += (self.head, _SEVEN_BIT if seven_bit else _EIGHT_BIT, self.tail_headers)
        out += self._pieces(values)

    def _pieces(self, values: dict[str, bytes]) -> list[bytes]:
        pieces = [self.segments[0]]
        for slot, segment in zip(self.slots, self.segments[1:], strict=True):
            pieces.append(values[slot])
            pieces.append(segment)
        return pieces


class MessageTemplate:
    """One message laid out once as bytes; `fill` adds a recipient's headers and values."""

    def __init__(
        self,
        settings: Settings,
        subject: str,
        text: str,
        html: str,
        placeholders: Iterable[str] = (),
        list_unsubscribe: bool = False,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        placeholders = tuple(placeholders)
        self.list_unsubscribe = list_unsubscribe
        self.boundary = self._boundary((text + html).encode("utf-8"))
        sender = Address(
            display_name=header_safe(settings.from_name), addr_spec=settings.from_email
        )
        self.from_line = _fold("From", sender)
        self.subject_line = _fold("Subject", header_safe(subject))
        domain = settings.from_email.rpartition("@")[2] or "localhost"
        self.id_domain = domain if _ASCII_ADDRESS.match(f"x@{domain}") else "localhost"
        after = b""
        if list_unsubscribe:
            after += b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        for name, value in (extra_headers or {}).items():
            after += _fold(name, header_safe(value))
        after += b"MIME-Version: 1.0\r\n"
        after += b'Content-Type: multipart/alternative; boundary="' + self.boundary + b'"\r\n'
        after += CRLF
        self.after_unsubscribe = after
        self.text = _Part.make("plain", text, placeholders, b"")
        self.html = _Part.make("html", html, placeholders, b"MIME-Version: 1.0\r\n")
        self.dates = _Dates()
        self.marker = b"--" + self.boundary
        # The fast path of `fill`: the body after the headers as one run of byte segments
        # between the slots, for ASCII values and for others (which differ only in the parts'
        # transfer encodings), used when no value is long enough to push a line over the
        # limit and none holds the boundary, so each part is what `_Part.render` would give.
        parts = (self.text, self.html)
        fits = all(part.longest_static <= MAX_LINE for part in parts)
        self.fast_limit = min(part.room[0] // part.room[1] for part in parts) if fits else -1
        self.flat = {ascii_values: self._flat(ascii_values) for ascii_values in (True, False)}

    def _flat(self, ascii_values: bool) -> tuple[tuple[bytes, ...], tuple[str, ...]]:
        """(segments, slots): the body after the headers, `len(slots) + 1` segments."""
        segments: list[bytes] = [self.after_unsubscribe + self.marker + CRLF]
        slots: list[str] = []
        for part, after in ((self.text, CRLF + self.marker + CRLF), (self.html, b"")):
            seven_bit = ascii_values and part.ascii
            segments[-1] += part.head + (_SEVEN_BIT if seven_bit else _EIGHT_BIT)
            segments[-1] += part.tail_headers + part.segments[0]
            for slot, segment in zip(part.slots, part.segments[1:], strict=True):
                slots.append(slot)
                segments.append(segment)
            segments[-1] += after
        segments[-1] += CRLF + self.marker + b"--\r\n"
        return tuple(segments), tuple(slots)

    @staticmethod
    def _boundary(content: bytes) -> bytes:
        while True:  # the `email` package's form, checked against the content
            token = secrets.randbelow(sys.maxsize)
            boundary = f"==============={token:019d}==".encode("ascii")
            if boundary not in content:
                return boundary

    def message_id(self) -> str:
        return f"<{secrets.token_hex(16)}@{self.id_domain}>"

    def message_ids(self, count: int) -> list[str]:
        """`count` ids as `message_id` makes them, from one read of the system's random
        source rather than one per message."""
        pool = secrets.token_bytes(16 * count).hex()
        domain = self.id_domain
        return [f"<{pool[i : i + 32]}@{domain}>" for i in range(0, 32 * count, 32)]

    def fill(
        self,
        to_line: bytes,
        message_id: str,
        values: dict[str, bytes],
        unsubscribe: str | None = None,
    ) -> list[bytes]:
        """The complete message for one recipient, as pieces to write in one `writev`.
        `values` fill the placeholders, already UTF-8 (the parts are 8bit, or base64 when
        a line would be too long, so no other encoding applies)."""
        marker = self.marker
        out = [self.from_line, to_line, self.subject_line, self.dates.line_now()]
        out.append(f"Message-ID: {message_id}\r\n".encode("ascii"))
        if self.list_unsubscribe:
            line = f"List-Unsubscribe: <{header_safe(unsubscribe or '')}>"
            if len(line) <= MAX_LINE and line.isascii():
                out.append(line.encode("ascii") + CRLF)
            else:
                out.append(_fold("List-Unsubscribe", line.partition(": ")[2]))
        ascii_values = all(v.isascii() for v in values.values())
        clash = any(self.boundary in v for v in values.values())
        if not clash and max(map(len, values.values()), default=0) <= self.fast_limit:
            segments, slots = self.flat[ascii_values]
            out.append(segments[0])
            for slot, segment in zip(slots, segments[1:], strict=True):
                out += (values[slot], segment)
            return out
        out += (self.after_unsubscribe, marker, CRLF)
        self.text.render(values, ascii_values, clash, out)
        out += (CRLF, marker, CRLF)
        self.html.render(values, ascii_values, clash, out)
        out += (CRLF, marker, b"--\r\n")
        return out

    def for_recipient(
        self, rendered: RenderedIssue, recipient: Recipient, unsubscribe: str, message_id: str
    ) -> list[bytes]:
        """One reader's copy of an issue (the outbox writes it, SMTP sends it): their `To`,
        name and unsubscribe link in the slots. Raises `UnwritableAddress`."""
        to_line = to_header(recipient.email, recipient.name)
        values = {
            key: value.encode("utf-8")
            for key, value in substitution_values(rendered, recipient.name, unsubscribe).items()
        }
        return self.fill(to_line, message_id, values, unsubscribe)


def issue_template(settings: Settings, rendered: RenderedIssue, issue_id: int) -> MessageTemplate:
    """The template of one issue: placeholders for the name and the unsubscribe link."""
    ph = rendered.placeholders
    return MessageTemplate(
        settings,
        rendered.subject,
        rendered.text,
        rendered.html,
        placeholders=(ph.name_html, ph.name_text, ph.unsubscribe_url),
        list_unsubscribe=True,
        extra_headers={"X-Newsletter-Issue": str(issue_id)},
    )
