"""The SendGrid v3 Mail Send body of one batch, encoded as ASCII-only JSON text.

Why not `json.dumps` of a dict: a 1,000-recipient request is one personalization per reader,
and building a dict for each (then encoding it) costs more than posting the request. The
part every request of an issue shares (content, sender, subject, categories) is encoded once
per issue; the personalizations are laid out by columns: each field of the batch (addresses,
names, their HTML-escaped form, unsubscribe links, ids) is checked and escaped for the whole
batch at once, and the columns are interleaved with the constant JSON between them in one
`str.join`, so the common reader costs no Python code of their own.

A reader the columns cannot carry as they are (a name with a control character, a `;`, `,`
or `"`, stray spaces or none at all; an address that is not plain ASCII) goes through
`_general`, the general path, which says exactly what SendGrid is sent for anyone;
a batch with a duplicate address, an unusual address or an oversized value goes through it
whole. Both paths give the same text for the same reader (tests/test_sendgrid_body.py).
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from json.encoder import encode_basestring_ascii as _quoted
from operator import contains
from typing import Any

from newsletter.exceptions import ConfigError
from newsletter.providers import OutgoingBatch
from newsletter.records import Placeholders, Recipient
from newsletter.render import header_safe, substitution_values
from newsletter.settings import Settings

MAX_PERSONALIZATIONS = 1000
MAX_SUBSTITUTION_BYTES = 10_000
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)
_DISPLAY_NAME_FORBIDDEN = str.maketrans({";": " ", ",": " ", '"': " "})
# Every personalization carries the same two headers; neither is one SendGrid reserves.
_UNSUBSCRIBE_POST = '"List-Unsubscribe-Post":"List-Unsubscribe=One-Click"'
assert not {"list-unsubscribe", "list-unsubscribe-post"} & RESERVED_HEADERS
# In names joined by "\n" (printable names hold none): a name that `display_name` or
# `substitution_values` would change, or an empty one. Printable text holds no whitespace but
# the ASCII space, so these are the only changes either makes to a printable name.
_ODD_NAME = re.compile(r'[;,"]|^ | $|  |^$', re.MULTILINE)
_ODD_TEXT = (";", ",", '"', "  ", "\n ", " \n", "\n\n")  # the same, found without a regex
# html.escape(quote=True) would turn a name holding these into something else.
# The bytes JSON-escaping leaves as they are: printable ASCII but the quote and backslash.
_JSON_PLAIN = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')
_HTML_SPECIAL = re.compile(r"[&<>'\"]")


def validate_categories(categories: tuple[str, ...]) -> tuple[str, ...]:
    if len(categories) > MAX_CATEGORIES:
        raise ConfigError(f"sendgrid.categories: at most {MAX_CATEGORIES}, got {len(categories)}")
    seen = set()
    for category in categories:
        if not category or len(category) > MAX_CATEGORY_LENGTH or not category.isascii():
            raise ConfigError(
                f"sendgrid.categories: {category!r} must be 1-{MAX_CATEGORY_LENGTH} ASCII characters"
            )
        if category.lower() in seen:
            raise ConfigError(f"sendgrid.categories: {category!r} is listed twice")
        seen.add(category.lower())
    return categories


def display_name(name: str) -> str:
    """SendGrid refuses unquoted display names holding ';' or ','; quotes are not ours to add."""
    if not name.isprintable():
        name = header_safe(name)
    if ";" in name or "," in name or '"' in name:
        name = name.translate(_DISPLAY_NAME_FORBIDDEN)
    return " ".join(name.split())


def sendable_address(email: str) -> tuple[str, str | None]:
    """The address as SendGrid takes it, or why it cannot: its contract types addresses as
    JSON Schema `format: email` (RFC 5321, ASCII) and it has no SMTPUTF8, so a non-ASCII
    local part cannot go out through SendGrid; a non-ASCII domain goes out as IDNA."""
    if email.isascii() and email.isprintable() and " " not in email:
        if "@" in email:
            return email, None  # the common case, in three cheap tests
        return email, "not an email address"
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        return email, "not an email address"
    if not email.isprintable() or any(c.isspace() for c in email):
        return email, "the address holds spaces or control characters"
    if not local.isascii():
        return email, (
            "SendGrid cannot send to an address with a non-ASCII local part "
            "(it does not support SMTPUTF8)"
        )
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}", None
    except UnicodeError:
        return email, "the domain cannot be written as an internationalised (IDNA) name"


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


@dataclass(frozen=True)
class BuiltRequest:
    """A v3 Mail Send body, encoded: ASCII-only JSON text, so its length is its size in bytes."""

    encoded: str
    skipped: dict[int, str]  # subscriber id -> why SendGrid would refuse them
    personalizations: int

    @property
    def body(self) -> dict[str, Any]:
        """The body decoded again (tests and tools: the sender never needs it)."""
        return json.loads(self.encoded)

    @property
    def size(self) -> int:
        return len(self.encoded)


def _kv_bytes(mapping: dict[str, str]) -> int:
    """UTF-8 bytes of the keys and values (the cheap bound, characters x 4, is checked first)."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in mapping.items())


