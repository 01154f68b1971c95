"""Subscriber lists in and out as CSV: every row validated, errors named by line number,
valid rows imported in one transaction, and exports safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from email_validator import EmailNotValidError, validate_email

from newsletter.config import secret
from newsletter.exceptions import NewsletterError
from newsletter.records import SUPPRESSED, Subscriber, SubscriberStatus
from newsletter.render import header_safe
from newsletter.store import Store
from newsletter.tokens import new_token

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


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


def signing_secret(store: Store) -> str:
    """NEWSLETTER_SECRET_KEY from the environment, else the database's own generated key."""
    return secret("NEWSLETTER_SECRET_KEY") or store.leases.secret_key()


def normalize_address(raw: str) -> str:
    """The address as it should be stored; raises EmailNotValidError with a readable reason."""
    if any(c in raw for c in "\r\n\x00"):
        raise EmailNotValidError("contains a line break or control character")
    return validate_email(raw.strip(), check_deliverability=False).normalized


def clean_name(raw: str | None) -> str:
    """Names go into headers: no CR/LF or control characters, bounded length."""
    return header_safe(raw or "", 200)


def read_csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs; handles a BOM, CRLF and quoted fields."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NewsletterError(
            f"{path}: not UTF-8 (byte {exc.start}); save it as UTF-8 CSV"
        ) from None
    except OSError as exc:
        raise NewsletterError(f"{path}: cannot read: {exc.strerror}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "email" not in [f.strip().lower() for f in reader.fieldnames]:
        raise NewsletterError(f"{path}:1: no 'email' column in the header (expected: email,name)")
    for row in reader:
        yield reader.line_num, {(k or "").strip().lower(): (v or "") for k, v in row.items()}


def import_csv(store: Store, path: Path) -> ImportResult:
    """Validate every row, then import all valid new rows in one transaction. Addresses that
    unsubscribed, bounced or complained are never resubscribed by an import."""
    result = ImportResult()
    seen: dict[str, int] = {}
    valid: list[tuple[int, str, str]] = []
    for line, row in read_csv_rows(path):
        raw = row.get("email", "")
        try:
            email = normalize_address(raw)
        except EmailNotValidError as exc:
            result.problems.append(RowProblem(line, raw.strip(), f"invalid address: {exc}"))
            continue
        key = email.lower()
        if key in seen:
            result.problems.append(
                RowProblem(line, email, f"duplicate of line {seen[key]} (addresses ignore case)")
            )
            continue
        seen[key] = line
        valid.append((line, email, clean_name(row.get("name"))))
    existing = store.subscribers.existing(email.lower() for _, email, _ in valid)
    new_rows: list[dict[str, str]] = []
    renames: list[tuple[str, str]] = []
    token_secret = signing_secret(store)
    for line, email, name in valid:
        status = existing.get(email.lower())
        if status in SUPPRESSED:
            result.skipped.append(
                RowProblem(line, email, f"{status}: not resubscribed by an import")
            )
        elif status is not None:
            renames.append((email.lower(), name))
        else:
            new_rows.append(
                {
                    "email": email,
                    "name": name,
                    "status": SubscriberStatus.ACTIVE,
                    "token": new_token(token_secret),
                }
            )
    result.imported = store.subscribers.add(new_rows)
    result.updated = store.subscribers.update_names(renames)
    return result


def add_subscriber(
    store: Store, email: str, name: str = "", status: str = SubscriberStatus.ACTIVE
) -> Subscriber:
    """Add one subscriber (used by sign-up and tests); returns the stored row."""
    try:
        address = normalize_address(email)
    except EmailNotValidError as exc:
        raise NewsletterError(f"{email!r} is not a valid address: {exc}") from None
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
            }
        ]
    )
    added = store.subscribers.by_email(address)
    if added is None:  # removed again by someone else at that very moment
        raise NewsletterError(f"{address} could not be added; try again")
    return added


def spreadsheet_safe(value: object) -> str:
    """Neutralise a cell a spreadsheet would run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def export_csv(rows: Iterable[Subscriber], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["email", "name", "status", "created_at"])
    count = 0
    for row in rows:
        writer.writerow(
            [
                spreadsheet_safe(row.email),
                spreadsheet_safe(row.name),
                row.status,
                row.created_at.isoformat(),
            ]
        )
        count += 1
    return count
