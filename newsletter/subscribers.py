"""Subscriber lists in and out as CSV: every row validated, errors named by line number,
valid rows imported in one transaction, and exports safe to open in a spreadsheet that
`subscribers import` reads back exactly (addresses, names and statuses)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import hmac
import io
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from newsletter.addresses import EmailNotValidError, normalize_address
from newsletter.exceptions import NewsletterError
from newsletter.readertime import zone_name
from newsletter.records import SUPPRESSED, Subscriber, SubscriberStatus
from newsletter.render import header_safe
from newsletter.settings import secret
from newsletter.store import Store
from newsletter.tokens import new_token

log = logging.getLogger(__name__)

ACTIVE, UNCONFIRMED = SubscriberStatus.ACTIVE, SubscriberStatus.UNCONFIRMED
STATUSES = tuple(str(s) for s in SubscriberStatus)
# A cell starting with one of these is run as a formula by spreadsheets; export puts an
# apostrophe before it (and before a leading apostrophe, so import can undo exactly that).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"
SECRET_KEY_ENV = "NEWSLETTER_SECRET_KEY"


@dataclass(frozen=True)
class RowProblem:
    line: int
    email: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.email or '(empty)'}: {self.message}"


@dataclass
class ImportResult:
    imported: int = 0
    updated: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    skipped: list[RowProblem] = field(default_factory=list)


@dataclass(frozen=True)
class CsvRow:
    """One data row of a subscriber CSV, as written (spreadsheet escaping already undone)."""

    line: int
    email: str
    name: str
    status: str  # "" when the file has no status column or leaves the cell empty
    created_at: str
    timezone: str = ""  # the reader's IANA zone as written; "" for the newsletter's


# -- addresses ---------------------------------------------------------------------------------
def mailbox_key(address: str) -> str:
    """The mailbox an address delivers to, for sign-up limits: case and plus-addressing folded,
    so victim+1@example.com and Victim@example.com count as one mailbox."""
    local, _, domain = address.strip().lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def clean_name(raw: str | None) -> str:
    """Names go into headers: no CR/LF or control characters, bounded length."""
    return header_safe(raw or "", 200)


# -- signing keys ------------------------------------------------------------------------------
def secret_keys_from_env() -> tuple[str, ...]:
    """NEWSLETTER_SECRET_KEY as a list, newest first, separated by commas (`secret` refuses
    spaces in a key variable, so `new,old` without spaces)."""
    raw = secret(SECRET_KEY_ENV) or ""
    keys: list[str] = []
    for key in re.split(r"[\s,]+", raw.strip()):
        if key and key not in keys:
            keys.append(key)
    return tuple(keys)


def signing_secret(store: Store) -> tuple[str, ...]:
    """Every key that verifies subscriber links, newest (the one new links use) first: the keys
    of NEWSLETTER_SECRET_KEY in their order, then always the database's own generated key,
    so links made before any key was set keep working. Warns when the key list changed."""
    env_keys = secret_keys_from_env()
    db_key = store.meta.secret_key()
    _note_key_changes(store, env_keys, db_key)
    return tuple(k for k in env_keys if k != db_key) + (db_key,)


signing_keys = signing_secret

_KEYS_SEEN = "signing_keys_seen"


def _fingerprint(key: str, db_key: str) -> str:
    """A short, non-reversible name for a key, for messages and the record of keys used."""
    return hmac.new(db_key.encode(), b"fingerprint:" + key.encode(), hashlib.sha256).hexdigest()[
        :12
    ]


def _note_key_changes(store: Store, env_keys: tuple[str, ...], db_key: str) -> None:
    """Remember which keys have signed links and say (log warning, shown by the CLI) when the
    newest key changed or a key that signed links was dropped from the list."""
    current = [_fingerprint(k, db_key) for k in env_keys]
    try:
        seen: list[str] = json.loads(store.meta.get(_KEYS_SEEN) or "[]")
    except ValueError:
        seen = []
    newest = current[0] if current else "database"
    if seen and seen[0] != newest:
        log.warning(
            "%s changed: new links are signed with key %s; links signed with an earlier key "
            "keep working only while that key stays in %s after the new one",
            SECRET_KEY_ENV,
            newest,
            SECRET_KEY_ENV,
        )
    dropped = [fp for fp in seen if fp != "database" and fp not in current]
    if dropped:
        log.warning(
            "%s no longer lists key(s) %s that signed links before: every unsubscribe and "
            "confirm link signed with them (in emails already sent, and for subscribers added "
            "while they were the newest) now gets the 'invalid link' page. Put them back after "
            "the new key: %s='new,old'",
            SECRET_KEY_ENV,
            ", ".join(dropped),
            SECRET_KEY_ENV,
        )
    record = [newest] + [fp for fp in seen if fp != newest]
    if record != seen:
        store.meta.set(_KEYS_SEEN, json.dumps(record))


# -- CSV in ------------------------------------------------------------------------------------
_LOOKS_LIKE_ADDRESS = re.compile(r"^\"?[^\s@\",]+@[^\s@\",]+\.[^\s@\",]+\"?$")


def from_spreadsheet(text: str) -> str:
    """Undo export's formula neutralisation: drop the apostrophe export put before a formula
    character or before a leading apostrophe, and nothing else."""
    if text.startswith(ESCAPE) and text[1:2] and text[1] in (*FORMULA_PREFIXES, ESCAPE):
        return text[1:]
    return text


DELIMITERS = ",;\t|"
_DELIMITER_NAMES = {",": "',' (comma)", ";": "';' (semicolon)", "\t": "tab", "|": "'|'"}


def _delimiter(text: str) -> str:
    """The header line's delimiter: a comma, or the semicolon of Excel's export where the
    decimal mark is a comma (most of Europe), a tab or a bar (`csv.Sniffer`, on the header
    only: data rows hold names with commas in them)."""
    header = text.split("\n", 1)[0]
    try:
        found = csv.Sniffer().sniff(header, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","
    return found if found in DELIMITERS else ","


def _shown(text: str) -> str:
    return repr(text.split("\n", 1)[0].rstrip("\r")[:80])


def read_csv_rows(path: Path) -> Iterator[CsvRow]:
    """The data rows of a subscriber CSV; handles a BOM, CRLF and quoted fields. A quoting
    error (an unclosed quote that would swallow the following rows) raises NewsletterError
    naming the line, before anything is imported."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NewsletterError(
            f"{path}: not UTF-8 (byte {exc.start}); save it as UTF-8 CSV"
        ) from None
    except OSError as exc:
        raise NewsletterError(f"{path}: cannot read: {exc.strerror}") from None
    delimiter = _delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, delimiter=delimiter)
    try:
        header = [h.strip().lower() for h in next(reader, [])]
    except csv.Error as exc:
        raise NewsletterError(f"{path}:1: CSV quoting error in the header: {exc}") from None
    if "email" not in header:
        raise NewsletterError(
            f"{path}:1: no 'email' column in the header {_shown(text)} (read with "
            f"{_DELIMITER_NAMES[delimiter]} as the delimiter; expected: email,name)"
        )
    end = reader.line_num
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise NewsletterError(
                f"{path}:{start}: CSV quoting error: {exc} (is a quote on this line not closed?)"
                "; nothing was imported"
            ) from None
        end = reader.line_num
        if not cells:
            continue
        _refuse_swallowed_rows(path, start, end, cells)
        row = dict(zip(header, cells, strict=False))
        yield CsvRow(
            line=start,
            email=from_spreadsheet(row.get("email", "")),
            name=from_spreadsheet(row.get("name", "")),
            status=row.get("status", "").strip().lower(),
            created_at=row.get("created_at", "").strip(),
            timezone=row.get("timezone", "").strip(),
        )


