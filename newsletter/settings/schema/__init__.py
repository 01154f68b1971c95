"""The schema of `newsletter.toml`: every setting once, with its type, bounds, default and
description.

This is the one place defaults are declared. `load` validates a file against it and builds the
records of `values` from it, and the commented `newsletter.toml` that `newsletter init` writes is
generated from it (the field descriptions become the comments), so the file, the defaults and
the checks cannot disagree. Keys that moved to another table still read, through `MOVED`.

One module per group of tables (`editorial`: newsletter, editor, schedule, check, issue,
articles; `sending`: delivery, outbox, sendgrid, sending; `mail`: smtp, dkim, bounces; `web`;
`workflow`: welcome, feeds), over `base` (what every table shares); `file` puts the tables
in order, `messages` turns an error into one line, `default_file` writes the commented file.
A new key goes in its table's module; a new table in its group's module and in `file`.

Why pydantic (v2) rather than msgspec or attrs+cattrs: its errors carry the field's location and
the expected type in a structured form we turn into one line naming the file and the setting,
fields carry descriptions for the generated file, and validators (time zones, times of day,
weekdays, addresses) are one function each. msgspec is faster, but speed does not matter for one
small file read once, and it has no per-field descriptions. Only this package imports pydantic,
and only loading settings imports this package, so `newsletter --help` stays quick.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from newsletter.exceptions import ConfigError
from newsletter.settings.schema.default_file import default_toml
from newsletter.settings.schema.editorial import (
    EXAMPLE_POSTAL_ADDRESS,
    MAX_ARTICLES_PER_ISSUE,
    Weekday,
)
from newsletter.settings.schema.file import SettingsFile
from newsletter.settings.schema.messages import one_line
from newsletter.settings.schema.workflow import FeedSection

__all__ = [
    "EXAMPLE_POSTAL_ADDRESS",
    "MAX_ARTICLES_PER_ISSUE",
    "MOVED",
    "FeedSection",
    "SettingsFile",
    "Weekday",
    "default_toml",
    "move_keys",
    "parse",
]

# Keys that moved: (old table, key) -> (new table, key). The old place still reads, with a
# warning naming the new one; both at once is refused (which one was meant is not ours to guess).
MOVED = {
    ("sendgrid", key): ("delivery", key)
    for key in ("batch_size", "concurrency", "max_retries", "max_failed_batches")
}


def move_keys(data: dict[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """The file's tables with moved keys put where they now live, and one warning per key
    found at its old place. A key given at both places raises ConfigError naming both."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    warnings: list[str] = []
    for (old_table, old_key), (table, key) in MOVED.items():
        old = data.get(old_table)
        if not isinstance(old, dict) or old_key not in old:
            continue
        new = data.setdefault(table, {})
        if not isinstance(new, dict):
            continue  # the schema names a table that is not a table
        if key in new:
            raise ConfigError(
                f"{source}: [{old_table}] {old_key} and [{table}] {key} are both set: "
                f"[{old_table}] {old_key} is deprecated, keep only [{table}] {key}"
            )
        new[key] = old.pop(old_key)
        warnings.append(
            f"{source}: [{old_table}] {old_key} is deprecated: move it to [{table}] {key}"
        )
    return data, warnings


def parse(
    data: dict[str, Any], source: str, overridden: dict[tuple[str, str], str] | None = None
) -> SettingsFile:
    """Validate the file's tables (moved keys already in place, environment overrides applied,
    `overridden` naming which variable set which key) or raise ConfigError in one line."""
    try:
        file = SettingsFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(one_line(exc, source, overridden or {})) from None
    if file.newsletter.provider == "smtp" and not file.smtp.host.strip():
        env = (overridden or {}).get(("newsletter", "provider"))
        via = f" (from {env})" if env else ""
        raise ConfigError(f'{source}: [smtp] host: needed with provider = "smtp"{via}')
    if file.bounces.imap_host and not file.bounces.imap_user:
        raise ConfigError(f"{source}: [bounces] imap_user: needed with imap_host")
    return file
