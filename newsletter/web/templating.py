"""One Jinja2 environment for the pages and the confirmation email: autoescaped everywhere
except plain-text templates."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from newsletter.links import archive_url, feed_url, subscribe_url
from newsletter.settings import Settings

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=lambda name: name is not None and not name.endswith(".txt"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def site_context(settings: Settings) -> dict:
    """What every page and email shows about the newsletter itself; its links from `links`."""
    return {
        "name": settings.name,
        "language": settings.language or "en",
        "subscribe_url": subscribe_url(settings),
        "archive_url": archive_url(settings),
        "feed_url": feed_url(settings),
        "postal_address": settings.postal_address,
        "from_email": settings.from_email,
    }


def render(settings: Settings, template: str, **context) -> str:
    return environment().get_template(template).render(site=site_context(settings), **context)
