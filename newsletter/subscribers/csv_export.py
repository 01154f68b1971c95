"""Writing the subscriber list as CSV: every column `subscribers import` reads (email, name,
status, created_at, timezone, tags), cells a spreadsheet would run as formulas escaped, a
million rows streamed with their tags fetched a block at a time."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterable
from typing import TextIO

from newsletter.records import Subscriber
from newsletter.store import Store
from newsletter.subscribers.spreadsheet import spreadsheet_safe

COLUMNS = ("email", "name", "status", "created_at", "timezone", "tags")
# Subscribers whose tags are looked up at once (the store reads them 500 ids a query).
TAG_BLOCK = 2000

TagsOf = Callable[[Iterable[int]], dict[int, list[str]]]


def export_csv(rows: Iterable[Subscriber], out: TextIO, *, tags_of: TagsOf | None = None) -> int:
    """Every subscriber with status, sign-up time, time zone and tags (separated by spaces,
    as the import reads them; `tags_of` gives each block's, none without it); `subscribers
    import` reads the file back exactly."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    count = 0
    stream = iter(rows)
    while block := list(itertools.islice(stream, TAG_BLOCK)):
        tags = tags_of(row.id for row in block) if tags_of is not None else {}
        for row in block:
            writer.writerow(
                [
                    spreadsheet_safe(row.email),
                    spreadsheet_safe(row.name),
                    row.status,
                    row.created_at.isoformat(),
                    row.timezone,
                    " ".join(tags.get(row.id, ())),
                ]
            )
        count += len(block)
    return count


def export_subscribers(store: Store, out: TextIO, status: str | None = None) -> int:
    """The whole list (of one status if given) as `export_csv` writes it, tags included:
    what `newsletter subscribers export` and the workspace's export download."""
    return export_csv(store.subscribers.each(status), out, tags_of=store.tags.of)
