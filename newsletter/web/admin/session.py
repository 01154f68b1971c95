"""Sessions, CSRF tokens, the origin check and the limits of the editors' workspace.

- The session lives in the database (`newsletter.editors`: a row per session, deleted on
  sign-out, password change, "sign out everywhere" and removal, expired by idle time and by
  age). The cookie carries only its random id, signed (itsdangerous, the newsletter's signing
  secret with its own salt); HttpOnly, SameSite=Lax, Secure when base_url is https.
- The CSRF token of every form is an HMAC of the session id: nothing more to store, and a
  token from another session (or none) is refused with 403. The sign-in form, which has no
  session yet, gets its nonce from a short-lived signed cookie of its own. As a second line,
  a state-changing request whose Origin is another site's (or, without Origin, that a browser
  marks with Sec-Fetch-Site) is refused too (`same_origin`).
- Failed sign-ins are counted with the `limits` package's fixed windows in the newsletter's
  database (the sign-up limits' own `DatabaseStorage`), so every `newsletter serve` process on
  that database shares the counts: per (account, client) and per client a hard limit; for the
  account as a whole only rising delays, so nobody can lock an editor out from elsewhere, and
  the editor is emailed (once per window) when their account is under attack.
- Proofs (test sends) are counted per editor the same way (`ProofLimit`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from limits import RateLimitItem, parse, parse_many
from limits.strategies import FixedWindowRateLimiter
from starlette.requests import Request

from newsletter.editors import SESSION_MAX_AGE
from newsletter.store import Store
from newsletter.web.ratelimit import DatabaseStorage, client_key

log = logging.getLogger(__name__)

SESSION_COOKIE = "nl_admin"
LOGIN_COOKIE = "nl_admin_login"
LOGIN_FORM_MAX_AGE = 60 * 60
CSRF_FIELD = "csrf_token"

# Wrong passwords: five per account from one client and twenty per client (whatever the
# accounts) in fifteen minutes; past either, that client's sign-ins answer 429 until the
# window ends. The account itself is never refused: past ACCOUNT_FREE failures in its window
# (from anywhere) each sign-in to it waits, DELAY_FIRST doubling up to DELAY_MAX, and the
# editor gets one email about it.
PAIR_LIMIT = parse("5 per 15 minutes")
CLIENT_LIMIT = parse("20 per 15 minutes")
ACCOUNT_WINDOW = parse("100000 per 15 minutes")  # a counter only: never reached, never refused
ACCOUNT_FREE = 5
DELAY_FIRST = 0.25
DELAY_MAX = 2.0

# Proofs from the preview page, per editor.
PROOFS_PER_EDITOR = "5/10 minutes;20/day"


@dataclass(frozen=True)
class SessionData:
    session_id: str


class Sessions:
    """Makes and reads session cookies and the CSRF tokens bound to them."""

    def __init__(self, secret: str, secure: bool) -> None:
        self._secret = secret.encode("utf-8")
        self._sessions = URLSafeTimedSerializer(secret, salt="newsletter.admin-session-id")
        self._login = URLSafeTimedSerializer(secret, salt="newsletter.admin-login-form")
        self.secure = secure

    def cookie_for(self, session_id: str) -> str:
        return self._sessions.dumps(session_id)

    def read_session(self, cookie: str | None) -> SessionData | None:
        """The session id a cookie carries (whether that session is live is the database's
        to say)."""
        if not cookie or len(cookie) > 500:
            return None
        try:
            value = self._sessions.loads(cookie, max_age=int(SESSION_MAX_AGE.total_seconds()))
        except BadSignature:  # tampered, foreign, malformed or expired (SignatureExpired)
            return None
        if not isinstance(value, str) or not 20 <= len(value) <= 100:
            return None
        return SessionData(value)

    def new_login_nonce(self) -> tuple[str, str]:
        """(cookie value, nonce) for a sign-in form."""
        nonce = secrets.token_urlsafe(16)
        return self._login.dumps(nonce), nonce

    def read_login_nonce(self, cookie: str | None) -> str | None:
        if not cookie or len(cookie) > 500:
            return None
        try:
            value = self._login.loads(cookie, max_age=LOGIN_FORM_MAX_AGE)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None

    def csrf_token(self, nonce: str) -> str:
        return hmac.new(self._secret, b"csrf:" + nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, nonce: str | None, token: object) -> bool:
        if not nonce or not isinstance(token, str) or not token.isascii():
            return False
        return hmac.compare_digest(self.csrf_token(nonce), token)

    def cookie_options(self, max_age: int, path: str = "/admin") -> dict:
        return {
            "max_age": max_age,
            "path": path,
            "httponly": True,
            "samesite": "lax",
            "secure": self.secure,
        }


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: Request, base_url: str) -> bool:
    """The CSRF token's second line, for state-changing requests: a browser names the page a
    form came from in Origin (and Sec-Fetch-Site); one of another site is refused. A request
    without Origin passes only when it has no Sec-Fetch-Site either (not a browser's)."""
    origin = request.headers.get("origin")
    fetch_site = request.headers.get("sec-fetch-site")
    if origin is None:
        return fetch_site is None
    if fetch_site not in (None, "same-origin", "none"):
        return False
    if origin == "null":
        # What browsers send from a page whose Referrer-Policy is no-referrer (ours): then
        # Sec-Fetch-Site, which that policy does not touch, says where the form came from.
        return fetch_site == "same-origin"
    own = {_origin_of(base_url), _origin_of(str(request.base_url))}
    return origin.lower() in own


def _key(value: str) -> str:
    """Counter keys carry no address in clear (and stay short)."""
    return hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """What the throttle says about one sign-in before the password is checked."""

    allowed: bool
    retry_after: int = 0
    delay: float = 0.0


class LoginThrottle:
    """Failed sign-ins per (account, client), per client, and per account (see above)."""

    def __init__(self, store: Store) -> None:
        self.limiter = FixedWindowRateLimiter(DatabaseStorage(store))

    def _ids(self, email: str, client: str | None) -> tuple[str, str]:
        return _key(email), _key(client_key(client))

    def account_failures(self, email: str) -> tuple[int, float]:
        """(failed sign-ins to the account in its window, when the window ends)."""
        stats = self.limiter.get_window_stats(ACCOUNT_WINDOW, "account", _key(email))
        return ACCOUNT_WINDOW.amount - stats.remaining, stats.reset_time

    def check(self, email: str, client: str | None) -> Attempt:
        account, who = self._ids(email, client)
        limits = [(PAIR_LIMIT, ("pair", account, who)), (CLIENT_LIMIT, ("client", who))]
        spent = [
            self.limiter.get_window_stats(item, *ids).reset_time
            for item, ids in limits
            if not self.limiter.test(item, *ids)
        ]
        if spent:
            return Attempt(allowed=False, retry_after=max(1, int(max(spent) - time.time()) + 1))
        failures, _ = self.account_failures(email)
        delay = 0.0
        if failures >= ACCOUNT_FREE:
            delay = min(DELAY_MAX, DELAY_FIRST * 2 ** (failures - ACCOUNT_FREE))
            log.warning(
                "sign-in to an account with %d failed sign-ins in 15 minutes: waiting %.2f s",
                failures,
                delay,
            )
        return Attempt(allowed=True, delay=delay)

    def failed(self, email: str, client: str | None) -> int:
        """Count a wrong password; returns the account's failures in its window."""
        account, who = self._ids(email, client)
        self.limiter.hit(PAIR_LIMIT, "pair", account, who)
        self.limiter.hit(CLIENT_LIMIT, "client", who)
        self.limiter.hit(ACCOUNT_WINDOW, "account", account)
        return self.account_failures(email)[0]

    def succeeded(self, email: str, client: str | None) -> None:
        self.limiter.clear(PAIR_LIMIT, "pair", *self._ids(email, client))


class ProofLimit:
    """Proofs per editor (PROOFS_PER_EDITOR), in the database like the sign-in counts."""

    def __init__(self, store: Store, limits: str = PROOFS_PER_EDITOR) -> None:
        self.limiter = FixedWindowRateLimiter(DatabaseStorage(store))
        self.items: list[RateLimitItem] = parse_many(limits)
        self.text = limits

    def hit(self, editor_id: int) -> int:
        """0 when one more test send is allowed (and counted), else seconds to wait."""
        ident = str(editor_id)
        blocked = [i for i in self.items if not self.limiter.test(i, "test-send", ident)]
        if blocked:
            ends = max(self.limiter.get_window_stats(i, "test-send", ident)[0] for i in blocked)
            return max(1, int(ends - time.time()) + 1)
        for item in self.items:
            self.limiter.hit(item, "test-send", ident)
        return 0


__all__ = [
    "CSRF_FIELD",
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "Attempt",
    "LoginThrottle",
    "SessionData",
    "Sessions",
    "ProofLimit",
    "same_origin",
]
