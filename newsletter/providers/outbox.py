"""The embedded default provider: one RFC 5322 .eml file per recipient under `outbox/`.

It needs no account, and what it writes is exactly what a mail server would receive, so an
editor (or a test) can open the files in any mail client or parse them with `email`.

Speed: building and serialising an `email.message.EmailMessage` per recipient costs
milliseconds. Instead the MIME structure of an issue is built once as bytes with slots
(`MessageTemplate`), and per recipient only the `To` header, the Message-ID, the Date and the
placeholders are filled in. The parts are 8bit (7bit when all ASCII) with lines of at most
998 bytes, where plain substitution is safe; a part whose lines would be longer is written
base64, as the `email` package would. The output is laid out as `email` lays it out.

Addresses with a non-ASCII local part or domain are written SMTPUTF8-style (RFC 6532: the
address raw in UTF-8 in the `To` header); an address that cannot be written at all is
rejected for that recipient alone (`Accepted.rejected`), so one subscriber never stalls a send.
"""

from __future__ import annotations

import binascii
import ctypes
import ctypes.util
import functools
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.errors import MessageError
from email.headerregistry import Address
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path

from newsletter.exceptions import Rejected, TransientError, UnwritableAddress
from newsletter.processes import process_gone
from newsletter.providers import Accepted, Message, OutgoingBatch
from newsletter.records import Recipient, RenderedIssue
from newsletter.render import header_safe, substitution_values
from newsletter.settings import Settings

# Long URL headers (List-Unsubscribe) stay on one line: folding them right after the colon
# trips some parsers. 998 is the hard limit of RFC 5322.
MAX_LINE = 998
EMAIL_POLICY = SMTP.clone(max_line_length=MAX_LINE)
CRLF = b"\r\n"
FILE_MODE = 0o600  # the files hold each subscriber's unsubscribe token
FOLDER_MODE = 0o700

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
        out += (self.after_unsubscribe, marker, CRLF)
        ascii_values = all(v.isascii() for v in values.values())
        clash = any(self.boundary in v for v in values.values())
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


def _load_syncfs():
    """Linux syncfs(2): flushes one file system, once per batch instead of once per file."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16


def _write_file(dir_fd: int, name: str, pieces: list[bytes]) -> None:
    """Create (or truncate) `name` in the open folder `dir_fd`, 0600, and write all of
    `pieces`. Names relative to the folder spare the kernel a path walk per file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    fd = os.open(name, flags, FILE_MODE, dir_fd=dir_fd)
    try:
        written = os.writev(fd, pieces) if len(pieces) <= _IOV_MAX else 0
        view = memoryview(b"".join(pieces))[written:]
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _make_folder(folder: Path) -> None:
    """Create the folder (and the outbox above it) private to the owner."""
    if not folder.parent.exists():
        folder.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    folder.mkdir(mode=FOLDER_MODE, exist_ok=True)


