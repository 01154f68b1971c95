"""Subscribers in and out: CSV import (every row validated, errors by line, one transaction or
chunks) and export (safe in a spreadsheet, read back exactly: addresses, names, statuses,
time zones and tags), one subscriber added, confirmed, unsubscribed (with their reason),
paused or removed, unconfirmed sign-ups expired, and the keys that sign their links.

A package of one module per job, imports one way: `spreadsheet` (formula escaping both
ways) <- `csv_read` (the file as rows) <- `csv_import`; `keys` <- `people` (one subscriber)
<- `csv_import`; `csv_export`. Callers import from here (`newsletter.subscribers.X`)."""

from newsletter.subscribers.csv_export import COLUMNS, export_csv, export_subscribers
from newsletter.subscribers.csv_import import (
    IMPORT_CHUNK,
    STATUSES,
    ChunkCounts,
    CsvCheck,
    ImportProgress,
    ImportResult,
    RowProblem,
    check_csv,
    import_csv,
    import_csv_chunked,
    valid_chunks,
    write_chunk,
)
from newsletter.subscribers.csv_read import DELIMITERS, CsvRow, read_csv_rows
from newsletter.subscribers.keys import (
    SECRET_KEY_ENV,
    secret_keys_from_env,
    signing_keys,
    signing_secret,
)
from newsletter.subscribers.people import (
    MAX_DETAIL_LENGTH,
    UNCONFIRMED_EXPIRE_AFTER,
    add_subscriber,
    clean_name,
    confirm_subscriber,
    expire_unconfirmed,
    list_subscribers,
    mailbox_key,
    pause_subscriber,
    record_unsubscribe_reason,
    remove_subscriber,
    unsubscribe_subscriber,
)
from newsletter.subscribers.spreadsheet import (
    ESCAPE,
    FORMULA_PREFIXES,
    from_spreadsheet,
    spreadsheet_safe,
)

__all__ = [
    "COLUMNS",
    "DELIMITERS",
    "ESCAPE",
    "FORMULA_PREFIXES",
    "IMPORT_CHUNK",
    "MAX_DETAIL_LENGTH",
    "SECRET_KEY_ENV",
    "STATUSES",
    "UNCONFIRMED_EXPIRE_AFTER",
    "ChunkCounts",
    "CsvCheck",
    "CsvRow",
    "ImportProgress",
    "ImportResult",
    "RowProblem",
    "add_subscriber",
    "check_csv",
    "clean_name",
    "confirm_subscriber",
    "expire_unconfirmed",
    "export_csv",
    "export_subscribers",
    "from_spreadsheet",
    "import_csv",
    "import_csv_chunked",
    "list_subscribers",
    "mailbox_key",
    "pause_subscriber",
    "read_csv_rows",
    "record_unsubscribe_reason",
    "remove_subscriber",
    "secret_keys_from_env",
    "signing_keys",
    "signing_secret",
    "spreadsheet_safe",
    "unsubscribe_subscriber",
    "valid_chunks",
    "write_chunk",
]
