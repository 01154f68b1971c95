"""Editor accounts for the web workspace: created from the command line, passwords hashed with
Argon2id (argon2-cffi), and server-side sessions: a random id the browser keeps (in a signed
cookie, newsletter.web.admin.session) whose SHA-256 is a row of the database, so signing out,
a password change or removing the account ends a session for good, copies of the cookie
included. Sessions end after SESSION_IDLE without use and SESSION_MAX_AGE after sign-in.

The web side and the CLI both call these functions; neither keeps its own copy of a rule.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from email_validator import EmailNotValidError

from newsletter.addresses import normalize_address
from newsletter.exceptions import NewsletterError
from newsletter.store import Store
from newsletter.store.editors import EditorRow

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # hashing megabytes of "password" is a denial of service
SESSION_IDLE = timedelta(hours=2)
SESSION_MAX_AGE = timedelta(hours=12)

_hasher = PasswordHasher()
# Verified against when the address is unknown, so a wrong address costs the same time as a
# wrong password and the sign-in form does not tell who is an editor: the hash of a random
# password nobody was given, made once with the hasher's parameters. (Hashing one at import
# cost every command that loads this module, `run` included, about 0.4 s and 64 MiB.)
_DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$YZD86LF7/FXBJbzfU2MdLg$T6iY5fFYg801Cv8ZI3SbSj1Za1qYi1Ob3p3yre2VZg0"


@functools.cache
def _dummy_hash() -> str:
    """`_DUMMY_HASH`, or one made now when the library's parameters changed since (so the
    two verifications still cost the same)."""
    if _hasher.check_needs_rehash(_DUMMY_HASH):
        return _hasher.hash(secrets.token_urlsafe(24))
    return _DUMMY_HASH


@dataclass(frozen=True)
class Editor:
    """A signed-in editor as the pages see it: never the password hash."""

    id: int
    email: str
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
    return Editor(row.id, row.email, row.timezone, row.created_at)


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
    return _public(store.editors.insert(address, _hasher.hash(password), timezone))


def change_password(store: Store, email: str, password: str) -> Editor:
    """Set a new password; every session the editor had ends."""
    check_password(password)
    row = store.editors.by_email(email)
    if row is None:
        raise NewsletterError(f"no editor {email!r} (see 'newsletter editors list')")
    store.editors.update_password(row.id, _hasher.hash(password), end_sessions=True)
    return _public(store.editors.by_id(row.id) or row)


def remove_editor(store: Store, email: str) -> None:
    """Delete the account and every session it had (its id is never given again)."""
    store.editors.delete(email)


def list_editors(store: Store) -> list[Editor]:
    return [_public(row) for row in store.editors.all()]


def authenticate(store: Store, email: str, password: str) -> Editor | None:
    """The editor whose address and password these are, or None (for any mismatch)."""
    if not password or len(password) > MAX_PASSWORD_LENGTH:
        return None
    row = store.editors.by_email(email) if email.strip() else None
    try:
        _hasher.verify(row.password_hash if row else _dummy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        store.editors.update_password(row.id, _hasher.hash(password), end_sessions=False)
    return _public(row)


def _session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def start_session(store: Store, editor: Editor) -> str:
    """A new session of a signed-in editor: the random id its cookie is to carry."""
    session_id = secrets.token_urlsafe(32)
    store.editors.start_session(editor.id, _session_hash(session_id))
    return session_id


def editor_for_session(store: Store, session_id: str) -> Editor | None:
    """The editor of a live session, or None: unknown, signed out, ended by a password change
    or the account's removal, unused for SESSION_IDLE, or older than SESSION_MAX_AGE."""
    row = store.editors.session_editor(
        _session_hash(session_id), idle=SESSION_IDLE, max_age=SESSION_MAX_AGE
    )
    return _public(row) if row else None


def end_session(store: Store, session_id: str) -> None:
    """Sign out: this session can never be used again."""
    store.editors.end_session(_session_hash(session_id))


def end_all_sessions(store: Store, editor: Editor) -> int:
    """Sign out everywhere: every session of the editor ends (this one too)."""
    return store.editors.end_sessions(editor.id)


def prune_sessions(store: Store) -> int:
    """Forget sessions that can no longer be used (run when `serve` starts)."""
    return store.editors.prune_sessions(idle=SESSION_IDLE, max_age=SESSION_MAX_AGE)
