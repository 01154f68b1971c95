"""One exception base for the library, so the CLI can print any user-facing error plainly."""

from __future__ import annotations

from pathlib import Path


class NewsletterError(Exception):
    """Base of every error a user can act on; its message is meant to be printed as is."""


class ConfigError(NewsletterError):
    """A setting is missing or invalid; the message names the file and the key."""


class ArticleError(NewsletterError):
    """An article file cannot be used; names the file and, when known, the line."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line else f"{self.path}"
        super().__init__(f"{where}: {message}")


class NotFound(NewsletterError):
    """The issue, article or subscriber named on the command line does not exist."""


class StoreError(NewsletterError):
    """The database refused a write or a read (read-only file, full disk, locked)."""
