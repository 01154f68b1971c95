"""The subscribers' side: sign-up with double opt-in, one-click unsubscribe, the web archive
and Atom feed, and SendGrid's signed Event Webhook. `create_app(settings, store)` builds the
Starlette app; `serve(settings, host, port)` runs it under uvicorn."""

from newsletter.web.app import create_app, serve

__all__ = ["create_app", "serve"]
