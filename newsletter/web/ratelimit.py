"""Sign-up limits, so the form cannot be used to flood someone's inbox.

Three limits, counted with the `limits` package (fixed windows):
- per client address (an IPv4 address, or the /64 an IPv6 address belongs to): how many
  sign-up forms it may send;
- per mailbox (case and plus-addressing folded: victim+1@x and Victim@x are one mailbox): how
  many confirmation emails it may receive;
- for the whole site: how many confirmation emails go out per hour.

`limits` has no SQL storage, and its memory storage would give each `serve` process its own
counters (several processes would multiply every limit). `DatabaseStorage` implements limits'
storage interface on our own database (table `rate_limits`, one atomic upsert per hit), so
every process on the same SQLite file or PostgreSQL database shares the counters without
running anything else (no Redis or memcached to set up).

Unconfirmed sign-ups expire: rows never confirmed within UNCONFIRMED_EXPIRE_AFTER are deleted
(`subscribers.expire_unconfirmed`, on every sign-up, and when `serve` starts).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import timedelta

from limits import RateLimitItem, parse_many
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter

from newsletter.exceptions import StoreError
from newsletter.store import Store
from newsletter.subscribers import UNCONFIRMED_EXPIRE_AFTER, expire_unconfirmed, mailbox_key

# The limits (limits' notation). Constants for now; they move to the settings with config.py.
SIGNUPS_PER_CLIENT = "10/hour"
CONFIRMATIONS_PER_MAILBOX = "1/10minutes;3/day"
CONFIRMATIONS_PER_HOUR = "200/hour"


class DatabaseStorage(Storage):
    """limits' storage interface on our database's `rate_limits` table (see module doc)."""

    STORAGE_SCHEME = None

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    @property
    def base_exceptions(self) -> type[Exception]:
        return StoreError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self.store.rate_limits.incr(key, float(expiry), amount)

    def get(self, key: str) -> int:
        return self.store.rate_limits.get(key)[0]

    def get_expiry(self, key: str) -> float:
        return self.store.rate_limits.get(key)[1]

    def check(self) -> bool:
        try:
            self.store.rate_limits.get("check")
        except StoreError:
            return False
        return True

    def reset(self) -> int | None:
        return self.store.rate_limits.clear()

    def clear(self, key: str) -> None:
        self.store.rate_limits.clear(key)


def client_key(host: str | None) -> str:
    """The client a sign-up is counted against: its IPv4 address or its IPv6 /64 (one host
    usually owns a whole /64, so single IPv6 addresses cost an attacker nothing)."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _hashed(value: str) -> str:
    """Counter keys carry no address in clear (and stay short)."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""


class SignupLimits:
    """The sign-up form's limits on one store; safe to share between threads and processes."""

    def __init__(
        self,
        store: Store,
        *,
        per_client: str = SIGNUPS_PER_CLIENT,
        per_mailbox: str = CONFIRMATIONS_PER_MAILBOX,
        per_hour: str = CONFIRMATIONS_PER_HOUR,
        expire_after: timedelta = UNCONFIRMED_EXPIRE_AFTER,
    ) -> None:
        self.store = store
        self.limiter = FixedWindowRateLimiter(DatabaseStorage(store))
        self.per_client: list[RateLimitItem] = parse_many(per_client)
        self.per_mailbox: list[RateLimitItem] = parse_many(per_mailbox)
        self.per_hour: list[RateLimitItem] = parse_many(per_hour)
        self.expire_after = expire_after

    def _hit_all(self, items: list[RateLimitItem], *identifiers: str) -> bool:
        # Every window counts the attempt, so a burst cannot slip through a longer window.
        return all([self.limiter.hit(item, *identifiers) for item in items])

    def allow_signup(self, client_host: str | None) -> Verdict:
        """One more sign-up form from this client?"""
        if self._hit_all(self.per_client, "signup-client", _hashed(client_key(client_host))):
            return Verdict(True)
        return Verdict(False, "too many sign-ups from this client address")

    def allow_confirmation(self, address: str) -> Verdict:
        """One more confirmation email to this mailbox, and for the site this hour?"""
        if not self._hit_all(self.per_mailbox, "confirm-mailbox", _hashed(mailbox_key(address))):
            return Verdict(False, "this mailbox had a confirmation email recently")
        if not self._hit_all(self.per_hour, "confirm-site"):
            return Verdict(False, "the site's hourly cap of confirmation emails is reached")
        return Verdict(True)

    def purge(self) -> int:
        """Delete expired unconfirmed sign-ups and finished counters; returns how many sign-ups
        were deleted. Two small DELETEs, run on every sign-up (which the limits above bound)."""
        deleted = expire_unconfirmed(self.store, self.expire_after)
        self.store.rate_limits.prune()
        return deleted
