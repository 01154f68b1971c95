"""The keys that sign subscribers' links: NEWSLETTER_SECRET_KEY (newest first, for rotation)
and always the database's own, with a warning when the list changes in a way that breaks
links already sent."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re

from newsletter.settings import secret
from newsletter.store import Store

log = logging.getLogger(__name__)

SECRET_KEY_ENV = "NEWSLETTER_SECRET_KEY"


def secret_keys_from_env() -> tuple[str, ...]:
    """NEWSLETTER_SECRET_KEY as a list, newest first, separated by commas (`secret` refuses
    spaces in a key variable, so `new,old` without spaces)."""
    raw = secret(SECRET_KEY_ENV) or ""
    keys: list[str] = []
    for key in re.split(r"[\s,]+", raw.strip()):
        if key and key not in keys:
            keys.append(key)
    return tuple(keys)


def signing_secret(store: Store) -> tuple[str, ...]:
    """Every key that verifies subscriber links, newest (the one new links use) first: the keys
    of NEWSLETTER_SECRET_KEY in their order, then always the database's own generated key,
    so links made before any key was set keep working. Warns when the key list changed."""
    env_keys = secret_keys_from_env()
    db_key = store.meta.secret_key()
    _note_key_changes(store, env_keys, db_key)
    return tuple(k for k in env_keys if k != db_key) + (db_key,)


signing_keys = signing_secret

_KEYS_SEEN = "signing_keys_seen"


def _fingerprint(key: str, db_key: str) -> str:
    """A short, non-reversible name for a key, for messages and the record of keys used."""
    return hmac.new(db_key.encode(), b"fingerprint:" + key.encode(), hashlib.sha256).hexdigest()[
        :12
    ]


def _note_key_changes(store: Store, env_keys: tuple[str, ...], db_key: str) -> None:
    """Remember which keys have signed links and say (log warning, shown by the CLI) when the
    newest key changed or a key that signed links was dropped from the list."""
    current = [_fingerprint(k, db_key) for k in env_keys]
    try:
        seen: list[str] = json.loads(store.meta.get(_KEYS_SEEN) or "[]")
    except ValueError:
        seen = []
    newest = current[0] if current else "database"
    if seen and seen[0] != newest:
        log.warning(
            "%s changed: new links are signed with key %s; links signed with an earlier key "
            "keep working only while that key stays in %s after the new one",
            SECRET_KEY_ENV,
            newest,
            SECRET_KEY_ENV,
        )
    dropped = [fp for fp in seen if fp != "database" and fp not in current]
    if dropped:
        log.warning(
            "%s no longer lists key(s) %s that signed links before: every unsubscribe and "
            "confirm link signed with them (in emails already sent, and for subscribers added "
            "while they were the newest) now gets the 'invalid link' page. Put them back after "
            "the new key: %s='new,old'",
            SECRET_KEY_ENV,
            ", ".join(dropped),
            SECRET_KEY_ENV,
        )
    record = [newest] + [fp for fp in seen if fp != newest]
    if record != seen:
        store.meta.set(_KEYS_SEEN, json.dumps(record))