def _open_folder(folder: Path) -> int:
    """The folder, created if need be, open for the `*at` calls of one batch."""
    _make_folder(folder)
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _durable(dir_fd: int, written: list[tuple[str, str]]) -> None:
    """Move the written temporary files into place so that a file exists only once it is
    complete, and the batch is on disk before the delivery log says it was sent: the data
    is flushed (one syncfs for the batch), then renamed, then the folder is flushed."""
    if not written:
        return
    if _SYNCFS is None or _SYNCFS(dir_fd) != 0:
        for temporary, _ in written:  # no syncfs here: one fsync per file
            fd = os.open(temporary, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for temporary, target in written:
        # A reader never sees half a message.
        os.replace(temporary, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.fsync(dir_fd)


def _discard(dir_fd: int | None, written: list[tuple[str, str]]) -> None:
    """Nothing of a failed batch is left half-done: its temporary files go."""
    if dir_fd is None:
        return
    for temporary, _ in written:
        try:
            os.unlink(temporary, dir_fd=dir_fd)
        except FileNotFoundError:
            pass


def _dead_writer(temporary: str) -> bool:
    """Whether the process that was writing `.NAME.PID.tmp` is gone."""
    pid = temporary.rsplit(".", 2)[-2]
    return pid.isdigit() and process_gone(int(pid))


class OutboxProvider:
    name = "outbox"
    max_batch = 1000

    def __init__(
        self,
        settings: Settings,
        path: Path | None = None,
        *,
        sign: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.settings = settings
        self.path = path or settings.outbox_path
        self._sign = sign  # [dkim]: the DKIM-Signature header line for a message
        self._template: tuple[tuple[int, str], MessageTemplate] | None = None

    def _issue_template(self, batch: OutgoingBatch) -> MessageTemplate:
        key = (batch.issue_id, batch.rendered.placeholder_nonce)
        if self._template is None or self._template[0] != key:
            self._template = (key, issue_template(self.settings, batch.rendered, batch.issue_id))
        return self._template[1]

    def send(self, batch: OutgoingBatch) -> Accepted:
        folder = self.path / f"issue-{batch.issue_id}"
        template = self._issue_template(batch)
        rendered = batch.rendered
        ids: dict[int, str] = {}
        rejected: dict[int, str] = {}
        written: list[tuple[str, str]] = []
        suffix = f".{os.getpid()}.tmp"
        message_ids = template.message_ids(len(batch.recipients))
        batch.ready()  # the last check for a stop before anything is written
        dir_fd = None
        try:
            dir_fd = _open_folder(folder)
            for recipient, unsubscribe, message_id in zip(
                batch.recipients, batch.unsubscribe_urls, message_ids, strict=True
            ):
                try:
                    pieces = template.for_recipient(rendered, recipient, unsubscribe, message_id)
                except UnwritableAddress as exc:
                    rejected[recipient.subscriber_id] = f"{recipient.email!r}: {exc}"
                    continue
                if self._sign is not None:
                    pieces = [self._sign(b"".join(pieces)), *pieces]
                name = f"{recipient.subscriber_id:08d}.eml"
                temporary = f".{name}{suffix}"
                _write_file(dir_fd, temporary, pieces)
                written.append((temporary, name))
                ids[recipient.subscriber_id] = message_id
            _durable(dir_fd, written)
        except OSError as exc:
            _discard(dir_fd, written)
            raise TransientError(f"cannot write to the outbox {folder}: {exc.strerror}") from exc
        except BaseException:
            _discard(dir_fd, written)
            raise
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        return Accepted(ids, rejected=rejected)

    def settle_uncertain(self, issue_id: int, subscriber_ids: Iterable[int]) -> dict[int, bool]:
        """Whether each subscriber's file of this issue exists: files are moved into place
        only once complete, so one that exists was delivered and one missing was not.
        Temporary files a killed sender left behind are removed."""
        folder = self.path / f"issue-{issue_id}"
        try:
            names = set(os.listdir(folder))
        except FileNotFoundError:
            names = set()
        for name in names:
            if name.startswith(".") and name.endswith(".tmp") and _dead_writer(name):
                (folder / name).unlink(missing_ok=True)
        return {sid: f"{sid:08d}.eml" in names for sid in subscriber_ids}

    def send_message(self, message: Message) -> str:
        folder = self.path / message.category
        template = MessageTemplate(self.settings, message.subject, message.text, message.html)
        try:
            to_line = to_header(message.to_email, message.to_name)
        except UnwritableAddress as exc:
            raise Rejected(f"cannot write to {message.to_email!r}: {exc}") from exc
        message_id = template.message_id()
        pieces = template.fill(to_line, message_id, {})
        target = f"{message.key}.eml"
        written = [(f".{target}.{os.getpid()}.tmp", target)]
        dir_fd = None
        try:
            dir_fd = _open_folder(folder)
            _write_file(dir_fd, written[0][0], pieces)
            _durable(dir_fd, written)
        except OSError as exc:
            _discard(dir_fd, written)
            raise TransientError(f"cannot write to the outbox {folder}: {exc.strerror}") from exc
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        return message_id
