"""What the request handlers share: settings, store, the link-signing secret, the webhook
verifier and the sign-up limits."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse

from newsletter.settings import Settings
from newsletter.store import Store
from newsletter.web.events import WebhookVerifier
from newsletter.web.ratelimit import SignupLimits
from newsletter.web.templating import render


@dataclass
class WebState:
    settings: Settings
    store: Store
    token_secret: tuple[str, ...]  # every key that verifies links, newest first
    verifier: WebhookVerifier | None
    limits: SignupLimits

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
