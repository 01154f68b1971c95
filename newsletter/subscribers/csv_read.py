"""Reading a subscriber CSV as a stream: the header's delimiter, a BOM, CRLF or lone CR,
quoted fields, bytes that are not UTF-8 and an unclosed quote that would swallow rows, each
refused naming the line before anything is imported."""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from newsletter.exceptions import NewsletterError
from newsletter.subscribers.spreadsheet import from_spreadsheet


@dataclass(frozen=True)
class CsvRow:
    """One data row of a subscriber CSV, as written (spreadsheet escaping already undone)."""

    line: int
    email: str
    name: str
    status: str  # "" when the file has no status column or leaves the cell empty
    created_at: str
    timezone: str = ""  # the reader's IANA zone as written; "" for the newsletter's
    tags: str = ""  # the `tags` cell: tags separated by spaces


_LOOKS_LIKE_ADDRESS = re.compile(r"^\"?[^\s@\",]+@[^\s@\",]+\.[^\s@\",]+\"?$")


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


_LONE_CR = re.compile(r"(?<=\r)(?!\n)")


def _decoded_lines(path: Path, handle: BinaryIO) -> Iterator[str]:
    """The file's lines, decoded one at a time (a BOM dropped, a lone CR ending a line as
    the old Mac export does): bytes that are not UTF-8 are named by line and column."""
    for number, raw in enumerate(handle, start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise NewsletterError(
                f"{path}:{number}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                f"{exc.start + 1}); save it as UTF-8 CSV. Nothing was imported"
            ) from None
        if "\r" in line[:-2]:
            yield from (part for part in _LONE_CR.split(line) if part)
        else:
            yield line


def read_csv_rows(path: Path) -> Iterator[CsvRow]:
    """The data rows of a subscriber CSV, read as a stream (a large file never sits in
    memory); handles a BOM, CRLF and quoted fields. A quoting error (an unclosed quote that
    would swallow the following rows) raises NewsletterError naming the line, before anything
    is imported."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise NewsletterError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        lines = _decoded_lines(path, handle)
        first = next(lines, "")
        delimiter = _delimiter(first)
        reader = csv.reader(itertools.chain([first], lines), strict=True, delimiter=delimiter)
        yield from _rows(path, reader, first, delimiter)


def _rows(path: Path, reader: Any, first: str, delimiter: str) -> Iterator[CsvRow]:
    try:
        header = [h.strip().lower() for h in next(reader, [])]
    except csv.Error as exc:
        raise NewsletterError(f"{path}:1: CSV quoting error in the header: {exc}") from None
    if "email" not in header:
        raise NewsletterError(
            f"{path}:1: no 'email' column in the header {_shown(first)} (read with "
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
            tags=from_spreadsheet(row.get("tags", "")),
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