@dataclass(frozen=True)
class _Keys:
    """One batch's constants: the placeholders as JSON keys and the custom_args numbers."""

    html: str
    text: str
    unsubscribe: str
    numbers: str  # "issue_id":"1","batch":"7"
    length: int  # characters of the three placeholder names

    @classmethod
    def of(cls, ph: Placeholders, batch: OutgoingBatch) -> _Keys:
        return cls(
            html=_quoted(ph.name_html),
            text=_quoted(ph.name_text),
            unsubscribe=_quoted(ph.unsubscribe_url),
            # custom_args are three short numbers: far below SendGrid's 10,000-byte limit.
            numbers=f'"issue_id":"{int(batch.issue_id)}","batch":"{int(batch.batch)}"',
            length=len(ph.name_html) + len(ph.name_text) + len(ph.unsubscribe_url),
        )


def _general(
    batch: OutgoingBatch,
    keys: _Keys,
    recipient: Recipient,
    unsubscribe: str,
    seen: set[str],
    skipped: dict[int, str],
) -> str | None:
    """One reader's personalization by the general path, or None (their reason put in
    `skipped`) when SendGrid would refuse them: any name, any address."""
    email, refused = sendable_address(recipient.email)
    if refused:
        skipped[recipient.subscriber_id] = refused
        return None
    key = email.lower()
    if key in seen:
        skipped[recipient.subscriber_id] = "duplicate address in the request"
        return None
    rendered = batch.rendered
    ph = rendered.placeholders
    values = substitution_values(rendered, recipient.name, unsubscribe)
    shown_html, shown, url = values[ph.name_html], values[ph.name_text], values[ph.unsubscribe_url]
    chars = keys.length + len(shown_html) + len(shown) + len(url)
    if chars * 4 > MAX_SUBSTITUTION_BYTES and _kv_bytes(values) > MAX_SUBSTITUTION_BYTES:
        skipped[recipient.subscriber_id] = "substitutions over 10,000 bytes"
        return None
    seen.add(key)
    to_name = display_name(recipient.name)
    to = f',"name":{_quoted(to_name)}' if to_name else ""
    url = _quoted(url)  # no JSON escape turns into or out of "<" and ">"
    return (
        f'{{"to":[{{"email":{_quoted(email)}{to}}}],"substitutions":{{'
        f"{keys.html}:{_quoted(shown_html)},{keys.text}:{_quoted(shown)},{keys.unsubscribe}:{url}}},"
        f'"custom_args":{{{keys.numbers},"subscriber_id":"{int(recipient.subscriber_id)}"}},'
        f'"headers":{{"List-Unsubscribe":"<{url[1:-1]}>",{_UNSUBSCRIBE_POST}}}}}'
    )