def _refuse_swallowed_rows(path: Path, start: int, end: int, cells: list[str]) -> None:
    """A quoted field spanning lines whose later lines start with an address is almost surely
    an unclosed quote that swallowed the rows after it: refuse the file, naming the line."""
    if end == start:
        return
    for cell in cells:
        for offset, line in enumerate(cell.splitlines()[1:], start=1):
            first = line.split(",", 1)[0].strip()
            if _LOOKS_LIKE_ADDRESS.match(first):
                raise NewsletterError(
                    f"{path}:{start}: CSV quoting error: a quote opened on this line is closed "
                    f"only on line {end}, taking in what looks like the row of "
                    f"{first.strip(chr(34))!r} (line {start + offset}); close the quote. "
                    "Nothing was imported"
                )


def _parse_created_at(text: str) -> datetime | None:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def import_csv(store: Store, path: Path, *, reactivate: bool = False) -> ImportResult:
    """Validate every row, then apply the whole file in one transaction.

    Columns: email (required), name, status, created_at and timezone (as `export` writes
    them; a file without a status column imports everyone as active; a time zone must be an
    IANA name, empty for the newsletter's). New addresses get the status of
    their row. Known addresses keep their status, except that a suppression in the file
    (unsubscribed, bounced, complained) is applied; an import never turns a person who left
    or never confirmed back into an active subscriber unless `reactivate` is given."""
    result = ImportResult()
    seen: dict[str, int] = {}
    valid: list[_ValidRow] = []
    for row in read_csv_rows(path):
        checked = _check_row(row, seen)
        if isinstance(checked, RowProblem):
            result.problems.append(checked)
        else:
            valid.append(checked)
    _apply(store, valid, reactivate, result)
    return result


