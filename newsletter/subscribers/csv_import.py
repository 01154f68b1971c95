"""Importing a subscriber CSV: every row validated (address, status, created_at, time zone,
tags, duplicates) with problems named by line, then written in one transaction or in chunks
of 5,000 (the workspace's import jobs use the chunked parts: `check_csv`, `valid_chunks`,
`write_chunk`). An import may apply a suppression, never undo one unless asked."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter.addresses import EmailNotValidError, normalize_address
from newsletter.exceptions import BadTag, NewsletterError
from newsletter.readertime import zone_name
from newsletter.records import SUPPRESSED, SubscriberStatus
from newsletter.store import Store
from newsletter.subscribers.csv_read import CsvRow, read_csv_rows
from newsletter.subscribers.keys import signing_secret
from newsletter.subscribers.people import clean_name
from newsletter.tags import parse_tags
from newsletter.tokens import new_token

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

ACTIVE, UNCONFIRMED = SubscriberStatus.ACTIVE, SubscriberStatus.UNCONFIRMED
STATUSES = tuple(str(s) for s in SubscriberStatus)


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
    # The addresses the import added (not those it updated): who `--welcome` welcomes.
    added: list[str] = field(default_factory=list)


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


_ValidRow = tuple[CsvRow, str, str, str, datetime | None, tuple[str, ...]]


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
    try:
        tags = parse_tags(row.tags)
    except BadTag as exc:
        return RowProblem(row.line, email, f"tags: {exc}")
    key = email.lower()
    if key in seen:
        return RowProblem(row.line, email, f"duplicate of line {seen[key]} (addresses ignore case)")
    seen[key] = row.line
    return (row, email, clean_name(row.name), status, created_at, tags)


IMPORT_CHUNK = 5000


@dataclass(frozen=True, kw_only=True)
class CsvCheck:
    """What the validating pass found: the file's data rows and those with a problem."""

    rows: int
    problems: list[RowProblem]


def check_csv(
    path: Path, *, progress: Callable[[int], None] | None = None, every: int = 10_000
) -> CsvCheck:
    """The first pass of a chunked import: every row validated, streaming (only the
    addresses seen are held, for duplicates). A quoting or encoding error raises
    NewsletterError naming the line; `progress` hears the rows checked every `every` rows."""
    problems: list[RowProblem] = []
    seen: dict[str, int] = {}
    checked = 0
    for row in read_csv_rows(path):
        verdict = _check_row(row, seen)
        if isinstance(verdict, RowProblem):
            problems.append(verdict)
        checked += 1
        if progress is not None and checked % every == 0:
            progress(checked)
    return CsvCheck(rows=checked, problems=problems)


def valid_chunks(
    path: Path, check: CsvCheck, *, chunk: int = IMPORT_CHUNK, skip: int = 0
) -> Iterator[list[_ValidRow]]:
    """The second pass: the rows `check` found valid, `chunk` at a time, leaving out the
    first `skip` of them (written before a restart)."""
    problem_lines = {p.line for p in check.problems}
    batch: list[_ValidRow] = []
    index = 0
    for row in read_csv_rows(path):
        if row.line in problem_lines:
            continue
        index += 1
        if index <= skip:
            continue
        verdict = _check_row(row, {})
        if isinstance(verdict, RowProblem):  # the file changed between the two passes
            raise NewsletterError(
                f"{path}:{row.line}: changed during the import: {verdict.message}"
            )
        batch.append(verdict)
        if len(batch) >= chunk:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True, kw_only=True)
class ChunkCounts:
    """What one chunk's transaction did: rows written, added, updated, skipped (why)."""

    rows: int
    added: int
    updated: int
    skipped: list[RowProblem]


def write_chunk(
    store: Store,
    rows: list[_ValidRow],
    *,
    reactivate: bool = False,
    record: Callable[[Connection, ChunkCounts], None] | None = None,
) -> ChunkCounts:
    """One chunk of valid rows in one transaction; `record` runs inside that transaction
    with its counts, so a job's progress is committed with exactly the rows it counts."""
    result = ImportResult()
    _apply(store, rows, reactivate, result, record=record)
    return ChunkCounts(
        rows=len(rows), added=result.imported, updated=result.updated, skipped=result.skipped
    )


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
    check = check_csv(path)
    result = ImportResult(problems=list(check.problems))
    done = last = 0
    for rows in valid_chunks(path, check, chunk=chunk):
        _apply(store, rows, reactivate, result)
        done, last = done + len(rows), len(rows)
        if progress is not None:
            progress(ImportProgress(rows=check.rows, written=done, result=result))
    if progress is not None and last in (0, chunk):  # after every full chunk and at the end
        progress(ImportProgress(rows=check.rows, written=done, result=result))
    return result


@dataclass(frozen=True, kw_only=True)
class ImportProgress:
    """Where a chunked import stands: rows in the file, rows written so far, the counts."""

    rows: int
    written: int
    result: ImportResult


def _apply(
    store: Store,
    valid: list[_ValidRow],
    reactivate: bool,
    result: ImportResult,
    *,
    record: Callable[[Connection, ChunkCounts], None] | None = None,
) -> None:
    """Write validated rows in one transaction, adding to `result`'s counts (and running
    `record` in that transaction with this call's counts)."""
    existing = store.subscribers.existing(email.lower() for _, email, _, _, _, _ in valid)
    new_rows: list[dict[str, Any]] = []
    changes: list[tuple[str, str, str, str]] = []
    zones: dict[str, str] = {}
    skipped: list[RowProblem] = []
    tags: dict[str, tuple[str, ...]] = {}
    token_keys = signing_secret(store)
    for row, email, name, status, created_at, row_tags in valid:
        if row_tags:
            tags[email.lower()] = row_tags
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
            skipped.append(
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

    def also(conn: Connection, imported: int, updated: int) -> None:
        if record is not None:
            record(
                conn,
                ChunkCounts(rows=len(valid), added=imported, updated=updated, skipped=skipped),
            )

    imported, updated = store.subscribers.import_rows(
        new_rows, changes, zones=zones, tags=tags, also=also
    )
    result.added += [row["email"] for row in new_rows]
    result.imported += imported
    result.updated += updated
    result.skipped.extend(skipped)


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