def _plain_json(column: Sequence[str]) -> bool:
    """Whether every value is printable ASCII without a quote or backslash: JSON-escaping
    leaves such text as it is. (Deleting the plain bytes is about four times faster than
    `str.isprintable`.)"""
    joined = "".join(column)
    return joined.isascii() and not joined.encode("ascii").translate(None, _JSON_PLAIN)


def _escaped(column: Sequence[str]) -> list[str]:
    """Each value JSON-escaped, without its quotes."""
    return [q[1:-1] for q in map(_quoted, column)]


@dataclass(frozen=True)
class _Columns:
    """The fields of the readers the columns carry, in batch order, JSON-escaped (no quotes).
    `odd`: positions in the batch that take the general path instead."""

    emails: Sequence[str]
    names: Sequence[str]  # as shown in both the `to` name and the text substitution
    names_html: Sequence[str]
    urls: Sequence[str]
    ids: Sequence[int]
    odd: tuple[int, ...]


def _columns(batch: OutgoingBatch, keys: _Keys) -> _Columns | None:
    """The batch's columns, or None when the whole batch takes the general path: a
    duplicate address, an address that is not plain ASCII, a link that needs escaping (never
    ours) or a value long enough to reach SendGrid's substitutions limit."""
    readers = batch.recipients
    ids, emails, names = readers.ids, readers.emails, readers.names
    urls: Sequence[str] = batch.unsubscribe_urls
    if len(urls) != len(emails):
        raise ValueError("one unsubscribe link per recipient")
    joined_emails = "".join(emails)
    if not (
        _plain_json(emails)
        and " " not in joined_emails
        and all(map(contains, emails, repeat("@")))
        and len(set(map(str.lower, emails))) == len(emails)
        and _plain_json(urls)
    ):
        return None
    odd = _odd_names(names)
    if odd:
        kept = [i for i in range(len(names)) if i not in odd]
        emails, names, urls = ([c[i] for i in kept] for c in (emails, names, urls))
        ids = [ids[i] for i in kept]
    if not names:
        return _Columns((), (), (), (), (), tuple(sorted(odd)))
    joined = "\n".join(names)
    if _HTML_SPECIAL.search(joined):
        names_html: Sequence[str] = html.escape(joined, quote=True).split("\n")
    else:
        names_html = names
    longest = keys.length + 2 * max(map(len, names_html)) + max(map(len, urls))
    if longest * 4 > MAX_SUBSTITUTION_BYTES:
        return None
    if not _plain_json(names):
        names, names_html = _escaped(names), _escaped(names_html)  # the one loop: non-ASCII
    return _Columns(emails, names, names_html, urls, ids, tuple(sorted(odd)))


def _odd_names(names: Sequence[str]) -> set[int]:
    """Positions of the names the columns cannot carry as they are."""
    odd: set[int] = set()
    if not all(map(str.isprintable, names)):
        odd = {i for i, n in enumerate(names) if not n.isprintable()}
        names = ["x" if i in odd else n for i, n in enumerate(names)]
    joined = "\n".join(names)
    if not odd and not any(map(contains, repeat(joined), _ODD_TEXT)):
        if joined and joined[0] not in " \n" and joined[-1] not in " \n":
            return odd  # the common batch: a few substring searches, no regex
    line, at = 0, 0
    for match in _ODD_NAME.finditer(joined):
        line += joined.count("\n", at, match.start())
        at = match.start()
        odd.add(line)
    return odd


