"""Per-subscriber link tokens: an opaque random id signed with itsdangerous, never the address.

Made once when a subscriber is added and stored with them, so sending an issue to a million
subscribers costs no cryptography; the signature is checked (in constant time) before any
database look-up, so a forged token never reaches the database.

Keys rotate: a token is signed with the newest key and verifies under any key still listed,
so links already sent keep working after a new key is put first.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from itsdangerous import Signer

MAX_TOKEN_LENGTH = 100


def _signer(keys: str | Sequence[str], purpose: str) -> Signer:
    """`keys` newest first (itsdangerous wants the newest last)."""
    ordered = [keys] if isinstance(keys, str) else list(reversed(keys))
    if not ordered:
        raise ValueError("no signing key")
    return Signer(ordered, salt=f"newsletter.{purpose}", sep=".")


def new_token(keys: str | Sequence[str], purpose: str = "subscriber") -> str:
    """A fresh token signed with the newest of `keys` (a key, or keys newest first)."""
    return _signer(keys, purpose).sign(secrets.token_urlsafe(16)).decode("ascii")


def verify_token(keys: str | Sequence[str], token: str, purpose: str = "subscriber") -> bool:
    """True only for an untampered token made with one of `keys`; any malformed input is
    False."""
    if not isinstance(token, str) or not token.isascii() or len(token) > MAX_TOKEN_LENGTH:
        return False
    if token.count(".") != 1:
        return False
    return _signer(keys, purpose).validate(token)