_ValidRow = tuple[CsvRow, str, str, str, datetime | None]


def _check_row(row: CsvRow, seen: dict[str, int]) -> _ValidRow | RowProblem:
    """One row validated (address, status, created_at, time zone, duplicate); `seen`
    records its key."""
    try:
        email = normalize_address(row.email)
    except EmailNotValidError as exc:
        return RowProblem(row.line, row.email.strip(), f"invalid address: {exc}")
    status = row.status or ACTIVE
    if status not in STATUSES:
        return RowProblem(
            row.line, email, f"unknown status {row.status!r} (one of {', '.join(STATUSES)})"
        )
    try:
        created_at = _parse_created_at(row.created_at) if row.created_at else None
    except ValueError:
        return RowProblem(row.line, email, f"created_at {row.created_at!r} is not an ISO date")
    try:
        row = dataclasses.replace(row, timezone=zone_name(row.timezone))
    except ValueError as exc:
        return RowProblem(row.line, email, str(exc))
    key = email.lower()
    if key in seen:
        return RowProblem(row.line, email, f"duplicate of line {seen[key]} (addresses ignore case)")
    seen[key] = row.line
    return (row, email, clean_name(row.name), status, created_at)


IMPORT_CHUNK = 5000


def import_csv_chunked(
    store: Store,
    path: Path,
    *,
    reactivate: bool = False,
    chunk: int = IMPORT_CHUNK,
    progress: Callable[[ImportProgress], None] | None = None,
) -> ImportResult:
    """`import_csv` for large files: a first streaming pass validates every row (a quoting
    error refuses the whole file, naming the line, before anything is written), a second
    writes the valid rows `chunk` at a time, one short transaction each, so sign-ups and
    other writers get the database between chunks. Rows with a problem are reported and
    skipped, as `import_csv` does; only the rows are held, never the whole file's records."""
    result = ImportResult()
    seen: dict[str, int] = {}
    checked = 0
    for row in read_csv_rows(path):
        verdict = _check_row(row, seen)
        if isinstance(verdict, RowProblem):
            result.problems.append(verdict)
        checked += 1
    problem_lines = {p.line for p in result.problems}
    del seen
    batch: list[_ValidRow] = []
    done = 0

    def flush() -> None:
        _apply(store, batch, reactivate, result)
        batch.clear()
        if progress is not None:
            progress(ImportProgress(rows=checked, written=done, result=result))

    for row in read_csv_rows(path):
        if row.line in problem_lines:
            continue
        verdict = _check_row(row, {})
        if isinstance(verdict, RowProblem):  # the file changed between the two passes
            raise NewsletterError(
                f"{path}:{row.line}: changed during the import: {verdict.message}"
            )
        batch.append(verdict)
        done += 1
        if len(batch) >= chunk:
            flush()
    flush()
    return result


@dataclass(frozen=True, kw_only=True)
class ImportProgress:
    """Where a chunked import stands: rows in the file, rows written so far, the counts."""

    rows: int
    written: int
    result: ImportResult