def _interleave(columns: _Columns, keys: _Keys, start: int, stop: int) -> list[str]:
    """The personalizations of readers `start`..`stop` of the columns: the same text as
    `_general`'s for each (one f-string per reader; no dict, no escaping)."""
    kh, kt, ku, numbers, post = (
        keys.html,
        keys.text,
        keys.unsubscribe,
        keys.numbers,
        _UNSUBSCRIBE_POST,
    )
    return [
        f'{{"to":[{{"email":"{email}","name":"{name}"}}],"substitutions":{{{kh}:"{name_html}",'
        f'{kt}:"{name}",{ku}:"{url}"}},"custom_args":{{{numbers},"subscriber_id":"{sid}"}},'
        f'"headers":{{"List-Unsubscribe":"<{url}>",{post}}}}}'
        for email, name, name_html, url, sid in zip(
            columns.emails[start:stop],
            columns.names[start:stop],
            columns.names_html[start:stop],
            columns.urls[start:stop],
            columns.ids[start:stop],
            strict=True,
        )
    ]


class BodyEncoder:
    """Encodes the batches of a provider's requests; keeps the shared part of the last few
    issues (a long-lived worker sends many)."""

    def __init__(self, settings: Settings, categories: tuple[str, ...]) -> None:
        self.settings = settings
        self.categories = categories
        # (issue, nonce, categories, sandbox) -> the text after the personalizations.
        self._shared: dict[tuple[int, str, tuple[str, ...], bool], str] = {}
        self._lock = threading.Lock()

    def shared_part(self, batch: OutgoingBatch) -> str:
        """`],"from":...}`: everything after the personalizations, the same for every request
        of an issue; encoded (content and all) once."""
        categories = tuple(batch.categories or self.categories)
        key = (batch.issue_id, batch.rendered.placeholder_nonce, categories, batch.sandbox)
        shared = self._shared.get(key)
        if shared is not None:
            return shared
        rendered = batch.rendered
        body: dict[str, Any] = {
            "from": {"email": self.settings.from_email},
            "subject": header_safe(rendered.subject),
            "content": [
                {"type": "text/plain", "value": rendered.text},
                {"type": "text/html", "value": rendered.html},
            ],
        }
        from_name = display_name(self.settings.from_name)
        if from_name:
            body["from"]["name"] = from_name
        if categories:
            body["categories"] = list(validate_categories(categories))
        if batch.sandbox:
            body["mail_settings"] = {"sandbox_mode": {"enable": True}}
        shared = "]," + compact(body)[1:]
        with self._lock:
            if len(self._shared) >= 8:
                self._shared.clear()
            self._shared[key] = shared
        return shared

    def build(self, batch: OutgoingBatch, *, by_columns: bool = True) -> BuiltRequest:
        """The v3 Mail Send body for a batch, minus recipients SendGrid would refuse.
        `by_columns=False`: every reader by the general path (the reference the tests hold
        the columns to)."""
        keys = _Keys.of(batch.rendered.placeholders, batch)
        skipped: dict[int, str] = {}
        seen: set[str] = set()
        columns = _columns(batch, keys) if batch.recipients and by_columns else None
        if columns is None:
            rows = self._general(batch, keys, range(len(batch.recipients)), skipped, seen)
        else:
            rows, at = [], 0
            for position, odd in enumerate(columns.odd):
                until = odd - position  # the readers the columns carry before this one
                rows += _interleave(columns, keys, at, until)
                at = until
                rows += self._general(batch, keys, (odd,), skipped, seen)
            rows += _interleave(columns, keys, at, len(columns.emails))
        head, shared = '{"personalizations":[', self.shared_part(batch)
        if not rows:
            return BuiltRequest(head + shared, skipped, 0)
        # One copy of the (half-megabyte) text: the ends joined to the first and last rows.
        rows[0] = head + rows[0]
        rows[-1] += shared  # after the first: they may be the same row
        return BuiltRequest(",".join(rows), skipped, len(rows))

    @staticmethod
    def _general(
        batch: OutgoingBatch,
        keys: _Keys,
        positions: Sequence[int],
        skipped: dict[int, str],
        seen: set[str],
    ) -> list[str]:
        found = []
        for at in positions:
            one = _general(
                batch, keys, batch.recipients[at], batch.unsubscribe_urls[at], seen, skipped
            )
            if one is not None:
                found.append(one)
        return found
