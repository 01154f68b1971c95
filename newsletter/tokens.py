"""Per-subscriber link tokens: an opaque random id signed with itsdangerous, never the address.

Made once when a subscriber is added and stored with them, so sending an issue to a million
subscribers costs no cryptography; the signature is checked (in constant time) before any
database look-up, so a forged token never reaches the database.
"""

from __future__ import annotations

import secrets

from itsdangerous import Signer

MAX_TOKEN_LENGTH = 100


def _signer(secret: str, purpose: str) -> Signer:
    return Signer(secret, salt=f"newsletter.{purpose}", sep=".")


def new_token(secret: str, purpose: str = "subscriber") -> str:
    return _signer(secret, purpose).sign(secrets.token_urlsafe(16)).decode("ascii")


def verify_token(secret: str, token: str, purpose: str = "subscriber") -> bool:
    """True only for an untampered token made with `secret`; any malformed input is False."""
    if not isinstance(token, str) or not token.isascii() or len(token) > MAX_TOKEN_LENGTH:
        return False
    if token.count(".") != 1:
        return False
    return _signer(secret, purpose).validate(token)