def _apply(store: Store, valid: list[_ValidRow], reactivate: bool, result: ImportResult) -> None:
    """Write validated rows in one transaction, adding to `result`'s counts."""
    existing = store.subscribers.existing(email.lower() for _, email, _, _, _ in valid)
    new_rows: list[dict[str, Any]] = []
    changes: list[tuple[str, str, str, str]] = []
    zones: dict[str, str] = {}
    token_keys = signing_secret(store)
    for row, email, name, status, created_at in valid:
        current = existing.get(email.lower())
        if current is None:
            new_rows.append(
                {
                    "email": email,
                    "name": name,
                    "status": status,
                    "token": new_token(token_keys),
                    "created_at": created_at,
                    "timezone": row.timezone,
                }
            )
            continue
        target = _status_after_import(current, status, reactivate)
        if target is None:
            result.skipped.append(
                RowProblem(
                    row.line,
                    email,
                    f"{current}: not made {status} by an import (pass --reactivate to do that)",
                )
            )
            continue
        changes.append((email.lower(), current, target, name))
        if row.timezone:
            zones[email.lower()] = row.timezone
    imported, updated = store.subscribers.import_rows(new_rows, changes, zones)
    result.imported += imported
    result.updated += updated


# Worst last: an import may make a status worse (apply a suppression), never better.
_SEVERITY: dict[str, int] = {
    UNCONFIRMED: 0,
    ACTIVE: 1,
    **{s: 2 + i for i, s in enumerate(SUPPRESSED)},
}


def _status_after_import(current: str, wanted: str, reactivate: bool) -> str | None:
    """The status a known subscriber gets from an import row, or None to skip the row."""
    if wanted == current:
        return current
    if wanted in SUPPRESSED:
        return wanted if _SEVERITY.get(current, 0) < _SEVERITY[wanted] else current
    if wanted == UNCONFIRMED:
        # Nobody is moved back to pending: that state only ever comes from the sign-up form,
        # so an unconfirmed row has no delivery history and can expire without a trace.
        return current
    return wanted if reactivate else None


def add_subscriber(
    store: Store,
    email: str,
    name: str = "",
    status: str = SubscriberStatus.ACTIVE,
    timezone: str = "",
) -> Subscriber:
    """Add one subscriber (used by sign-up and tests); returns the stored row. `timezone`
    must be an IANA name (or "": the newsletter's), as `readertime.zone_name` holds it."""
    try:
        address = normalize_address(email)
    except EmailNotValidError as exc:
        raise NewsletterError(f"{email!r} is not a valid address: {exc}") from None
    try:
        zone = zone_name(timezone)
    except ValueError as exc:
        raise NewsletterError(str(exc)) from None
    existing = store.subscribers.by_email(address)
    if existing is not None:
        return existing
    store.subscribers.add(
        [
            {
                "email": address,
                "name": clean_name(name),
                "status": status,
                "token": new_token(signing_secret(store)),
                "timezone": zone,
            }
        ]
    )
    added = store.subscribers.by_email(address)
    if added is None:  # removed again by someone else at that very moment
        raise NewsletterError(f"{address} could not be added; try again")
    return added


def list_subscribers(store: Store, status: str | None = None) -> Iterator[Subscriber]:
    """Every subscriber in id order (of one status if given), streamed: a list of a million
    rows is never held at once."""
    return store.subscribers.each(status)


def remove_subscriber(store: Store, email: str) -> None:
    """Delete a subscriber and their delivery history (a removal, not an unsubscribe)."""
    store.subscribers.remove(email)


# -- CSV out -----------------------------------------------------------------------------------
def spreadsheet_safe(value: object) -> str:
    """Neutralise a cell a spreadsheet would run as a formula (and escape a leading apostrophe
    the same way, so `from_spreadsheet` gives back exactly the original text)."""
    text = "" if value is None else str(value)
    return ESCAPE + text if text.startswith((*FORMULA_PREFIXES, ESCAPE)) else text


def export_csv(rows: Iterable[Subscriber], out: TextIO) -> int:
    """Every subscriber with status and sign-up time; `subscribers import` reads it back."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["email", "name", "status", "created_at", "timezone"])
    count = 0
    for row in rows:
        writer.writerow(
            [
                spreadsheet_safe(row.email),
                spreadsheet_safe(row.name),
                row.status,
                row.created_at.isoformat(),
                row.timezone,
            ]
        )
        count += 1
    return count
