"""Editor accounts for the web workspace: created from the command line, passwords hashed with
Argon2id (argon2-cffi), and a session version that ends every session when it changes.

The web side and the CLI both call these functions; neither keeps its own copy of a rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from email_validator import EmailNotValidError

from newsletter.addresses import normalize_address
from newsletter.exceptions import NewsletterError
from newsletter.store import Store
from newsletter.store.workspace import EditorRow

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # hashing megabytes of "password" is a denial of service

_hasher = PasswordHasher()
# Verified against when the address is unknown, so a wrong address costs the same time as a
# wrong password and the sign-in form does not tell who is an editor.
_DUMMY_HASH = _hasher.hash("not the password of anyone")


@dataclass(frozen=True)
class Editor:
    """A signed-in editor as the pages see it: never the password hash."""

    id: int
    email: str
    session_version: int
    timezone: str
    created_at: datetime

    def zone(self, default: ZoneInfo) -> ZoneInfo:
        """The editor's own time zone for dates they read and type, else the newsletter's."""
        if self.timezone:
            try:
                return ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                pass
        return default


def _public(row: EditorRow) -> Editor:
    return Editor(row.id, row.email, row.session_version, row.timezone, row.created_at)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise NewsletterError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise NewsletterError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")


def _address(email: str) -> str:
    try:
        return normalize_address(email)
    except EmailNotValidError as exc:
        raise NewsletterError(f"{email!r} is not a valid address: {exc}") from None


def add_editor(store: Store, email: str, password: str, timezone: str = "") -> Editor:
    address = _address(email)
    check_password(password)
    if timezone:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise NewsletterError(f"unknown time zone {timezone!r} (e.g. Europe/Paris)") from None
    return _public(store.workspace.insert_editor(address, _hasher.hash(password), timezone))


def change_password(store: Store, email: str, password: str) -> Editor:
    """Set a new password; every session the editor had ends."""
    check_password(password)
    row = store.workspace.editor_by_email(email)
    if row is None:
        raise NewsletterError(f"no editor {email!r} (see 'newsletter editors list')")
    store.workspace.update_password(row.id, _hasher.hash(password), new_session=True)
    return _public(store.workspace.editor_by_id(row.id) or row)


def remove_editor(store: Store, email: str) -> None:
    """Delete the account; its sessions end with it (they name an editor that is gone)."""
    store.workspace.delete_editor(email)


def list_editors(store: Store) -> list[Editor]:
    return [_public(row) for row in store.workspace.all_editors()]


def authenticate(store: Store, email: str, password: str) -> Editor | None:
    """The editor whose address and password these are, or None (for any mismatch)."""
    if not password or len(password) > MAX_PASSWORD_LENGTH:
        return None
    row = store.workspace.editor_by_email(email) if email.strip() else None
    try:
        _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        store.workspace.update_password(row.id, _hasher.hash(password), new_session=False)
    return _public(row)


def editor_for_session(store: Store, editor_id: int, session_version: int) -> Editor | None:
    """The editor a session cookie names, if the account still exists and the password has
    not changed since the session began."""
    row = store.workspace.editor_by_id(editor_id)
    if row is None or row.session_version != session_version:
        return None
    return _public(row)
