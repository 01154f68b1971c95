"""Sessions, CSRF tokens and sign-in throttling of the editors' workspace.

- The session is a signed cookie (itsdangerous, the newsletter's signing secret with its own
  salt) holding the editor's id, their session version and a random nonce. It is HttpOnly,
  SameSite=Lax, Secure when base_url is https, and expires; a password change bumps the
  version and a removed editor has no row, so either ends every session at once.
- The CSRF token of every form is an HMAC of the session's nonce: nothing to store, and a
  token from another session (or none) is refused with 403. The sign-in form, which has no
  session yet, gets its nonce from a short-lived signed cookie of its own.
- Failed sign-ins are counted per account and per client address with the `limits`
  package's fixed windows, kept in the newsletter's database (the sign-up limits' own
  `DatabaseStorage`), so every `newsletter serve` process on that database shares the counts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from itsdangerous import BadSignature, URLSafeTimedSerializer
from limits import parse
from limits.strategies import FixedWindowRateLimiter

from newsletter.store import Store
from newsletter.web.ratelimit import DatabaseStorage

SESSION_COOKIE = "nl_admin"
LOGIN_COOKIE = "nl_admin_login"
SESSION_MAX_AGE = 12 * 60 * 60
LOGIN_FORM_MAX_AGE = 60 * 60
CSRF_FIELD = "csrf_token"

# Five wrong passwords per account and twenty per client address in fifteen minutes; the
# sign-in form then answers 429 until the window ends, right password or not.
ACCOUNT_LIMIT = parse("5 per 15 minutes")
CLIENT_LIMIT = parse("20 per 15 minutes")


@dataclass(frozen=True)
class SessionData:
    editor_id: int
    version: int
    nonce: str


class Sessions:
    """Makes and reads session cookies and the CSRF tokens bound to them."""

    def __init__(self, secret: str, secure: bool) -> None:
        self._secret = secret.encode("utf-8")
        self._sessions = URLSafeTimedSerializer(secret, salt="newsletter.admin-session")
        self._login = URLSafeTimedSerializer(secret, salt="newsletter.admin-login-form")
        self.secure = secure

    def new_session(self, editor_id: int, version: int) -> tuple[str, SessionData]:
        data = SessionData(editor_id, version, secrets.token_urlsafe(16))
        return self._sessions.dumps([data.editor_id, data.version, data.nonce]), data

    def read_session(self, cookie: str | None) -> SessionData | None:
        if not cookie or len(cookie) > 500:
            return None
        try:
            value = self._sessions.loads(cookie, max_age=SESSION_MAX_AGE)
        except BadSignature:  # tampered, foreign, malformed or expired (SignatureExpired)
            return None
        if (
            not isinstance(value, list)
            or len(value) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value[:2])
            or not isinstance(value[2], str)
        ):
            return None
        return SessionData(value[0], value[1], value[2])

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


class LoginThrottle:
    """Failed sign-ins per account and per client address (see the limits above)."""

    def __init__(self, store: Store) -> None:
        self.limiter = FixedWindowRateLimiter(DatabaseStorage(store))

    def allowed(self, email: str, client: str) -> bool:
        return self.limiter.test(ACCOUNT_LIMIT, "account", email.strip().lower()) and (
            self.limiter.test(CLIENT_LIMIT, "client", client)
        )

    def failed(self, email: str, client: str) -> None:
        self.limiter.hit(ACCOUNT_LIMIT, "account", email.strip().lower())
        self.limiter.hit(CLIENT_LIMIT, "client", client)

    def succeeded(self, email: str) -> None:
        self.limiter.clear(ACCOUNT_LIMIT, "account", email.strip().lower())

    def retry_after(self, email: str, client: str) -> int:
        """Seconds until both windows allow another try."""
        ends = [
            self.limiter.get_window_stats(ACCOUNT_LIMIT, "account", email.strip().lower()),
            self.limiter.get_window_stats(CLIENT_LIMIT, "client", client),
        ]
        now = datetime.now().timestamp()
        spent = [e.reset_time for e in ends if e.remaining == 0] or [now]
        return max(1, int(max(spent) - now) + 1)


__all__ = [
    "CSRF_FIELD",
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "LoginThrottle",
    "SessionData",
    "Sessions",
]
