"""Per-subscriber link tokens: an opaque random id plus an HMAC, never the address.

Made once when a subscriber is added and stored with them, so sending an issue to a million
subscribers costs no cryptography; checked in constant time before any database look-up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_SIG_BYTES = 12


def _signature(secret: str, opaque: str, purpose: str) -> str:
    digest = hmac.new(secret.encode(), f"{purpose}:{opaque}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_SIG_BYTES]).decode().rstrip("=")


def new_token(secret: str, purpose: str = "subscriber") -> str:
    opaque = secrets.token_urlsafe(16)
    return f"{opaque}.{_signature(secret, opaque, purpose)}"


def verify_token(secret: str, token: str, purpose: str = "subscriber") -> bool:
    """True only for an untampered token made with `secret`; any malformed input is False."""
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > 100:
        return False
    opaque, signature = token.split(".")
    if not opaque or not signature:
        return False
    return hmac.compare_digest(_signature(secret, opaque, purpose), signature)
