"""What the request handlers share: settings, store, the link-signing secret, the webhook
verifier and a small throttle for confirmation emails."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse

from newsletter.config import Settings
from newsletter.store import Store
from newsletter.web.events import WebhookVerifier
from newsletter.web.templating import render

# At most one confirmation email per address in this window, however often the form is sent:
# the form must not become a way to flood someone's inbox.
RESEND_CONFIRMATION_AFTER = 10 * 60
BODY_LIMIT_FORM = 16 * 1024
BODY_LIMIT_WEBHOOK = 16 * 1024 * 1024


class Throttle:
    """Remembers when each key was last allowed; thread-safe, pruned as it grows."""

    def __init__(self, window: float, max_keys: int = 50_000) -> None:
        self.window = window
        self.max_keys = max_keys
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.window:
                return False
            if len(self._last) >= self.max_keys:
                self._last = {k: t for k, t in self._last.items() if now - t < self.window}
            self._last[key] = now
            return True


@dataclass
class WebState:
    settings: Settings
    store: Store
    token_secret: str
    verifier: WebhookVerifier | None
    confirmations: Throttle = field(default_factory=lambda: Throttle(RESEND_CONFIRMATION_AFTER))

    def page(
        self,
        template: str,
        status_code: int = 200,
        *,
        private: bool = True,
        background: BackgroundTask | None = None,
        **context,
    ) -> HTMLResponse:
        """A rendered page; private ones (token pages, answers) are never cached nor indexed."""
        html = render(self.settings, template, noindex=private, **context)
        headers = {"Cache-Control": "no-store" if private else "public, max-age=300"}
        return HTMLResponse(html, status_code=status_code, headers=headers, background=background)


def web_state(request: Request) -> WebState:
    return request.app.state.web


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes whatever Content-Length claims."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
